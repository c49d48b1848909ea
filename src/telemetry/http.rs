//! One span and one latency sample per gateway request. Spans name the route
//! template (`/activate/{token}`), never the path: paths carry one-time tokens.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use tracing::{Instrument, field::Empty};

use super::{metrics as names, propagation};

/// Routes outside the router's table share one label and one span name.
const UNMATCHED: &str = "unmatched";

pub async fn trace_request(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = %route,
        http.response.status_code = Empty,
    );
    propagation::adopt_remote_parent(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let labels = [("route", route), ("method", method.to_owned())];
    metrics::histogram!(names::HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    let [route, method] = labels;
    metrics::counter!(names::HTTP_REQUESTS, &[route, method, ("status", status.as_u16().to_string())]).increment(1);
    response
}

/// Standard methods by name; anything a client makes up shares one label.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        _ => "other",
    }
}
