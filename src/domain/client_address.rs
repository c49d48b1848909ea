//! Which address a request comes from, when trusted proxies (the gateway,
//! an ingress) stand in between.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Proxies whose `x-forwarded-for` is believed: one address (`10.0.0.7`) or a
/// CIDR range (`10.0.0.0/8`), since ingress pods come and go within a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            IpAddr::V4(_) => *ip,
        };
        self.0.contains(&ip)
    }
}

impl From<IpAddr> for TrustedProxy {
    fn from(ip: IpAddr) -> Self {
        Self(IpNet::from(ip))
    }
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.contains('/') {
            // The network of the range: `10.1.2.3/8` means 10.0.0.0/8.
            text.parse::<IpNet>().map(|net| Self(net.trunc())).map_err(|_| format!("`{text}` is not a CIDR range"))
        } else {
            text.parse::<IpAddr>().map(Self::from).map_err(|_| format!("`{text}` is not an IP address or CIDR range"))
        }
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() { self.0.addr().fmt(f) } else { self.0.fmt(f) }
    }
}

impl Serialize for TrustedProxy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TrustedProxy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

fn is_trusted(trusted: &[TrustedProxy], ip: &IpAddr) -> bool {
    trusted.iter().any(|proxy| proxy.contains(ip))
}

/// Every `x-forwarded-for` line of a request, in order, as one list. A proxy
/// may append its own line instead of extending the client's (HAProxy's
/// `option forwardfor`, several CDNs): reading only the first line would read
/// the client's own claim. A line that is not text (`None`) stands for an
/// entry nobody can parse, so the walk from the right stops there.
pub fn forwarded_chain<'a>(lines: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let lines: Vec<&str> = lines.into_iter().map(|line| line.unwrap_or("unreadable")).collect();
    (!lines.is_empty()).then(|| lines.join(","))
}

/// The peer, unless it is a trusted proxy: then the rightmost address of
/// `x-forwarded-for` that is not itself a trusted proxy. Proxies append, so
/// entries left of the first untrusted one are the client's own claims and
/// cannot be believed.
pub fn client_address(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[TrustedProxy]) -> Option<IpAddr> {
    let peer = peer?;
    if !is_trusted(trusted, &peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for entry in forwarded_for.unwrap_or_default().rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(trusted, &ip) => nearest = ip,
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

    fn proxies(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter().map(|entry| entry.parse().unwrap()).collect()
    }

    #[test]
    fn only_trusted_proxies_are_looked_through() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.2"]);
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

    #[test]
    fn ranges_trust_every_proxy_inside_them() {
        let trusted = proxies(&["10.244.0.0/16", "::1"]);
        let ingress = Some(ip("10.244.7.19"));
        assert_eq!(client_address(ingress, Some("203.0.113.9, 10.244.3.2"), &trusted), Some(ip("203.0.113.9")));
        let outside = Some(ip("10.245.0.1"));
        assert_eq!(client_address(outside, Some("203.0.113.9"), &trusted), outside);
        let mapped = Some(ip("::ffff:10.244.1.1"));
        assert_eq!(client_address(mapped, Some("203.0.113.9"), &trusted), Some(ip("203.0.113.9")));
    }

    #[test]
    fn every_header_line_counts_in_order() {
        let trusted = proxies(&["127.0.0.1"]);
        let loopback = Some(ip("127.0.0.1"));
        // The client's forged line first, the proxy's own line after it.
        let chain = forwarded_chain([Some("198.51.100.1"), Some("203.0.113.9")]);
        assert_eq!(chain.as_deref(), Some("198.51.100.1,203.0.113.9"));
        assert_eq!(client_address(loopback, chain.as_deref(), &trusted), Some(ip("203.0.113.9")));
        // A trusted hop on its own line is looked through like one in the same line.
        let chain = forwarded_chain([Some("203.0.113.9"), Some("127.0.0.1")]);
        assert_eq!(client_address(loopback, chain.as_deref(), &trusted), Some(ip("203.0.113.9")));
        // An unreadable line stops the walk: nothing left of it is believed.
        let chain = forwarded_chain([Some("198.51.100.1"), None, Some("127.0.0.1")]);
        assert_eq!(client_address(loopback, chain.as_deref(), &trusted), loopback);
        assert_eq!(forwarded_chain([]), None);
    }

    #[test]
    fn entries_parse_print_and_refuse_garbage() {
        assert_eq!("10.1.2.3/8".parse::<TrustedProxy>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("2001:db8::/32".parse::<TrustedProxy>().unwrap().to_string(), "2001:db8::/32");
        assert_eq!(" 127.0.0.1 ".parse::<TrustedProxy>().unwrap().to_string(), "127.0.0.1");
        assert_eq!("::1".parse::<TrustedProxy>().unwrap().to_string(), "::1");
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0/8", "1.2.3.4/"] {
            assert!(bad.parse::<TrustedProxy>().is_err(), "{bad:?}");
        }
    }
}
