//! The HTTP gateway: the legacy XML API (`/msp/password_change.php`) and the
//! pages people use (sign-in, their account, the links of emails). It holds no
//! domain logic: every request becomes calls through the generated gRPC
//! clients (DESIGN §4).

mod client_ip;
mod clients;
mod guard;
// The legacy API's parsing and its XML writer are what the property tests and
// fuzz targets drive: public to the `fuzzing` feature only, never to a
// release build.
#[cfg(feature = "fuzzing")]
pub mod legacy;
#[cfg(not(feature = "fuzzing"))]
mod legacy;
mod pages;
mod ratelimit;
mod same_origin;
mod session;
mod theme;
mod tls;
#[cfg(feature = "fuzzing")]
pub mod xml;
#[cfg(not(feature = "fuzzing"))]
mod xml;

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{
    Router,
    routing::{any, get, post},
};
use tokio::net::TcpListener;

pub use self::clients::GrpcClients;
use crate::{
    clock::{SharedClock, SystemClock},
    config::{Config, GatewayConfig},
    domain::client_address::TrustedProxy,
};

/// The DTD of the legacy API's reply, served at [`DTD_PATH`].
pub const DTD: &str = include_str!("password_change_output.dtd");
pub const DTD_PATH: &str = "/password_change_output.dtd";

