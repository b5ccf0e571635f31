//! Client-side gRPC load balancing over DNS.
//!
//! gRPC runs over long-lived HTTP/2 connections: behind a Kubernetes ClusterIP every call of
//! a client goes to the one pod its connection landed on, however many replicas there are.
//! So the services are published as headless Services (DNS answers with every ready pod's
//! address), and a channel to a host name resolves it, keeps one lazily connected endpoint
//! per address in tonic's power-of-two-choices balancer, and re-resolves every few seconds,
//! inserting pods that appear and removing pods that go (a terminating pod leaves DNS during
//! its preStop, before it stops serving).
//!
//! Addresses: `host:port`, `http://host:port` or `dns:///host:port`. An IP literal or
//! `localhost` gets a plain channel as before (nothing to balance); any other host name is
//! balanced over its DNS answers.

use std::{
    collections::HashSet, fmt, future::Future, io, net::SocketAddr, pin::Pin, sync::Arc, time::Duration,
};

use tonic::transport::{Channel, ClientTlsConfig, Endpoint, channel::Change};

use crate::tls::LiveTls;

/// How often a balanced channel re-resolves its name: CoreDNS caches headless answers for
/// 5 s by default, so a pod leaving is seen within ~10 s, inside the 15 s preStop.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Where a channel dials, parsed from an address setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP literal or `localhost`: one endpoint, as the URI says.
    Direct(String),
    /// A host name to resolve and balance over.
    Dns { host: String, port: u16 },
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not HOST:PORT, http://HOST:PORT or dns:///HOST:PORT")]
pub struct BadAddress(pub String);

impl Target {
    pub fn parse(addr: &str) -> Result<Target, BadAddress> {
        let bad = || BadAddress(addr.to_string());
        let (uri, dns) = match addr.strip_prefix("dns:///").or_else(|| addr.strip_prefix("dns:")) {
            Some(rest) => (format!("http://{rest}"), true),
            None if addr.starts_with("http://") || addr.starts_with("https://") => (addr.to_string(), false),
            None => (format!("http://{addr}"), false),
        };
        let parsed: http::Uri = uri.parse().map_err(|_| bad())?;
        let authority = parsed.authority().ok_or_else(bad)?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().ok_or_else(bad)?;
        if host.is_empty() {
            return Err(bad());
        }
        let literal = host.parse::<std::net::IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost");
        if literal && !dns {
            return Ok(Target::Direct(uri));
        }
        Ok(Target::Dns {
            host: host.to_string(),
            port,
        })
    }
}

/// Resolves a name to the addresses to balance over.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;
}

/// The system resolver (getaddrinfo: /etc/resolv.conf search domains, so a Service's short
/// name works inside its namespace).
pub struct SystemDns;

impl Resolve for SystemDns {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>> {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}

/// Endpoints in the balancer: one per resolved address, or the name itself while DNS has
/// nothing (so calls fail fast with a connection error instead of waiting on an empty set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(SocketAddr),
    Name,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Addr(a) => write!(f, "{a}"),
            Key::Name => f.write_str("the unresolved name"),
        }
    }
}

/// A channel balanced over `host:port`'s DNS answers, re-resolved every `refresh` until the
/// channel (every clone of it) is dropped. `configure` applies the caller's endpoint
/// settings (timeouts, keep-alive) to each endpoint. Must run inside a Tokio runtime.
pub fn balanced(
    host: &str,
    port: u16,
    resolver: Arc<dyn Resolve>,
    refresh: Duration,
    configure: impl Fn(Endpoint) -> Endpoint + Send + Sync + 'static,
) -> Result<Channel, BadAddress> {
    balanced_with(host, port, Some(resolver), refresh, configure, None)
}

/// [`balanced`], with two options: no resolver dials the name itself (one endpoint), and
/// `tls` makes every endpoint TLS, verified under `host` against the mesh's CA; when the
/// material is reloaded, every endpoint is replaced by one with the new identity (checked
/// every `refresh`), so new connections use it.
pub fn balanced_with(
    host: &str,
    port: u16,
    resolver: Option<Arc<dyn Resolve>>,
    refresh: Duration,
    configure: impl Fn(Endpoint) -> Endpoint + Send + Sync + 'static,
    tls: Option<Arc<LiveTls>>,
) -> Result<Channel, BadAddress> {
    let bad = || BadAddress(format!("{host}:{port}"));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let by_name = Endpoint::from_shared(format!("{scheme}://{authority}")).map_err(|_| bad())?;
    let (channel, changes) = Channel::balance_channel::<Key>(64);
    let host = host.to_string();
    let configure = Arc::new(configure);
    // Supervised: a panic restarts the refresh; the restarted one inserts every address
    // again (an insert of a known key replaces it), so the channel keeps its endpoints.
    crate::supervisor::Supervisor::new().spawn(format!("dns-refresh.{host}"), move || {
        let (resolver, host, by_name, changes, configure, tls) = (
            resolver.clone(),
            host.clone(),
            by_name.clone(),
            changes.clone(),
            configure.clone(),
            tls.clone(),
        );
        let dial = Dial {
            by_name,
            scheme,
            tls,
            configure,
        };
        refresh_loop(resolver, host, port, refresh, dial, changes)
    });
    Ok(channel)
}

