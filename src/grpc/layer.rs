//! The one place bearer tokens are read: a tower layer in front of every
//! service. It records where a call comes from, and for every protected
//! method turns `authorization: Bearer <JWT>` into a typed [`Caller`] in the
//! request's extensions — or answers UNAUTHENTICATED itself.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{Status, transport::server::TcpConnectInfo};
use tower::{Layer, Service};

use crate::{
    app::{
        App,
        caller::{Caller, RequestContext},
        sessions::{self, TokenProblem},
    },
    domain::client_address::TrustedProxy,
};

/// Methods anyone may call: logging in, recovering access, reading public facts.
/// A unit test checks every path here is a method of the descriptor set, so a
/// renamed RPC cannot leave a stale entry behind (and a new RPC is protected
/// until listed here).
const PUBLIC_METHODS: [&str; 13] = [
    "/identity.v1.Auth/Login",
    "/identity.v1.Auth/SubmitPasscode",
    "/identity.v1.Auth/SetNewPin",
    "/identity.v1.Auth/Refresh",
    "/identity.v1.Auth/ValidateToken",
    "/identity.v1.Auth/GetJwks",
    "/identity.v1.Reset/RequestPasswordReset",
    "/identity.v1.Reset/GetCaptchaChallenge",
    "/identity.v1.Reset/InspectActivation",
    "/identity.v1.Reset/RedeemActivation",
    "/identity.v1.Platform/LocatePlatform",
    "/identity.v1.Platform/GetStatus",
    "/identity.v1.Platform/ListPlatforms",
];

/// Every identity method not listed public needs a caller, so a new RPC is
/// protected unless someone decides otherwise. Health and reflection are public.
pub fn requires_caller(path: &str) -> bool {
    path.starts_with("/identity.v1.") && !PUBLIC_METHODS.contains(&path)
}

#[derive(Clone)]
pub struct AuthLayer {
    app: Arc<App>,
    proxies: Arc<[TrustedProxy]>,
}

impl AuthLayer {
    pub fn new(app: Arc<App>) -> Self {
        let config = &app.config;
        let proxies: Arc<[TrustedProxy]> = config.grpc_proxies().into();
        if config.trusted_proxies != crate::config::Config::default().trusted_proxies
            && config.grpc_trusted_proxies == crate::config::Config::default().grpc_trusted_proxies
        {
            // Before the lists were split, `trusted_proxies` governed the gRPC port too.
            tracing::info!(
                "`trusted_proxies` applies to the HTTP gateway only; the gRPC port believes \
                 `grpc_trusted_proxies` (loopback by default): list a proxy in front of gRPC there"
            );
        }
        Self { app, proxies }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner, app: Arc::clone(&self.app), proxies: Arc::clone(&self.proxies) }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    app: Arc<App>,
    proxies: Arc<[TrustedProxy]>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let app = Arc::clone(&self.app);
        let context = request_context(&request, &self.proxies);
        Box::pin(async move {
            request.extensions_mut().insert(context);
            if requires_caller(request.uri().path()) {
                match authenticate(&app, request.headers()).await {
                    Ok(caller) => {
                        tracing::Span::current().record("identity.subscription", caller.subscription_id.as_str());
                        request.extensions_mut().insert(caller);
                    }
                    Err(status) => return Ok(status.into_http()),
                }
            }
            inner.call(request).await
        })
    }
}

async fn authenticate(app: &App, headers: &http::HeaderMap) -> Result<Caller, Status> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("this call needs `authorization: Bearer <access token>` metadata"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| unauthenticated("the authorization metadata must be `Bearer <access token>`"))?;
    let signed = sessions::validate(app, token).await.map_err(problem_status)?;
    sessions::caller_from(&signed.claims).map_err(problem_status)
}

fn problem_status(problem: TokenProblem) -> Status {
    match problem {
        TokenProblem::Revoked => unauthenticated("the session has ended: log in again"),
        TokenProblem::Invalid(rejection) => unauthenticated(&format!(
            "the access token is not valid ({}): log in again",
            super::convert::rejection_text(rejection)
        )),
    }
}

fn unauthenticated(message: &str) -> Status {
    crate::domain::Error::Unauthenticated(message.to_owned()).into()
}

/// The client's address, looking through the gRPC port's trusted proxies
/// (the in-process gateway), every `x-forwarded-for` line in order.
fn request_context<B>(request: &http::Request<B>, trusted_proxies: &[TrustedProxy]) -> RequestContext {
    let peer = request.extensions().get::<TcpConnectInfo>().and_then(|info| info.remote_addr()).map(|addr| addr.ip());
    let lines = request.headers().get_all("x-forwarded-for").iter().map(|v| v.to_str().ok());
    let forwarded = crate::domain::client_address::forwarded_chain(lines);
    let source = crate::domain::client_address::client_address(peer, forwarded.as_deref(), trusted_proxies);
    RequestContext { source_ip: source.map(|ip| ip.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_methods_are_protected_unless_listed_public() {
        assert!(requires_caller("/identity.v1.Users/CreateUser"));
        assert!(requires_caller("/identity.v1.Auth/ChangePassword"));
        assert!(requires_caller("/identity.v1.Reset/ResetPasswords"));
        assert!(requires_caller("/identity.v1.Platform/ScheduleMaintenance"));
        assert!(requires_caller("/identity.v1.Auth/SomeFutureMethod"));
        assert!(!requires_caller("/identity.v1.Auth/Login"));
        assert!(!requires_caller("/identity.v1.Auth/ValidateToken"));
        assert!(!requires_caller("/grpc.health.v1.Health/Check"));
        assert!(!requires_caller("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
    }

    #[test]
    fn every_public_method_is_a_method_of_the_proto() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                file.service.iter().flat_map(move |service| {
                    service
                        .method
                        .iter()
                        .map(move |method| format!("/{}.{}/{}", file.package(), service.name(), method.name()))
                })
            })
            .collect();
        for public in PUBLIC_METHODS {
            assert!(methods.iter().any(|method| method == public), "{public} is not an RPC of the proto");
        }
        let distinct: std::collections::HashSet<_> = PUBLIC_METHODS.iter().collect();
        assert_eq!(distinct.len(), PUBLIC_METHODS.len());
    }

    fn request(peer: &str, forwarded: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::new(());
        let info = TcpConnectInfo { local_addr: None, remote_addr: Some(peer.parse().unwrap()) };
        request.extensions_mut().insert(info);
        if let Some(value) = forwarded {
            request.headers_mut().insert("x-forwarded-for", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = [TrustedProxy::from(std::net::IpAddr::from([127, 0, 0, 1]))];
        let via_gateway = request_context(&request("127.0.0.1:5000", Some("203.0.113.9")), &trusted);
        assert_eq!(via_gateway.source_ip.as_deref(), Some("203.0.113.9"));
        let spoofed = request_context(&request("198.51.100.7:5000", Some("203.0.113.9")), &trusted);
        assert_eq!(spoofed.source_ip.as_deref(), Some("198.51.100.7"));
        let garbage = request_context(&request("127.0.0.1:5000", Some("not an ip")), &trusted);
        assert_eq!(garbage.source_ip.as_deref(), Some("127.0.0.1"));
        // Every line counts: a forged first line cannot hide the address a proxy added after it.
        let mut two_lines = request("127.0.0.1:5000", Some("198.51.100.1"));
        two_lines.headers_mut().append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert_eq!(request_context(&two_lines, &trusted).source_ip.as_deref(), Some("203.0.113.9"));
    }
}
