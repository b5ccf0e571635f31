//! fraud-svc binary: `serve` (default) or `migrate`.

use clap::{Parser, Subcommand};
use fraud_svc::FraudConfig;
use referral_common::server;

#[derive(Parser)]
#[command(
    name = "fraud-svc",
    about = "referral-mesh fraud-svc: risk scores, hard rules, review cases, fraud rings"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: FraudConfig,
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
        eprintln!("fraud-svc: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Migrate) = cli.command {
        return fraud_svc::migrate(&cli.config).await;
    }
    fraud_svc::check(&cli.config)?;
    let addr = referral_common::config::parse_addr("FRAUD_LISTEN", &cli.config.listen)?;
    let (listener, _) = server::bind(addr).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    if let Some(m) = &cli.config.metrics_addr {
        let maddr = referral_common::config::parse_addr("FRAUD_METRICS_ADDR", m)?;
        referral_common::metrics::handle();
        tokio::spawn(referral_common::metrics::serve(maddr, shutdown.clone().wait()));
    }
    fraud_svc::serve(cli.config, listener, shutdown).await
}