/// How the refresh dials an endpoint: the name's endpoint, plaintext or TLS, and the caller's
/// endpoint settings.
struct Dial<F> {
    by_name: Endpoint,
    scheme: &'static str,
    tls: Option<Arc<LiveTls>>,
    configure: Arc<F>,
}

/// Re-resolves `host` every `refresh`; `Ok` once the channel is gone.
async fn refresh_loop<F: Fn(Endpoint) -> Endpoint + Send + Sync + 'static>(
    resolver: Option<Arc<dyn Resolve>>,
    host: String,
    port: u16,
    refresh: Duration,
    dial: Dial<F>,
    changes: tokio::sync::mpsc::Sender<Change<Key, Endpoint>>,
) -> Result<(), std::convert::Infallible> {
    let Dial {
        by_name,
        scheme,
        tls,
        configure,
    } = dial;
    {
        let mut current: HashSet<Key> = HashSet::new();
        let mut generation = tls.as_ref().map(|t| t.generation());
        loop {
            let wanted: Vec<Key> = match &resolver {
                None => vec![Key::Name],
                Some(resolver) => match resolver.resolve(&host, port).await {
                    Ok(addrs) if !addrs.is_empty() => addrs.into_iter().map(Key::Addr).collect(),
                    Ok(_) => {
                        tracing::warn!(%host, "DNS has no addresses; keeping the last known endpoints");
                        if current.is_empty() {
                            vec![Key::Name]
                        } else {
                            current.iter().cloned().collect()
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%host, error = %e, "DNS lookup failed; keeping the last known endpoints");
                        if current.is_empty() {
                            vec![Key::Name]
                        } else {
                            current.iter().cloned().collect()
                        }
                    }
                },
            };
            // Reloaded TLS material: every endpoint is dialled anew (the same key replaces
            // the old endpoint in the balancer once the new one is ready).
            let now = tls.as_ref().map(|t| t.generation());
            let redial = now != generation;
            if redial {
                generation = now;
                tracing::info!(%host, "TLS material reloaded; redialling every endpoint");
            }
            let gone: Vec<Key> = current.iter().filter(|k| !wanted.contains(k)).cloned().collect();
            for key in wanted {
                if current.contains(&key) && !redial {
                    continue;
                }
                let endpoint = match &key {
                    Key::Addr(addr) => Endpoint::from_shared(format!("{scheme}://{addr}"))
                        .map(|e| e.origin(by_name.uri().clone())),
                    Key::Name => Ok(by_name.clone()),
                };
                let Ok(endpoint) = endpoint else { continue };
                let endpoint = match &tls {
                    None => endpoint,
                    Some(tls) => match with_tls(endpoint, tls, &host) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::error!(%host, error = %e, "cannot dial over TLS; endpoint left out");
                            continue;
                        }
                    },
                };
                tracing::debug!(%host, endpoint = %key, "balancing over a new endpoint");
                if changes
                    .send(Change::Insert(key.clone(), configure(endpoint)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                current.insert(key);
            }
            for key in gone {
                tracing::debug!(%host, endpoint = %key, "endpoint left DNS; no longer balanced over");
                if changes.send(Change::Remove(key.clone())).await.is_err() {
                    return Ok(());
                }
                current.remove(&key);
            }
            tokio::select! {
                _ = tokio::time::sleep(refresh) => {}
                _ = changes.closed() => return Ok(()),
            }
        }
    }
}

/// The endpoint dialling over TLS: only the mesh's CA trusted, the server verified under
/// the name we dial (not the pod address), our certificate shown for mutual TLS.
fn with_tls(endpoint: Endpoint, tls: &LiveTls, host: &str) -> Result<Endpoint, String> {
    let client = tls
        .client()
        .ok_or_else(|| "the TLS material has no CA to verify servers by".to_string())?;
    let config = ClientTlsConfig::new()
        .ca_certificate(client.ca)
        .identity(client.identity)
        .domain_name(host);
    endpoint.tls_config(config).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_are_dialled_directly() {
        assert_eq!(
            Target::parse("127.0.0.1:50051").unwrap(),
            Target::Direct("http://127.0.0.1:50051".into())
        );
        assert_eq!(
            Target::parse("http://[::1]:7").unwrap(),
            Target::Direct("http://[::1]:7".into())
        );
        assert_eq!(
            Target::parse("localhost:1").unwrap(),
            Target::Direct("http://localhost:1".into())
        );
    }

    #[test]
    fn host_names_and_dns_targets_are_balanced() {
        let dns = |host: &str, port| Target::Dns {
            host: host.into(),
            port,
        };
        assert_eq!(
            Target::parse("invite-svc:50051").unwrap(),
            dns("invite-svc", 50051)
        );
        assert_eq!(
            Target::parse("http://fraud-svc.mesh.svc.cluster.local:50052").unwrap(),
            dns("fraud-svc.mesh.svc.cluster.local", 50052)
        );
        assert_eq!(
            Target::parse("dns:///invite-svc:1").unwrap(),
            dns("invite-svc", 1)
        );
        assert_eq!(Target::parse("dns:///10.0.0.1:2").unwrap(), dns("10.0.0.1", 2));
    }

    #[test]
    fn an_address_without_a_port_is_refused() {
        for bad in ["invite-svc", "dns:///x", "http://:5", "", "a b:1"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
