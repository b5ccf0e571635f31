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
//!
//! The rooms (the `use`s between their files form no loop):
//! - [`config`]: flags and environment, validated into [`RuntimeConfig`];
//! - [`mapping`]: JSON <-> proto, the input rules, errors (it never names the routes);
//! - [`clients`]: one gRPC client per service;
//! - [`edge`]: what every request passes (client IP, request id, auth, rate limits, CORS,
//!   metrics, connection caps); it knows neither the routes nor the shared state, each
//!   middleware is handed only what it reads;
//! - [`state`]: what every handler shares, including the redirect's code cache and click queue;
//! - [`routes`]: one module per service's resources, the route table, the OpenAPI document
//!   written from it, and the router;
//! - [`serve`]: the accept loop; [`build`] and [`Gateway`] below put it all together.

pub mod clients;
pub mod config;
pub mod edge;
pub mod mapping;
pub mod routes;
pub mod serve;
pub mod state;

use std::{net::SocketAddr, time::Duration};

use std::sync::Arc;

use referral_common::{
    server::Shutdown,
    tls::{LiveTls, RELOAD_EVERY},
};
use tokio::net::TcpListener;

pub use crate::{
    config::{GatewayConfig, RuntimeConfig},
    routes::{clicks::ClickBatcher, router},
    state::AppState,
};
use crate::{edge::conn_limit::ConnectionLimits, serve::ConnectionSettings};

/// In-flight requests get this long after shutdown is signalled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2 pings an idle peer this often and drops it when a ping goes unanswered as long:
/// a vanished client does not hold its connection (and its place under the caps) for ever.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

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
        let app = router(self.state.clone());
        let scheme = if self.https.is_some() { "https" } else { "http" };
        tracing::info!(addr = %self.addr, scheme, "gateway listening");
        let settings = &self.state.settings;
        let limits = ConnectionLimits::new(settings.max_connections, settings.max_connections_per_ip);
        let conn = ConnectionSettings {
            header_read_timeout: settings.header_read_timeout,
            http2_keep_alive: HTTP2_KEEP_ALIVE,
        };
        let closing = self.state.clone();
        let stop = async move {
            shutdown.wait().await;
            // Ends the event streams, which would otherwise hold their connections open.
            closing.close();
        };
        serve::serve(self.listener, self.https, app, limits, conn, stop, DRAIN_TIMEOUT).await;
        self.clicks.drain(Duration::from_secs(10)).await;
        tracing::info!("gateway stopped");
        Ok(())
    }
}
