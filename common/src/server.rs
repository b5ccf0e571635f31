//! gRPC server bootstrap shared by every service: health (`""` for liveness and a
//! `readiness` service that turns SERVING after migrations and dependencies), reflection
//! over the embedded descriptor set, graceful shutdown on SIGTERM/Ctrl-C that drains
//! in-flight calls.

use std::net::SocketAddr;

use tokio::{net::TcpListener, sync::watch};
use tonic_health::{ServingStatus, pb::health_server::HealthServer, server::HealthReporter};

/// The health service name that turns SERVING once a service can take traffic.
pub const READINESS: &str = "readiness";

/// Health reporter and server: liveness SERVING now, readiness NOT_SERVING until told.
pub async fn health() -> (
    HealthReporter,
    HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(READINESS, ServingStatus::NotServing)
        .await;
    (reporter, server)
}

/// Server reflection (v1 and v1alpha) listing only the services this port serves (plus
/// health and reflection), from the embedded descriptor set.
pub fn reflection(
    services: &[&str],
) -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(referral_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for s in services {
            b = b.with_service_name(*s);
        }
        b
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// Serves only the health service, in plaintext, on `listen` (GRPC_HEALTH_LISTEN) when set:
/// kubelet's gRPC probes speak no TLS, so with GRPC_TLS_* on they probe this port. Health
/// says nothing secret (SERVING or not) and this port serves nothing else.
pub async fn serve_health_plaintext<H>(
    listen: Option<&str>,
    health: HealthServer<H>,
    shutdown: Shutdown,
) -> anyhow::Result<()>
where
    H: tonic_health::pb::health_server::Health,
{
    let Some(listen) = listen.filter(|l| !l.trim().is_empty()) else {
        return Ok(());
    };
    let addr = crate::config::parse_addr("GRPC_HEALTH_LISTEN", listen)?;
    let (listener, addr) = bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (GRPC_HEALTH_LISTEN): {e}"))?;
    tracing::info!(%addr, "plaintext health (probes) serving");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                incoming(listener, &crate::tls::GrpcTls::plaintext()),
                shutdown.wait(),
            ),
    );
    Ok(())
}

/// Binds a listener and reports the address actually bound (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The stream of incoming connections [`tonic::transport::Server`] serves.
pub type Incoming = std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<crate::tls::Conn>> + Send>>;

/// The connections of a bound listener: TLS handshakes done when `tls` is on (see
/// [`crate::tls`]), plain TCP otherwise. TCP_NODELAY is set either way: without it Nagle's
/// algorithm meets the caller's delayed ACK and every small gRPC answer stalls ~40 ms.
pub fn incoming(listener: TcpListener, tls: &crate::tls::GrpcTls) -> Incoming {
    use futures::StreamExt;
    match tls.get() {
        Some(live) => Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(crate::tls::accept_tls(listener, live.clone()))
                .map(|(conn, _)| Ok(crate::tls::Conn::Tls(Box::new(conn)))),
        ),
        None => Box::pin(
            tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(|conn| conn.map(crate::tls::Conn::Plain)),
        ),
    }
}

/// A shutdown signal that many tasks can wait on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The trigger side of [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl Shutdown {
    /// A shutdown that never comes (tests that run until the runtime ends).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Shutdown(rx)
    }

    pub async fn wait(mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                // The trigger is gone without firing: nothing will ever stop us.
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

/// Resolves on SIGTERM (k8s) or Ctrl-C.
pub async fn os_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received; draining"),
        _ = term => tracing::info!("SIGTERM received; draining"),
    }
}

/// A lazily connecting channel to a peer service: `host:port`, `http://host:port` or
/// `dns:///host:port`. A host name (a headless Service in k8s) is balanced over every
/// address DNS gives for it, re-resolved every few seconds ([`crate::balance`]); an IP
/// literal or `localhost` is one endpoint. With `tls` on, every connection is TLS, the
/// server verified against the mesh's CA under the host name dialled (so a certificate's
/// DNS names must include the name peers are configured with), and redialled with the new
/// identity after a reload. Call it inside a Tokio runtime.
pub fn channel(addr: &str, tls: &crate::tls::GrpcTls) -> anyhow::Result<tonic::transport::Channel> {
    use crate::balance::{self, SystemDns, Target};
    let tls = tls.get().cloned();
    Ok(match Target::parse(addr)? {
        Target::Dns { host, port } => balance::balanced_with(
            &host,
            port,
            Some(std::sync::Arc::new(SystemDns)),
            balance::REFRESH,
            endpoint_settings,
            tls,
        )?,
        Target::Direct(uri) => match tls {
            // One endpoint still, but through the balancer, which knows how to redial with
            // reloaded material.
            Some(tls) => {
                let parsed: http::Uri = uri.parse()?;
                let host = parsed
                    .host()
                    .ok_or_else(|| anyhow::anyhow!("{addr:?} names no host"))?
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let port = parsed.port_u16().unwrap_or(443);
                balance::balanced_with(host, port, None, balance::REFRESH, endpoint_settings, Some(tls))?
            }
            None => endpoint_settings(tonic::transport::Endpoint::from_shared(uri)?).connect_lazy(),
        },
    })
}

/// Every peer connection's settings: fail a dead peer fast, no Nagle delay, and keep-alive
/// pings so a silently dropped connection (a pod gone without a FIN) is noticed.
fn endpoint_settings(endpoint: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
    endpoint
        .connect_timeout(std::time::Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
}
