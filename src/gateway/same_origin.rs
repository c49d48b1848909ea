//! The cross-site check of form posts: a page's form is only accepted from
//! the gateway's own pages.

use axum::http::{HeaderMap, header};

/// True when a form post comes from another site: `Sec-Fetch-Site` other than
/// same-origin, or an `Origin` that is neither the public URL's nor the
/// request's own host. Requests carrying neither header are not from a
/// browser that could be tricked into sending them, and pass.
pub fn cross_site(headers: &HeaderMap, public_url: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let Ok(parsed) = url::Url::parse(origin) else {
        return true;
    };
    let public = url::Url::parse(public_url).map(|url| url.origin());
    if public.is_ok_and(|public| public == parsed.origin()) {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return true,
    };
    host != Some(authority.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::tests::headers;

    #[test]
    fn form_posts_from_other_sites_are_recognised() {
        let public = "https://id.example.com";
        assert!(!cross_site(&headers(&[]), public), "no browser headers: not a browser");
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")]), public));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")]), public));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")]), public));
        assert!(!cross_site(&headers(&[("origin", "https://id.example.com")]), public));
        assert!(!cross_site(&headers(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")]), public));
        assert!(cross_site(&headers(&[("origin", "https://evil.example"), ("host", "id.example.com")]), public));
        assert!(cross_site(&headers(&[("origin", "null")]), public));
    }
}
