//! analytics-svc binary: `serve` (default), `migrate` or `rebuild`.

use analytics_svc::{AnalyticsConfig, rebuild::Replayed};
use clap::{Parser, Subcommand};
use referral_common::server;

#[derive(Parser)]
#[command(
    name = "analytics-svc",
    about = "referral-mesh analytics-svc: rollups, viral metrics, the live feed"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: AnalyticsConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Empty every rollup and recompute it from the event logs (offset 0 of each), then exit.
    Rebuild,
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
    match cli.command {
        Some(Command::Migrate) => return analytics_svc::migrate(&cli.config).await,
        Some(Command::Rebuild) => {
            let report = analytics_svc::rebuild(&cli.config).await?;
            for (source, done) in report.logs {
                match done {
                    Replayed::Events(n) => println!("{source}: {n} events replayed"),
                    Replayed::NotServed => println!("{source}: serves no event log yet; skipped"),
                }
            }
            return Ok(());
        }
        Some(Command::Serve) | None => {}
    }
    analytics_svc::check(&cli.config)?;
    let addr = referral_common::config::parse_addr("ANALYTICS_LISTEN", &cli.config.listen)?;
    let (listener, _) = server::bind(addr).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    if let Some(m) = &cli.config.metrics_addr {
        let maddr = referral_common::config::parse_addr("ANALYTICS_METRICS_ADDR", m)?;
        referral_common::metrics::handle();
        tokio::spawn(referral_common::metrics::serve(maddr, shutdown.clone().wait()));
    }
    analytics_svc::serve(cli.config, listener, shutdown).await
}