/// What the gateway needs from the configuration.
#[derive(Clone)]
pub struct Settings {
    /// `public_url` without a trailing slash: base of the DTD URL.
    pub public_url: String,
    pub limits: GatewayConfig,
    /// Peers whose `x-forwarded-for` is believed (`trusted_proxies`; the gRPC
    /// port has a list of its own).
    pub trusted_proxies: Vec<TrustedProxy>,
    pub shutdown_grace: Duration,
    /// Served over TLS: every response carries HSTS.
    pub tls: bool,
    /// The time of replies and pages: injectable, like the service's.
    pub clock: SharedClock,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            limits: config.gateway.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            tls: config.http_tls_cert.is_some() && config.http_tls_key.is_some(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Whether browsers reach the pages over https (here, or at a proxy in
    /// front): cookies are then `Secure` with a `__Host-` name.
    fn secure_cookies(&self) -> bool {
        self.tls || self.public_url.starts_with("https://")
    }

    pub fn dtd_url(&self) -> String {
        format!("{}{DTD_PATH}", self.public_url)
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.request_timeout_secs)
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct GatewayState(Arc<Inner>);

pub(crate) struct Inner {
    pub clients: GrpcClients,
    pub settings: Settings,
    pub limiter: ratelimit::RateLimiter,
    pub theme: theme::Theme,
    pub cookies: session::Cookies,
}

impl std::ops::Deref for GatewayState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Every route of the gateway.
pub fn router(clients: GrpcClients, settings: Settings) -> anyhow::Result<Router> {
    let limiter = ratelimit::RateLimiter::new(
        settings.limits.rate_limit_per_user,
        Duration::from_secs(settings.limits.rate_limit_window_secs),
    );
    let body_limit = settings.limits.max_body_bytes;
    let timeout = settings.request_timeout();
    let tls = settings.tls;
    let theme = theme::Theme::load(settings.limits.theme_dir.as_deref())?;
    let csp = theme.csp().clone();
    let cookies = session::Cookies::from_config(&settings.limits, settings.secure_cookies())?;
    let state = GatewayState(Arc::new(Inner { clients, settings, limiter, theme, cookies }));
    Ok(Router::new()
        .route("/msp/password_change.php", any(legacy::password_change))
        .route(DTD_PATH, get(legacy::dtd))
        .route("/activate/{token}", get(pages::activation_page).post(pages::activation_submit))
        .route("/forgot-password", get(pages::forgot_page).post(pages::forgot_submit))
        .route("/login", get(pages::login_page).post(pages::login_submit))
        .route("/login/securid", get(pages::securid_page).post(pages::passcode_submit))
        .route("/login/pin", post(pages::new_pin_submit))
        .route("/logout", post(pages::logout))
        .route("/account", get(pages::account_page))
        .route("/account/password", get(pages::change_password_page).post(pages::change_password_submit))
        .route("/account/login", get(pages::change_login_page).post(pages::change_login_submit))
        .route("/users", get(pages::users_page))
        .route("/users/reset", post(pages::reset_submit))
        .route("/users/new", get(pages::new_user_page).post(pages::new_user_submit))
        .route("/users/units", get(pages::units_page).post(pages::units_submit))
        .route("/users/u/{login}", get(pages::user_page).post(pages::update_submit))
        .route("/users/u/{login}/status", post(pages::status_submit))
        .route("/users/u/{login}/reset", get(pages::reset_confirm))
        .route("/users/u/{login}/delete", get(pages::delete_confirm).post(pages::delete_submit))
        .route("/users/u/{login}/pin", get(pages::pin_confirm).post(pages::pin_submit))
        .route("/users/u/{login}/token", get(pages::token_confirm).post(pages::token_submit))
        .route("/audit", get(pages::audit_page))
        .route("/platform", get(pages::platform_page))
        .route("/status", get(pages::status_page))
        .route("/status.json", get(pages::status_json))
        .route("/.well-known/jwks.json", get(pages::jwks))
        .route("/", get(pages::home))
        .fallback(pages::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |request, next| guard::guard(timeout, tls, csp.clone(), request, next)))
        .layer(axum::middleware::from_fn(crate::telemetry::http::trace_request))
        .with_state(state))
}

/// A gateway whose socket is bound, not yet serving.
pub struct Gateway {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    grace: Duration,
    /// How long a client may take to send a request's head.
    head_timeout: Duration,
}

impl Gateway {
    /// Binds `http_addr`, loads the TLS certificate when configured, and
    /// prepares clients of the gRPC server at `grpc_url` (connected lazily).
    pub async fn bind(config: &Config, grpc_url: &str) -> anyhow::Result<Self> {
        let settings = Settings::from_config(config);
        let grpc_tls = crate::grpc::tls::client_tls(&config.gateway, grpc_url)?;
        let clients = GrpcClients::connect_lazy(grpc_url, settings.request_timeout(), grpc_tls)?;
        let tls = match (&config.http_tls_cert, &config.http_tls_key) {
            (Some(cert), Some(key)) => Some(tls::tls_config(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on {} (http_addr)", config.http_addr))?;
        let addr = listener.local_addr()?;
        let grace = settings.shutdown_grace;
        let head_timeout = settings.request_timeout();
        Ok(Self { listener, addr, router: router(clients, settings)?, tls, grace, head_timeout })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://…` when TLS is configured, `http://…` otherwise.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.addr)
    }

    /// Serves until `shutdown` completes, then stops accepting and lets
    /// in-flight requests finish (up to the grace period).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let handle = axum_server::Handle::<SocketAddr>::new();
        let stopper = handle.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            shutdown.await;
            stopper.graceful_shutdown(Some(grace));
        });
        tracing::info!(addr = %self.addr, tls = self.tls.is_some(), "HTTP gateway listening");
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        // A client that trickles its request head (slowloris) holds a connection and a
        // task for as long as it likes unless the head has a deadline: axum-server sets none.
        let mut server = axum_server::Server::<SocketAddr>::from_listener(self.listener)
            .handle(handle)
            .first_request_timeout(self.head_timeout);
        server.http_builder().http1().header_read_timeout(self.head_timeout);
        match self.tls {
            Some(tls) => server.acceptor(axum_server::tls_rustls::RustlsAcceptor::new(tls)).serve(service).await,
            None => server.serve(service).await,
        }
        .context("HTTP gateway failed")
    }
}

/// The URL the in-process gateway uses to reach the gRPC server bound at `addr`
/// (a wildcard address is reached through loopback).
pub fn loopback_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    /// A header map for the gateway's unit tests.
    pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_in_process_gateway_reaches_wildcard_listeners_through_loopback() {
        assert_eq!(loopback_url("0.0.0.0:50051".parse().unwrap()), "http://127.0.0.1:50051");
        assert_eq!(loopback_url("[::]:50051".parse().unwrap()), "http://[::1]:50051");
        assert_eq!(loopback_url("10.1.2.3:7".parse().unwrap()), "http://10.1.2.3:7");
    }

    #[test]
    fn the_dtd_url_hangs_off_the_public_url() {
        let config = Config { public_url: "https://id.example.com/".to_owned(), ..Config::default() };
        assert_eq!(Settings::from_config(&config).dtd_url(), "https://id.example.com/password_change_output.dtd");
    }
}
