//! `referral-mesh`: run the whole mesh on one machine, mint tokens, load demo data.

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use referral_common::{auth::JwtKeys, config::parse_duration};
use referral_mesh::{GrpcPorts, MeshOptions, Part, Storage, parse_role, secret};

#[derive(Parser)]
#[command(
    name = "referral-mesh",
    version,
    about = "The referral-mesh services and gateway in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service and the gateway (the default).
    Serve(ServeArgs),
    /// Print a JWT for this data dir's secret.
    Token(TokenArgs),
    /// Load a realistic demo data set through the gateway's public API.
    Demo(referral_mesh::demo::DemoArgs),
    /// Take a consistent online backup of the four SQLite stores and the data dir's secrets
    /// (the mesh may keep running).
    Backup(BackupArgs),
    /// Restore a backup into a data dir no mesh is running on (empty, unless --force).
    Restore(RestoreArgs),
    /// Seal every service's personal data under the first PII key (after a rotation:
    /// put the new key first in the data dir's pii-keys, restart, run this, drop the old).
    Reencrypt(ReencryptArgs),
}

#[derive(Args)]
struct BackupArgs {
    /// The directory to write the backup to (created; must be new or empty).
    #[arg(long)]
    to: PathBuf,
    /// The data dir of the mesh to back up.
    #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct RestoreArgs {
    /// The backup directory (as written by `referral-mesh backup --to`).
    #[arg(long)]
    from: PathBuf,
    /// The data dir to restore into.
    #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Restore into a non-empty data dir, replacing its stores and secrets.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct ReencryptArgs {
    #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Where the SQLite files and the dev JWT secret live.
    #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The gateway's HTTP address.
    #[arg(long, env = "MESH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// fixed: services on 127.0.0.1:50051-50054 (from --grpc-base-port); auto: free ports.
    #[arg(long, value_enum, default_value_t = GrpcPorts::Fixed)]
    grpc_ports: GrpcPorts,
    /// invite-svc's fixed port; fraud-, incentive- and analytics-svc take the next three.
    #[arg(long, env = "MESH_GRPC_BASE_PORT", default_value_t = referral_mesh::DEFAULT_GRPC_BASE_PORT)]
    grpc_base_port: u16,
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// PEM CA(s) a rediss:// REDIS_URL's certificate must chain to (instead of the web roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = referral_common::config::LogFormat::Pretty)]
    log_format: referral_common::config::LogFormat,
    /// Internal networks outbound webhooks may reach. The one-machine mesh allows loopback,
    /// so a receiver on this machine works; the services alone allow none.
    #[arg(long, env = "WEBHOOK_ALLOWED_NETWORKS", default_value = "127.0.0.0/8,::1/128")]
    webhook_allowed_networks: String,
    /// The parts this process runs (comma-separated; default all). Run the rest in another
    /// terminal on the same data dir to stop and start one service on its own, e.g.
    /// `--parts invite,incentive,analytics,gateway` here and `--parts fraud` there.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Part::ALL)]
    parts: Vec<Part>,
}

#[derive(Args)]
struct TokenArgs {
    #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The subject: a referrer or user id.
    #[arg(long)]
    sub: String,
    /// member or admin (service tokens are minted by the services themselves).
    #[arg(long, value_parser = parse_role)]
    role: referral_common::auth::Role,
    /// SUPPLIER or COUPLE (required for members).
    #[arg(long, value_parser = ["SUPPLIER", "COUPLE"])]
    kind: Option<String>,
    /// Lifetime, e.g. 1h, 30m; at most JWT_MAX_LIFETIME (default 24h).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(t)) => token(t),
        Some(Command::Demo(d)) => {
            referral_common::telemetry::init(referral_common::config::LogFormat::Pretty);
            referral_mesh::demo::run(d).await
        }
        Some(Command::Serve(s)) => serve(s).await,
        Some(Command::Backup(b)) => backup(b).await,
        Some(Command::Restore(r)) => restore(r).await,
        Some(Command::Reencrypt(r)) => reencrypt(r).await,
        None => serve(cli.serve).await,
    };
    if let Err(e) = result {
        eprintln!("referral-mesh: {e:#}");
        std::process::exit(1);
    }
}

async fn reencrypt(r: ReencryptArgs) -> anyhow::Result<()> {
    referral_common::telemetry::init(referral_common::config::LogFormat::Pretty);
    for report in referral_mesh::reencrypt(&Storage::Sqlite, &r.data_dir).await? {
        println!("{report}");
    }
    Ok(())
}

fn token(t: TokenArgs) -> anyhow::Result<()> {
    let max_lifetime = match std::env::var("JWT_MAX_LIFETIME") {
        Ok(v) if !v.trim().is_empty() => {
            parse_duration(&v).map_err(|e| anyhow::anyhow!("invalid setting JWT_MAX_LIFETIME: {e}"))?
        }
        _ => referral_common::auth::DEFAULT_MAX_LIFETIME,
    };
    referral_mesh::check_token_request(t.role, t.kind.as_deref(), &t.sub, t.ttl, max_lifetime)
        .map_err(|e| anyhow::anyhow!(e))?;
    let secret = secret::load(&t.data_dir)?;
    println!(
        "{}",
        JwtKeys::new(&secret).mint(&t.sub, t.role, t.kind.as_deref(), t.ttl)
    );
    Ok(())
}

