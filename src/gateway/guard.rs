//! The request guard every route goes through: a timeout, the security
//! headers (the theme's CSP, HSTS under TLS) and one log line without secrets.

use std::time::{Duration, Instant};

use axum::{
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// Extra time the guard allows beyond the configured timeout, so that the
/// legacy handler's own timeout (which still answers XML) fires first.
const GUARD_MARGIN: Duration = Duration::from_secs(1);

/// What `Strict-Transport-Security` says when the gateway serves TLS: a year,
/// so that a page showing a password cannot be stripped to plain http after a
/// first visit. Not `includeSubDomains`: other hosts of the domain are not ours.
const HSTS: &str = "max-age=31536000";

/// Timeout, security headers (HSTS when `tls`) and one log line per request
/// (inside the request's span, which names the route, never the path: paths
/// carry tokens).
pub async fn guard(timeout: Duration, tls: bool, csp: HeaderValue, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = match tokio::time::timeout(timeout + GUARD_MARGIN, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "The request took too long: try again shortly").into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    // Not `no-referrer`: browsers then send `Origin: null` with a same-origin form
    // post, which the cross-site check must refuse. Other sites still learn nothing.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
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
