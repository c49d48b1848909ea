//! What a service that calls the identity service needs on day one: typed
//! tonic clients of `identity.v1` ([`Clients`], [`pb`]), and [`BearerLayer`],
//! a tower layer that checks `authorization: Bearer <access token>` in-process
//! (Ed25519 against a cached JWKS, then `iss`, `aud`, `exp`, optionally
//! revocation through `ValidateToken`) and hands handlers a typed [`Caller`].
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use identity_client::{Authenticator, BearerLayer, Caller, Clients, Config};
//!
//! let clients = Clients::connect("http://identity:50051").await?;
//! let authenticator = Authenticator::new(clients.auth.clone(), Config::new("https://id.example.com"))?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/whoami", axum::routing::get(|axum::Extension(caller): axum::Extension<Caller>| async move {
//!         caller.login
//!     }))
//!     .layer(BearerLayer::new(authenticator));
//! # let _ = app; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod authenticator;
mod layer;
pub mod pb;
mod token;

pub use authenticator::{Authenticator, Backend, BoxFuture, Config, ConfigError, Refusal, RevocationCheck};
pub use layer::{BearerLayer, RequireBearer};
pub use pb::Role;
pub use token::{Caller, KeySet, Rejection};

use tonic::transport::{Channel, Endpoint};

use pb::{
    auth_client::AuthClient, platform_client::PlatformClient, reset_client::ResetClient, support_client::SupportClient,
    users_client::UsersClient,
};

/// One typed client per service of `identity.v1`, sharing one connection
/// (tonic multiplexes calls over HTTP/2; cloning a client is cheap).
#[derive(Clone, Debug)]
pub struct Clients {
    pub auth: AuthClient<Channel>,
    pub users: UsersClient<Channel>,
    pub reset: ResetClient<Channel>,
    pub platform: PlatformClient<Channel>,
    pub support: SupportClient<Channel>,
}

impl Clients {
    pub fn new(channel: Channel) -> Self {
        Self {
            auth: AuthClient::new(channel.clone()),
            users: UsersClient::new(channel.clone()),
            reset: ResetClient::new(channel.clone()),
            platform: PlatformClient::new(channel.clone()),
            support: SupportClient::new(channel),
        }
    }

    /// Connects to `url` (e.g. `http://identity:50051`) now, failing if it is unreachable.
    pub async fn connect(url: impl Into<String>) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.into())?.connect().await?;
        Ok(Self::new(channel))
    }

    /// Connects on first use and reconnects as needed: a service can start
    /// before the identity service is reachable.
    pub fn connect_lazy(url: impl Into<String>) -> Result<Self, tonic::transport::Error> {
        Ok(Self::new(Endpoint::from_shared(url.into())?.connect_lazy()))
    }
}

/// `message` with `authorization: Bearer <token>` metadata, for the RPCs that
/// act as a caller. A token with characters metadata cannot carry is refused.
pub fn bearer<T>(message: T, token: &str) -> Result<tonic::Request<T>, tonic::metadata::errors::InvalidMetadataValue> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}
