//! The SSRF guard on webhook targets. Only `http` and `https` URLs, and never an address
//! inside this network (private, loopback, link-local, CGNAT, unspecified, multicast,
//! including IPv4 hidden in IPv6) unless configuration allows that network. Checked when an
//! endpoint is registered (for literal addresses) and again at delivery time on every address
//! the host name resolves to, so a name that later points inside is refused too; the
//! connection then goes to the checked address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("not a valid absolute URL")]
    Malformed,
    #[error("only http and https URLs are allowed")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry credentials")]
    Credentials,
    #[error("{0} is a private, loopback or link-local address")]
    Internal(IpAddr),
    #[error("{0} resolves to no address")]
    Unresolved(String),
}

/// Which internal networks configuration lets webhooks reach anyway (tests allow loopback).
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub allowed: Vec<IpNet>,
}

impl TargetPolicy {
    pub fn allowing(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Ok when `ip` is public, or internal but in an allowed network.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), TargetError> {
        if !is_internal(ip) || self.allowed.iter().any(|net| net.contains(&ip)) {
            Ok(())
        } else {
            Err(TargetError::Internal(ip))
        }
    }

    /// The URL an admin registers: http(s), a host, no credentials, no internal literal.
    pub fn check_url(&self, raw: &str) -> Result<Url, TargetError> {
        let url = Url::parse(raw.trim()).map_err(|_| TargetError::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        match url.host() {
            None => return Err(TargetError::NoHost),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(Host::Domain(name)) => {
                if let Some(ip) = name_of_loopback(name) {
                    self.check_ip(ip)?;
                }
            }
        }
        Ok(url)
    }

    /// Keeps the resolved addresses that may be reached; an error if none may.
    pub fn filter_resolved(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, TargetError> {
        if addrs.is_empty() {
            return Err(TargetError::Unresolved(host.to_string()));
        }
        // One internal address is enough to refuse: a name that mixes them is a rebinding trick.
        for a in &addrs {
            self.check_ip(a.ip())?;
        }
        Ok(addrs)
    }
}

/// `localhost` and its subdomains are loopback by definition (RFC 6761), whatever DNS says.
fn name_of_loopback(name: &str) -> Option<IpAddr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost")).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// True for every address that is not a public unicast one.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, cloud metadata services
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || ip.is_broadcast()
        || ip.is_multicast()
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    // IPv4 carried inside IPv6 is judged as the IPv4 address(es) it reaches.
    if let Some(embedded) = embedded_v4(ip) {
        return embedded.iter().any(|v4| is_internal_v4(*v4));
    }
    let seg = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local() // fc00::/7
        || ip.is_unicast_link_local() // fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
        || seg[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d: deprecated, never routed
}

fn v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// The IPv4 addresses an IPv6 address leads to, for the forms that embed one:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`,
/// 6to4 `2002:AABB:CCDD::/48` and Teredo `2001:0::/32` (server in bits 32..64, client in the
/// last 32 bits XOR 0xffffffff; both are judged). `None` for every other address.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Vec<Ipv4Addr>> {
    let s = ip.segments();
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(vec![v4(hi, lo)]),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(vec![v4(hi, lo)]),
        [0x2002, hi, lo, ..] => Some(vec![v4(hi, lo)]),
        [0x2001, 0, server_hi, server_lo, _, _, hi, lo] => Some(vec![v4(server_hi, server_lo), v4(!hi, !lo)]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> TargetPolicy {
        TargetPolicy::default()
    }

    fn refused(url: &str) -> TargetError {
        strict().check_url(url).expect_err(url)
    }

    #[test]
    fn public_http_and_https_urls_pass() {
        for url in [
            "https://hooks.example.com/referrals",
            "http://93.184.216.34:8080/x?y=1",
            "https://[2606:4700:4700::1111]/hook",
        ] {
            assert!(strict().check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn other_schemes_credentials_and_garbage_are_refused() {
        assert_eq!(refused("ftp://example.com/x"), TargetError::Scheme);
        assert_eq!(refused("file:///etc/passwd"), TargetError::Scheme);
        assert_eq!(refused("gopher://example.com"), TargetError::Scheme);
        assert_eq!(refused("https://user:pw@example.com/"), TargetError::Credentials);
        assert_eq!(refused("not a url"), TargetError::Malformed);
        assert_eq!(refused("/relative/path"), TargetError::Malformed);
    }

    #[test]
    fn internal_literals_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1.2.3:9000/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a00:1]/",
            "http://[::127.0.0.1]/",
            "http://localhost:8080/",
            "http://api.localhost/",
            // Decimal and hex spellings of 127.0.0.1; the URL parser normalises them.
            "http://2130706433/",
            "http://0x7f.0.0.1/",
        ] {
            assert!(
                matches!(refused(url), TargetError::Internal(_)),
                "{url} must be refused"
            );
        }
    }

    #[test]
    fn ipv4_embedded_in_ipv6_is_judged_as_that_ipv4() {
        // Teredo carries the client as the last 32 bits XOR 0xffffffff: 127.0.0.1 -> 80ff:fffe.
        for (url, why) in [
            ("http://[::ffff:10.0.0.1]/", "IPv4-mapped"),
            ("http://[::ffff:0:127.0.0.1]/", "IPv4-translated"),
            ("http://[64:ff9b::169.254.169.254]/", "NAT64 well-known"),
            ("http://[64:ff9b:1::808:808]/", "NAT64 local-use, all of it"),
            ("http://[2002:7f00:1::]/", "6to4 of 127.0.0.1"),
            ("http://[2002:a9fe:a9fe::1]/", "6to4 of 169.254.169.254"),
            ("http://[2001:0:5db8:8c2a::80ff:fffe]/", "Teredo client 127.0.0.1"),
            ("http://[2001:0:a00:1::f7f7:f7f7]/", "Teredo server 10.0.0.1"),
            ("http://[::10.0.0.1]/", "IPv4-compatible"),
            (
                "http://[::8.8.8.8]/",
                "IPv4-compatible, deprecated even when public",
            ),
        ] {
            assert!(matches!(refused(url), TargetError::Internal(_)), "{why}: {url}");
        }
        for url in [
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::808:808]/",
            "http://[2002:808:808::1]/",
            "http://[2001:0:5db8:8c2a::f7f7:f7f7]/", // Teredo client 8.8.8.8
        ] {
            assert!(strict().check_url(url).is_ok(), "{url} embeds a public address");
        }
        let teredo: Ipv6Addr = "2001:0:5db8:8c2a::80ff:fffe".parse().unwrap();
        assert_eq!(
            embedded_v4(teredo),
            Some(vec![Ipv4Addr::new(93, 184, 140, 42), Ipv4Addr::LOCALHOST])
        );
        // And the same at delivery, on resolved addresses.
        let nat64: SocketAddr = "[64:ff9b::a00:7]:0".parse().unwrap();
        assert!(strict().filter_resolved("h", vec![nat64]).is_err());
    }

    #[test]
    fn configuration_can_allow_a_network() {
        let loopback =
            TargetPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        assert!(loopback.check_url("http://127.0.0.1:4000/hook").is_ok());
        assert!(loopback.check_url("http://[::1]:4000/hook").is_ok());
        assert!(loopback.check_url("http://localhost:4000/hook").is_ok());
        assert!(matches!(
            loopback.check_url("http://10.0.0.1/"),
            Err(TargetError::Internal(_))
        ));
        assert!(matches!(
            loopback.check_url("http://169.254.169.254/"),
            Err(TargetError::Internal(_))
        ));
    }

    #[test]
    fn a_name_resolving_to_any_internal_address_is_refused_at_delivery() {
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let inside: SocketAddr = "10.0.0.7:0".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:0".parse().unwrap();
        assert_eq!(strict().filter_resolved("h", vec![public]).unwrap(), vec![public]);
        assert!(strict().filter_resolved("h", vec![public, inside]).is_err());
        assert!(strict().filter_resolved("h", vec![mapped]).is_err());
        assert_eq!(
            strict().filter_resolved("h", vec![]),
            Err(TargetError::Unresolved("h".into()))
        );
    }
}
