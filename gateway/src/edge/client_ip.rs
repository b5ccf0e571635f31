//! Who is on the other end: the socket peer, or — only when the peer is a configured trusted
//! proxy — the right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
//! Taking the left-most would let any client choose its own IP.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::HeaderMap,
    middleware::Next,
    response::Response,
};
use ipnet::IpNet;

/// The client address of one request, set by [`middleware`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The rate-limit and metadata form; `unknown` when there is no socket (in-process tests).
    pub fn text(&self) -> String {
        self.0.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.map(canonical);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    match peer {
        Some(p) if is_trusted(&p) => {}
        _ => return peer,
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // A garbled entry ends what we can believe; keep the last good hop.
            break;
        };
        client = Some(ip);
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, from dual-stack sockets) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Records the [`ClientIp`], believing `X-Forwarded-For` only from the `trusted` proxies.
pub async fn middleware(State(trusted): State<Arc<[IpNet]>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = client_ip(peer, req.headers(), &trusted);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::config::parse_trusted_proxies;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn untrusted_peers_cannot_claim_an_address() {
        let trusted = parse_trusted_proxies("10.0.0.0/8").unwrap();
        let got = client_ip(Some(ip("198.51.100.9")), &xff("1.2.3.4"), &trusted);
        assert_eq!(got, Some(ip("198.51.100.9")));
    }

    #[test]
    fn trusted_proxies_yield_the_right_most_untrusted_hop() {
        let trusted = parse_trusted_proxies("10.0.0.0/8, 192.168.0.1").unwrap();
        // The client forged the first entry; the proxy chain appended the real one.
        let h = xff("6.6.6.6, 203.0.113.7, 192.168.0.1");
        assert_eq!(
            client_ip(Some(ip("10.1.2.3")), &h, &trusted),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn several_headers_ports_and_mapped_addresses() {
        let trusted = parse_trusted_proxies("10.0.0.0/8").unwrap();
        let mut h = xff("203.0.113.7:5555");
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        assert_eq!(
            client_ip(Some(ip("::ffff:10.0.0.1")), &h, &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &xff("[2001:db8::1]:80"), &trusted),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn all_trusted_or_garbled_chains_stop_safely() {
        let trusted = parse_trusted_proxies("10.0.0.0/8").unwrap();
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &xff("10.0.0.5"), &trusted),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &xff("junk, 10.0.0.5"), &trusted),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &HeaderMap::new(), &trusted),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(client_ip(None, &xff("1.2.3.4"), &trusted), None);
    }
}
