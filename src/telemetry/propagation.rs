//! W3C trace context (`traceparent`, `tracestate`) across process hops: read
//! from incoming HTTP headers and gRPC metadata (both are HTTP/2 or HTTP/1
//! headers underneath), written into the gateway's outgoing gRPC calls.
//! Without OTLP export the global propagator is a no-op and so are these.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the caller's span, when the request names one.
pub fn adopt_remote_parent(span: &Span, headers: &HeaderMap) {
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    // Fails only when no OpenTelemetry layer is installed: then there is nothing to link.
    let _ = span.set_parent(parent);
}

/// Writes the current span's context into an outgoing gRPC call.
pub fn inject_current<T>(request: &mut tonic::Request<T>) {
    let context = Span::current().context();
    let mut headers = std::mem::take(request.metadata_mut()).into_headers();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(&mut headers));
    });
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
}

#[cfg(test)]
mod tests {
    use opentelemetry::{
        propagation::TextMapPropagator,
        trace::{TraceContextExt, TraceId},
    };
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    #[test]
    fn traceparent_headers_round_trip() {
        let propagator = TraceContextPropagator::new();
        let mut headers = HeaderMap::new();
        headers
            .insert("traceparent", HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let context = propagator.extract(&HeaderExtractor(&headers));
        assert_eq!(
            context.span().span_context().trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex")
        );
        let mut out = HeaderMap::new();
        propagator.inject_context(&context, &mut HeaderInjector(&mut out));
        assert_eq!(out["traceparent"], headers["traceparent"]);
    }

    #[test]
    fn garbage_is_no_parent() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("00-not-a-trace-01"));
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        assert!(!context.span().span_context().is_valid());
    }
}
