//! The `gateway` binary: `serve` (the default) runs the HTTP/JSON gateway; `migrate` exists
//! for symmetry with the services (the gateway has no database). Started like every
//! service (see [`referral_common::service`]); its `/metrics` is on its own port.

use gateway::GatewayConfig;
use referral_common::{config::LogFormat, server::Shutdown, service::ServiceConfig};
use tokio::net::TcpListener;

fn main() {
    referral_common::service::Service::<Gateway>::new().main()
}

#[derive(clap::Args)]
struct Gateway {
    #[command(flatten)]
    config: GatewayConfig,
}

impl ServiceConfig for Gateway {
    const NAME: &'static str = "gateway";
    const ABOUT: &'static str = "The HTTP/JSON gateway of referral-mesh";
    const LISTEN: &'static str = "GATEWAY_ADDR";
    const METRICS_ADDR: &'static str = "GATEWAY_ADDR";
    const MIGRATE_ABOUT: &'static str = "Nothing to migrate: the gateway keeps no data.";

    fn log_format(&self) -> LogFormat {
        self.config.log_format
    }

    fn listen(&self) -> &str {
        &self.config.listen
    }

    /// `/metrics` is served on the gateway's own port.
    fn metrics_addr(&self) -> Option<&str> {
        None
    }

    fn check(&self) -> anyhow::Result<()> {
        self.config.validate()?;
        Ok(())
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        println!("gateway: nothing to migrate");
        Ok(())
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        // run_until_stopped logs the address: stdout stays one JSON object per line in k8s.
        let gateway = gateway::build(self.config, listener).await?;
        gateway.run_until_stopped(shutdown).await
    }
}
