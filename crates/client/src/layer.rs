//! The tower layer in front of a tonic or axum service: `Bearer` token in,
//! [`Caller`](crate::Caller) in the request's extensions out, or the refusal
//! answered here — as a gRPC status (HTTP 200, `grpc-status` 16 or 14) to gRPC
//! requests, and as HTTP 401 (or 503) with an RFC 6750 `WWW-Authenticate`
//! header to everything else. The handler behind it never runs for a refused call.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::{
    BoxFuture,
    authenticator::{Authenticator, Refusal},
    token::Rejection,
};

/// Puts [`RequireBearer`] in front of a service.
#[derive(Clone)]
pub struct BearerLayer {
    authenticator: Authenticator,
    anonymous: Arc<[String]>,
}

impl BearerLayer {
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator, anonymous: Arc::new([]) }
    }

    /// Lets requests whose path starts with `prefix` through without a token
    /// (and without a caller): health checks, e.g. `/grpc.health.v1.Health/`.
    pub fn allow_anonymous(mut self, prefix: impl Into<String>) -> Self {
        let mut prefixes = self.anonymous.to_vec();
        prefixes.push(prefix.into());
        self.anonymous = prefixes.into();
        self
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = RequireBearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireBearer { inner, authenticator: self.authenticator.clone(), anonymous: Arc::clone(&self.anonymous) }
    }
}

#[derive(Clone)]
pub struct RequireBearer<S> {
    inner: S,
    authenticator: Authenticator,
    anonymous: Arc<[String]>,
}

impl<S, B, R> Service<Request<B>> for RequireBearer<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if self.anonymous.iter().any(|prefix| request.uri().path().starts_with(prefix.as_str())) {
            return Box::pin(inner.call(request));
        }
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            let grpc = is_grpc(&request);
            let outcome = match bearer_token(request.headers()) {
                Ok(token) => authenticator.authenticate(token).await,
                Err(rejection) => Err(rejection.into()),
            };
            match outcome {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(refusal) if grpc => Ok(refusal.to_status().into_http()),
                Err(refusal) => Ok(http_refusal(&refusal)),
            }
        })
    }
}

/// The token of `authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer_token(headers: &http::HeaderMap) -> Result<&str, Rejection> {
    let value = headers.get(header::AUTHORIZATION).ok_or(Rejection::Missing)?;
    let value = value.to_str().map_err(|_| Rejection::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Rejection::NotBearer);
    }
    Ok(token)
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// 401 with `WWW-Authenticate: Bearer error="invalid_token", error_description="…"`
/// (RFC 6750 §3; no `error` when no token was sent), or 503 with `Retry-After`.
fn http_refusal<R: Default>(refusal: &Refusal) -> Response<R> {
    let mut response = Response::new(R::default());
    match refusal {
        Refusal::Rejected(rejection) => {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            let challenge = match rejection {
                Rejection::Missing => r#"Bearer realm="identity""#.to_owned(),
                Rejection::NotBearer => {
                    format!(
                        r#"Bearer realm="identity", error="invalid_request", error_description="{}""#,
                        rejection.message()
                    )
                }
                _ => format!(
                    r#"Bearer realm="identity", error="invalid_token", error_description="{}""#,
                    rejection.message()
                ),
            };
            // The messages are fixed ASCII without quotes, so the header is always valid.
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        Refusal::Unavailable(_) => {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::HeaderMap;
    use tower::ServiceExt as _;

    use super::*;
    use crate::{
        Caller, Config,
        authenticator::{Backend, BoxFuture},
        pb,
        token::tests::{ISS, claims, jwk, key, sign},
    };

    #[derive(Clone)]
    struct Publishes(pb::Jwk);

    impl Backend for Publishes {
        fn get_jwks(&self) -> BoxFuture<'_, Result<Vec<pb::Jwk>, tonic::Status>> {
            let keys = vec![self.0.clone()];
            Box::pin(async move { Ok(keys) })
        }

        fn validate_token<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<pb::ValidateTokenResponse, tonic::Status>> {
            Box::pin(async { Ok(pb::ValidateTokenResponse { valid: true, ..Default::default() }) })
        }
    }

    /// Answers 200 with the caller's login in a header, so the tests see what the handler saw.
    async fn handler(request: Request<()>) -> Result<Response<String>, Infallible> {
        let login = request.extensions().get::<Caller>().map_or("anonymous".to_owned(), |c| c.login.clone());
        Ok(Response::new(login))
    }

    fn service() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
        let authenticator =
            Authenticator::new(Publishes(jwk(&key(1))), Config { revocation: None, ..Config::new(ISS) }).unwrap();
        BearerLayer::new(authenticator).allow_anonymous("/health").layer(tower::service_fn(handler))
    }

    fn live_claims() -> serde_json::Value {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut claims = claims();
        claims["nbf"] = now.into();
        claims["exp"] = (now + 900).into();
        claims
    }

    fn request(path: &str, authorization: Option<&str>, grpc: bool) -> Request<()> {
        let mut builder = Request::builder().uri(path);
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        if grpc {
            builder = builder.header(header::CONTENT_TYPE, "application/grpc");
        }
        builder.body(()).unwrap()
    }

    #[tokio::test]
    async fn a_valid_token_reaches_the_handler_with_its_caller() {
        let token = sign(&key(1), &live_claims());
        for scheme in ["Bearer", "bearer"] {
            let response = service().oneshot(request("/x", Some(&format!("{scheme} {token}")), false)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.body(), "alice");
        }
    }

    #[tokio::test]
    async fn http_refusals_are_401_with_a_bearer_challenge() {
        let forged = sign(&key(2), &live_claims());
        for (authorization, error) in [
            (None, None),
            (Some("Basic YWxpY2U6cGFzcw==".to_owned()), Some("invalid_request")),
            (Some("Bearer ".to_owned()), Some("invalid_request")),
            (Some("Bearer not.a.token".to_owned()), Some("invalid_token")),
            (Some(format!("Bearer {forged}")), Some("invalid_token")),
        ] {
            let response = service().oneshot(request("/x", authorization.as_deref(), false)).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
            assert!(response.body().is_empty(), "the handler never ran");
            let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
            assert!(challenge.starts_with("Bearer realm="), "{challenge}");
            assert_eq!(error.is_some_and(|e| challenge.contains(e)), error.is_some(), "{challenge}");
        }
    }

    #[tokio::test]
    async fn grpc_refusals_are_unauthenticated_statuses() {
        let mut expired = live_claims();
        expired["exp"] = 1_000.into();
        let token = sign(&key(1), &expired);
        let response =
            service().oneshot(request("/pkg.Svc/Call", Some(&format!("Bearer {token}")), true)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "gRPC carries its status in headers");
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), Rejection::Expired.message());
    }

    #[tokio::test]
    async fn anonymous_paths_pass_without_a_caller() {
        let response = service().oneshot(request("/health/live", None, false)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "anonymous");
    }

    #[test]
    fn only_the_bearer_scheme_yields_a_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Err(Rejection::Missing));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("BEARER  abc "));
        assert_eq!(bearer_token(&headers), Ok("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearerabc"));
        assert_eq!(bearer_token(&headers), Err(Rejection::NotBearer));
    }
}
