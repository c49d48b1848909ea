//! Which address a request comes from, when trusted proxies (the gateway,
//! an ingress) stand in between.

use std::net::IpAddr;

/// The peer, unless it is a trusted proxy: then the rightmost address of
/// `x-forwarded-for` that is not itself a trusted proxy. Proxies append, so
/// entries left of the first untrusted one are the client's own claims and
/// cannot be believed.
pub fn client_address(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for entry in forwarded_for.unwrap_or_default().rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => nearest = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(nearest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_are_looked_through() {
        let trusted = [ip("127.0.0.1"), ip("10.0.0.2")];
        let loopback = Some(ip("127.0.0.1"));
        assert_eq!(client_address(loopback, Some("203.0.113.9"), &trusted), Some(ip("203.0.113.9")));
        assert_eq!(client_address(loopback, Some("203.0.113.9, 10.0.0.2"), &trusted), Some(ip("203.0.113.9")));
        // A client's own claim left of the address the proxy saw is not believed.
        assert_eq!(client_address(loopback, Some("1.2.3.4, 198.51.100.7"), &trusted), Some(ip("198.51.100.7")));
        // An untrusted peer speaks for itself.
        let outsider = Some(ip("198.51.100.7"));
        assert_eq!(client_address(outsider, Some("203.0.113.9"), &trusted), outsider);
        assert_eq!(client_address(loopback, Some("garbage"), &trusted), loopback);
        assert_eq!(client_address(loopback, None, &trusted), loopback);
        assert_eq!(client_address(None, Some("203.0.113.9"), &trusted), None);
    }
}
