//! The `gateway` binary: `serve` (the default) runs the HTTP/JSON gateway; `migrate` exists
//! for symmetry with the services (the gateway has no database).

use clap::{Parser, Subcommand};
use gateway::GatewayConfig;
use referral_common::{server, telemetry};

#[derive(Parser)]
#[command(name = "gateway", version, about = "The HTTP/JSON gateway of referral-mesh")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: GatewayConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Nothing to migrate: the gateway keeps no data.
    Migrate,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("gateway: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.config.log_format);
    if matches!(cli.command, Some(Command::Migrate)) {
        println!("gateway: nothing to migrate");
        return Ok(());
    }
    let settings = cli.config.validate()?;
    let (listener, _) = server::bind(settings.listen).await.map_err(|e| {
        anyhow::anyhow!(
            "invalid setting GATEWAY_ADDR: cannot listen on {}: {e}",
            settings.listen
        )
    })?;
    // run_until_stopped logs the address: stdout stays one JSON object per line in k8s.
    let gateway = gateway::build(cli.config, listener).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    gateway.run_until_stopped(shutdown).await
}
