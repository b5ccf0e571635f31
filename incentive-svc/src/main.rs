//! incentive-svc binary: `serve` (default) or `migrate`.

use clap::{Parser, Subcommand};
use referral_common::server;

#[derive(Parser)]
#[command(name = "incentive-svc", about = "referral-mesh incentive-svc")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: incentive_svc::IncentiveConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Run the database migrations and exit (none yet).
    Migrate,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    referral_common::telemetry::init(cli.config.log_format);
    if let Err(e) = run(cli).await {
        eprintln!("incentive-svc: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    incentive_svc::check(&cli.config)?;
    if let Some(Command::Migrate) = cli.command {
        return Ok(());
    }
    let addr = referral_common::config::parse_addr("INCENTIVE_LISTEN", &cli.config.listen)?;
    let (listener, _) = server::bind(addr).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    incentive_svc::serve(cli.config, listener, shutdown).await
}
