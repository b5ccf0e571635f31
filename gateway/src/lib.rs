//! The HTTP/JSON edge of referral-mesh: bearer-JWT auth, rate limits, every API route mapped
//! to its gRPC call (JSON is the proto3 JSON mapping), the `/r/{code}` redirect hot path,
//! the live event feed as SSE, health, metrics and a generated `/openapi.json`.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let config = gateway::GatewayConfig::default(); // plus JWT_SECRET
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let gw = gateway::build(config, listener).await?;
//! gw.run_until_stopped(referral_common::server::Shutdown::never()).await
//! # }
//! ```

pub mod auth;
pub mod clicks;
pub mod client_ip;
pub mod clients;
pub mod code_cache;
pub mod config;
pub mod context;
pub mod descriptor;
pub mod errors;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod ratelimit;
pub mod redirect;
pub mod request_id;
pub mod routes;
pub mod sse;
pub mod state;

use std::{net::SocketAddr, time::Duration};

use std::{future::IntoFuture, sync::Arc};

use futures::FutureExt;
use referral_common::{
    server::Shutdown,
    tls::{LiveTls, RELOAD_EVERY, TlsListener},
};
use tokio::net::TcpListener;

pub use crate::{
    clicks::ClickBatcher,
    config::{GatewayConfig, Settings},
    routes::router,
    state::AppState,
};

/// In-flight requests get this long after shutdown is signalled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A built gateway: bound, configured, not yet serving.
pub struct Gateway {
    listener: TcpListener,
    /// HTTPS (GATEWAY_TLS_*), reloaded on change; plain HTTP without it.
    https: Option<Arc<LiveTls>>,
    addr: SocketAddr,
    state: AppState,
    clicks: ClickBatcher,
}

/// Validates `config` (one error line naming a bad setting), creates the service clients
/// (connecting lazily), limiters and caches, and starts the click batcher.
pub async fn build(config: GatewayConfig, listener: TcpListener) -> anyhow::Result<Gateway> {
    let settings = config.validate()?;
    let addr = listener.local_addr()?;
    let https = match &settings.https {
        Some(files) => Some(LiveTls::load(files.clone(), RELOAD_EVERY)?),
        None => None,
    };
    let (state, clicks) = AppState::new(settings).await?;
    Ok(Gateway {
        listener,
        https,
        addr,
        state,
        clicks,
    })
}

impl Gateway {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown`, then stops accepting, ends event streams, lets in-flight
    /// requests finish (up to a deadline) and sends the clicks still queued.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let app = router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let scheme = if self.https.is_some() { "https" } else { "http" };
        tracing::info!(addr = %self.addr, scheme, "gateway listening");
        let closing = self.state.clone();
        let signal = shutdown.clone();
        let stopped = async move {
            signal.wait().await;
            closing.close();
        };
        let server = match self.https {
            // TCP_NODELAY is set by the TLS acceptor.
            Some(live) => {
                let listener = TlsListener::new(self.listener, live)?;
                let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .into_future()
                    .boxed()
            }
            None => {
                // TCP_NODELAY: small JSON answers must not wait on Nagle's algorithm.
                let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .into_future()
                    .boxed()
            }
        };
        let deadline = async move {
            shutdown.wait().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        tokio::select! {
            result = server => result?,
            () = deadline => tracing::warn!("requests still running after the drain timeout; stopping anyway"),
        }
        self.clicks.drain(Duration::from_secs(10)).await;
        tracing::info!("gateway stopped");
        Ok(())
    }
}
