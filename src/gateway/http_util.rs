//! What every route shares: the request guard (timeout, security headers, a
//! log line without secrets), the client's address, the cross-site check of
//! form posts, and the TLS setup.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::domain::client_address::TrustedProxy;

/// Extra time the guard allows beyond the configured timeout, so that the
/// legacy handler's own timeout (which still answers XML) fires first.
const GUARD_MARGIN: Duration = Duration::from_secs(1);

/// The Content-Security-Policy of every response: nothing but the one inline
/// stylesheet and the one inline script, named by their hashes.
static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
        csp_hash(super::pages::POW_JS),
        csp_hash(super::pages::CSS)
    )
});

fn csp_hash(source: &str) -> String {
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(source.as_bytes())))
}

/// What `Strict-Transport-Security` says when the gateway serves TLS: a year,
/// so that a page showing a password cannot be stripped to plain http after a
/// first visit. Not `includeSubDomains`: other hosts of the domain are not ours.
const HSTS: &str = "max-age=31536000";

/// Timeout, security headers (HSTS when `tls`) and one log line per request
/// (inside the request's span, which names the route, never the path: paths
/// carry tokens).
pub async fn guard(timeout: Duration, tls: bool, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = match tokio::time::timeout(timeout + GUARD_MARGIN, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "The request took too long: try again shortly").into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&CSP).expect("ASCII policy"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if tls {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    // Pages show secrets or one-time state; only the DTD and the JWKS say otherwise.
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    let status = response.status().as_u16();
    tracing::info!(status, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

/// The HTTP client's address, looking through the proxies of `trusted_proxies`
/// (the same rule as the gRPC side, with a list of its own). Forwarded to the
/// gRPC calls so per-address throttles see the real client.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        Ok(ClientIp(client_ip(peer, &parts.headers, &state.settings.trusted_proxies)))
    }
}

fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[TrustedProxy]) -> Option<IpAddr> {
    let lines = headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().ok());
    let forwarded = crate::domain::client_address::forwarded_chain(lines);
    crate::domain::client_address::client_address(peer, forwarded.as_deref(), trusted)
}

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

/// rustls (ring) with the PEM certificate chain and key; HTTP/2 and HTTP/1.1.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain {} (http_tls_cert)", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {} (http_tls_cert)", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {} (http_tls_key)", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

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

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = [TrustedProxy::from(IpAddr::from([127, 0, 0, 1]))];
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let loopback = Some(IpAddr::from([127, 0, 0, 1]));
        let outsider = Some(IpAddr::from([198, 51, 100, 7]));
        assert_eq!(client_ip(loopback, &forwarded, &trusted), Some(IpAddr::from([203, 0, 113, 9])));
        assert_eq!(client_ip(outsider, &forwarded, &trusted), outsider);
        assert_eq!(client_ip(loopback, &HeaderMap::new(), &trusted), loopback);
        // A proxy that adds a line of its own after the client's forged one.
        let mut two_lines = headers(&[("x-forwarded-for", "198.51.100.1")]);
        two_lines.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(client_ip(loopback, &two_lines, &trusted), Some(IpAddr::from([203, 0, 113, 9])));
    }
}
