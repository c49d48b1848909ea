//! The HTTP client's address, for the audit trail and per-address throttles.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};

use super::GatewayState;
use crate::domain::client_address::TrustedProxy;

/// The HTTP client's address, looking through the proxies of `trusted_proxies`
/// (the same rule as the gRPC side, with a list of its own). Forwarded to the
/// gRPC calls so per-address throttles see the real client.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<GatewayState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &GatewayState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        Ok(ClientIp(client_ip(peer, &parts.headers, &state.settings.trusted_proxies)))
    }
}

fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[TrustedProxy]) -> Option<IpAddr> {
    let lines = headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().ok());
    let forwarded = crate::domain::client_address::forwarded_chain(lines);
    crate::domain::client_address::client_address(peer, forwarded.as_deref(), trusted)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::gateway::tests::headers;

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
