//! invite-svc binary: `serve` (default) or `migrate`.

use clap::{Parser, Subcommand};
use invite_svc::InviteConfig;
use referral_common::server;

#[derive(Parser)]
#[command(
    name = "invite-svc",
    about = "referral-mesh invite-svc: codes, invitations, attribution"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: InviteConfig,
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
        eprintln!("invite-svc: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Migrate) = cli.command {
        return invite_svc::migrate(&cli.config).await;
    }
    invite_svc::settings_from(&cli.config)?;
    let addr = referral_common::config::parse_addr("INVITE_LISTEN", &cli.config.listen)?;
    let (listener, _) = server::bind(addr).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    if let Some(m) = &cli.config.metrics_addr {
        let maddr = referral_common::config::parse_addr("INVITE_METRICS_ADDR", m)?;
        referral_common::metrics::handle();
        tokio::spawn(referral_common::metrics::serve(maddr, shutdown.clone().wait()));
    }
    invite_svc::serve(cli.config, listener, shutdown).await
}