async fn backup(b: BackupArgs) -> anyhow::Result<()> {
    secret::restrict_umask();
    let report = referral_mesh::backup::backup(&b.data_dir, &b.to).await?;
    println!(
        "backup of {} written to {} ({} files, manifest.json)",
        b.data_dir.display(),
        report.dir.display(),
        report.manifest.files.len()
    );
    for (store, info) in &report.manifest.stores {
        let offsets: Vec<String> = info
            .consumer_offsets
            .iter()
            .map(|(source, offset)| format!("{source}@{offset}"))
            .collect();
        println!(
            "  {store:<10} migrations up to {:>4}  event log head {:>8}  consumers {}",
            info.migrations.last().copied().unwrap_or(0),
            info.event_log_head,
            if offsets.is_empty() {
                "-".to_string()
            } else {
                offsets.join(" ")
            }
        );
    }
    for (file, env) in &report.secrets_not_in_files {
        println!(
            "  warning: no {file} in the data dir ({env} comes from the environment): keep {env} with this backup, the restored data needs it"
        );
    }
    Ok(())
}

async fn restore(r: RestoreArgs) -> anyhow::Result<()> {
    secret::restrict_umask();
    let opts = referral_mesh::backup::RestoreOptions {
        from: r.from.clone(),
        data_dir: r.data_dir.clone(),
        force: r.force,
    };
    let manifest = referral_mesh::backup::restore(&opts).await?;
    println!(
        "restored the backup of {} (referral-mesh {}) from {} into {}; start it with: referral-mesh serve --data-dir {}",
        manifest.created_at.to_rfc3339(),
        manifest.referral_mesh_version,
        r.from.display(),
        r.data_dir.display(),
        r.data_dir.display()
    );
    Ok(())
}

async fn serve(s: ServeArgs) -> anyhow::Result<()> {
    // Before anything is created: files of the mesh are for its owner only.
    secret::restrict_umask();
    referral_common::telemetry::init(s.log_format);
    secret::private_dir(&s.data_dir)?;
    let jwt_secret = secret::load_or_create(&s.data_dir)?;
    let service_jwt_secret = secret::load_or_create_kind(&s.data_dir, secret::SERVICE)?;
    let mut mesh = referral_mesh::start(MeshOptions {
        data_dir: s.data_dir.clone(),
        listen: s.listen,
        grpc_ports: s.grpc_ports,
        grpc_base_port: s.grpc_base_port,
        storage: Storage::Sqlite,
        redis_url: s.redis_url.clone(),
        redis_ca_file: s.redis_ca_file.clone(),
        jwt_secret,
        service_jwt_secret,
        gateway_args: vec![],
        invite_args: vec![],
        analytics_args: vec![
            "--webhook-allowed-networks".into(),
            s.webhook_allowed_networks.clone(),
        ],
        parts: s.parts.clone(),
        invite_send_fault: Default::default(),
        consumer_fault: Default::default(),
    })
    .await?;
    if s.parts.len() < Part::ALL.len() {
        let here: Vec<&str> = s.parts.iter().map(|p| p.name()).collect();
        let elsewhere: Vec<&str> = Part::ALL
            .iter()
            .filter(|p| !s.parts.contains(p))
            .map(|p| p.name())
            .collect();
        println!(
            "\nthis process runs {} (SQLite in {dir}; Ctrl-C to stop)\nexpected from another `referral-mesh serve --parts ...` on the same data dir: {}",
            here.join(", "),
            elsewhere.join(", "),
            dir = s.data_dir.display(),
        );
    }
    if s.parts.contains(&Part::Gateway) {
        let admin = mesh.token("admin", referral_common::auth::Role::Admin, None);
        let token_file = secret::write_admin_token(&s.data_dir, &admin)?;
        // The token goes to a terminal only: piped or redirected stdout ends up in logs.
        let admin_line = if std::io::stdout().is_terminal() {
            format!("admin token (1h, also in {}):\n  {admin}", token_file.display())
        } else {
            format!(
                "admin token (1h): in {} (printed only to a terminal)",
                token_file.display()
            )
        };
        let url = mesh.gateway_url();
        println!(
            "\nreferral-mesh is running (SQLite in {dir}; Ctrl-C to stop)\n\n  gateway     {url}\n  dashboard   {url}/  (paste the admin token)\n  openapi     {url}/openapi.json\n  health      {url}/healthz  {url}/readyz  {url}/metrics\n  mailbox     {mailbox}\n  invite-svc     grpc {i}\n  fraud-svc      grpc {f}\n  incentive-svc  grpc {n}\n  analytics-svc  grpc {a}\n\n  {admin_line}\n\n  more tokens:  referral-mesh token --data-dir {dir} --sub alice --role member --kind SUPPLIER\n  demo data:    referral-mesh demo --gateway {url}\n",
            dir = s.data_dir.display(),
            i = mesh.invite,
            f = mesh.fraud,
            n = mesh.incentive,
            a = mesh.analytics,
            mailbox = match &mesh.mailbox {
                Some(dir) => format!("{}  (every invitation sent, as .eml / .sms.txt)", dir.display()),
                None => "none: invitations go out by SMTP (SMTP_HOST)".to_string(),
            },
        );
    }
    tokio::select! {
        _ = referral_common::server::os_signal() => {}
        (name, result) = mesh.any_stopped() => {
            match result {
                Ok(()) => anyhow::bail!("{name} stopped unexpectedly"),
                Err(e) => anyhow::bail!("{name} failed: {e:#}"),
            }
        }
    }
    mesh.stop(Duration::from_secs(25)).await;
    println!("referral-mesh stopped");
    Ok(())
}
