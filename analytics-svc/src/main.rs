//! analytics-svc binary: `serve` (default) or `migrate`.

use clap::{Parser, Subcommand};
use referral_common::server;

#[derive(Parser)]
#[command(name = "analytics-svc", about = "referral-mesh analytics-svc")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: analytics_svc::AnalyticsConfig,
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
        eprintln!("analytics-svc: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    analytics_svc::check(&cli.config)?;
    if let Some(Command::Migrate) = cli.command {
        return Ok(());
    }
    let addr = referral_common::config::parse_addr("ANALYTICS_LISTEN", &cli.config.listen)?;
    let (listener, _) = server::bind(addr).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    analytics_svc::serve(cli.config, listener, shutdown).await
}
