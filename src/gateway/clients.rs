//! The generated gRPC clients the gateway calls, over one shared channel.

use std::{net::IpAddr, time::Duration};

use anyhow::Context;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_client::HealthClient;

use crate::pb::{
    auth_client::AuthClient, platform_client::PlatformClient, reset_client::ResetClient, users_client::UsersClient,
};

/// Clients of every service the gateway uses; cheap to clone (one channel).
#[derive(Clone, Debug)]
pub struct GrpcClients {
    channel: Channel,
}

impl GrpcClients {
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }

    /// A channel to `url` (`http://host:port`, or `https://` with `tls`) that
    /// connects on first use and reconnects by itself; each call is bounded by `timeout`.
    pub fn connect_lazy(url: &str, timeout: Duration, tls: Option<ClientTlsConfig>) -> anyhow::Result<Self> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("`{url}` is not a gRPC URL"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).with_context(|| format!("TLS to the gRPC service at {url}"))?;
        }
        Ok(Self::new(endpoint.connect_lazy()))
    }

    pub fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel.clone())
    }

    pub fn reset(&self) -> ResetClient<Channel> {
        ResetClient::new(self.channel.clone())
    }

    pub fn users(&self) -> UsersClient<Channel> {
        UsersClient::new(self.channel.clone())
    }

    pub fn platform(&self) -> PlatformClient<Channel> {
        PlatformClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

/// A call on behalf of the HTTP client at `client` (sent as `x-forwarded-for`,
/// which the gRPC side believes from the gateway), optionally as the holder of
/// an access token.
pub fn call<T>(message: T, client: Option<IpAddr>, bearer: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    if let Some(ip) = client
        && let Ok(value) = ip.to_string().parse()
    {
        metadata.insert("x-forwarded-for", value);
    }
    if let Some(token) = bearer
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        metadata.insert("authorization", value);
    }
    crate::telemetry::propagation::inject_current(&mut request);
    request
}
