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
pub mod cookies;
pub mod cors;
pub mod descriptor;
pub mod errors;
pub mod json;
pub mod landing;
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

use referral_common::server::Shutdown;
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
    addr: SocketAddr,
    state: AppState,
    clicks: ClickBatcher,
}

/// Validates `config` (one error line naming a bad setting), creates the service clients
/// (connecting lazily), limiters and caches, and starts the click batcher.
pub async fn build(config: GatewayConfig, listener: TcpListener) -> anyhow::Result<Gateway> {
    let settings = config.validate()?;
    let addr = listener.local_addr()?;
    let (state, clicks) = AppState::new(settings).await?;
    Ok(Gateway {
        listener,
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
        tracing::info!(addr = %self.addr, "gateway listening");
        let closing = self.state.clone();
        let signal = shutdown.clone();
        // TCP_NODELAY: small JSON answers must not wait on Nagle's algorithm.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            signal.wait().await;
            closing.close();
        });
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
