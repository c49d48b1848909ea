//! One span and one latency sample per gRPC call: the outermost layer of the
//! gRPC server, so calls refused by the bearer layer are seen too.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Instant,
};

use prost::Message;
use tonic::Code;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};

use super::{metrics as names, propagation};

/// Probes and reflection are called every few seconds by machines: counted, not traced.
const UNTRACED_PREFIXES: [&str; 2] = ["/grpc.health.", "/grpc.reflection."];
const REFLECTION_METHODS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

#[derive(Clone, Copy, Debug, Default)]
pub struct RpcTelemetryLayer;

impl<S> Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetry { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RpcTelemetry<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for RpcTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = method_label(request.uri().path());
        let span = if UNTRACED_PREFIXES.iter().any(|prefix| method.starts_with(prefix)) {
            Span::none()
        } else {
            let (service, rpc) = method.trim_start_matches('/').split_once('/').unwrap_or((method, ""));
            let span = tracing::info_span!(
                "grpc.request",
                otel.name = method.trim_start_matches('/'),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = rpc,
                rpc.grpc.status_code = Empty,
                identity.subscription = Empty,
            );
            propagation::adopt_remote_parent(&span, request.headers());
            span
        };
        let started = Instant::now();
        Box::pin(
            async move {
                let result = inner.call(request).await;
                // A unary reply that failed carries its status in the headers
                // (trailers-only); a successful one carries OK in the trailers.
                let code = match &result {
                    Ok(response) => status_code(response.headers()),
                    Err(_) => Code::Internal,
                };
                let current = Span::current();
                current.record("rpc.grpc.status_code", code as i32);
                if is_server_fault(code) {
                    current.record("otel.status_code", "ERROR");
                }
                let labels = [("method", method), ("code", code_name(code))];
                metrics::counter!(names::GRPC_REQUESTS, &labels).increment(1);
                metrics::histogram!(names::GRPC_DURATION, &labels).record(started.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

fn status_code(headers: &http::HeaderMap) -> Code {
    headers.get("grpc-status").map_or(Code::Ok, |value| {
        value.to_str().ok().and_then(|value| value.parse::<i32>().ok()).map_or(Code::Unknown, Code::from_i32)
    })
}

/// The method, when the server has it; a fixed label otherwise, so clients
/// cannot grow the metrics without bound with made-up paths.
fn method_label(path: &str) -> &'static str {
    known_methods().get(path).copied().unwrap_or("unknown")
}

fn known_methods() -> &'static HashSet<&'static str> {
    static KNOWN: OnceLock<HashSet<&'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known: HashSet<&'static str> = REFLECTION_METHODS.into_iter().collect();
        for encoded in [crate::pb::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
            let set = prost_types::FileDescriptorSet::decode(encoded).expect("the compiled descriptor set decodes");
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                        known.insert(Box::leak(path.into_boxed_str()));
                    }
                }
            }
        }
        known
    })
}

/// OpenTelemetry's rule for gRPC servers: these codes are the server's fault.
fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The canonical names from the gRPC specification, as Prometheus labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_is_a_label_and_nothing_else_is() {
        assert_eq!(method_label("/identity.v1.Auth/Login"), "/identity.v1.Auth/Login");
        assert_eq!(method_label("/identity.v1.Reset/ResetPasswords"), "/identity.v1.Reset/ResetPasswords");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "/grpc.health.v1.Health/Check");
        assert_eq!(method_label(REFLECTION_METHODS[0]), REFLECTION_METHODS[0]);
        assert_eq!(method_label("/identity.v1.Auth/NoSuchMethod"), "unknown");
        assert_eq!(method_label("/../../etc/passwd"), "unknown");
        for service in crate::grpc::SERVICE_NAMES {
            assert!(known_methods().iter().any(|m| m.starts_with(&format!("/{service}/"))), "{service}");
        }
    }

    #[test]
    fn status_comes_from_the_headers_or_is_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_code(&headers), Code::Ok);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(status_code(&headers), Code::Unauthenticated);
        assert_eq!(code_name(status_code(&headers)), "UNAUTHENTICATED");
        headers.insert("grpc-status", http::HeaderValue::from_static("banana"));
        assert_eq!(status_code(&headers), Code::Unknown);
    }

    #[test]
    fn client_mistakes_are_not_server_errors() {
        assert!(!is_server_fault(Code::InvalidArgument));
        assert!(!is_server_fault(Code::Unauthenticated));
        assert!(!is_server_fault(Code::ResourceExhausted));
        assert!(is_server_fault(Code::Unavailable));
        assert!(is_server_fault(Code::Internal));
    }
}
