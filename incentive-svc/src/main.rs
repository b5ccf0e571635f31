//! incentive-svc binary: `serve` (default) or `migrate`.

use clap::{Parser, Subcommand};
use referral_common::server;

#[derive(Parser)]
#[command(
    name = "incentive-svc",
    about = "referral-mesh incentive-svc: reward programs, campaigns, the ledger, payouts"
)]
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
    /// Run the database migrations and exit.
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
    if let Some(Command::Migrate) = cli.command {
        return incentive_svc::migrate(&cli.config).await;
    }
    incentive_svc::check(&cli.config)?;
    let addr = referral_common::config::parse_addr("INCENTIVE_LISTEN", &cli.config.listen)?;
    let (listener, _) = server::bind(addr).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    if let Some(m) = &cli.config.metrics_addr {
        let maddr = referral_common::config::parse_addr("INCENTIVE_METRICS_ADDR", m)?;
        referral_common::metrics::handle();
        tokio::spawn(referral_common::metrics::serve(maddr, shutdown.clone().wait()));
    }
    incentive_svc::serve(cli.config, listener, shutdown).await
}
