//! The whole referral-mesh in one process: the four services on embedded SQLite (or on
//! Postgres when asked, as the tests do) and the gateway, each on its own listener.
//! `start` is also the integration tests' `spawn_app`.

pub mod backup;
pub mod demo;
pub mod lock;
pub mod secret;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser};
use referral_common::{
    auth::{JwtKeys, Role, ServiceKeys},
    config::Secret,
    server::{self, Shutdown, ShutdownTrigger},
};
use tokio::task::JoinHandle;

/// The first of the fixed gRPC ports: invite-svc, then fraud-, incentive- and analytics-svc.
pub const DEFAULT_GRPC_BASE_PORT: u16 = 50051;

/// Where each service listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum GrpcPorts {
    /// 127.0.0.1, from the base port (50051-50054 by default).
    #[default]
    Fixed,
    /// Free ports chosen by the OS.
    Auto,
}

/// A part of the mesh: a service or the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    #[value(alias = "invite-svc")]
    Invite,
    #[value(alias = "fraud-svc")]
    Fraud,
    #[value(alias = "incentive-svc")]
    Incentive,
    #[value(alias = "analytics-svc")]
    Analytics,
    Gateway,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::Invite,
        Part::Fraud,
        Part::Incentive,
        Part::Analytics,
        Part::Gateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Invite => "invite-svc",
            Part::Fraud => "fraud-svc",
            Part::Incentive => "incentive-svc",
            Part::Analytics => "analytics-svc",
            Part::Gateway => "gateway",
        }
    }
}

/// Which database the services use.
#[derive(Debug, Clone)]
pub enum Storage {
    /// One SQLite file per service in the data dir.
    Sqlite,
    /// One Postgres database, one schema per service named `{service}{suffix}`.
    Postgres { url: String, schema_suffix: String },
}

#[derive(Debug, Clone)]
pub struct MeshOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub grpc_ports: GrpcPorts,
    /// With fixed ports: invite-svc's; the other services take the next three.
    pub grpc_base_port: u16,
    pub storage: Storage,
    pub redis_url: Option<String>,
    /// The CA a `rediss://` redis_url's certificate must chain to (REDIS_CA_FILE).
    pub redis_ca_file: Option<PathBuf>,
    pub jwt_secret: Secret,
    /// Signs the services' own short-lived tokens (never accepted from the public edge).
    pub service_jwt_secret: Secret,
    /// Extra gateway flags (tests tune rate limits with these).
    pub gateway_args: Vec<String>,
    /// Extra invite-svc flags.
    pub invite_args: Vec<String>,
    /// Extra analytics-svc flags (webhook retry timing and allowed networks in tests).
    pub analytics_args: Vec<String>,
    /// The parts this process runs (all of them normally). The others are expected at their
    /// fixed addresses, run by another `referral-mesh serve --parts ...` on the same data dir:
    /// that is how one service is stopped and started again while the rest keep running.
    pub parts: Vec<Part>,
    /// Tests only: a fault invite-svc's scheduler runs before each send.
    pub invite_send_fault: invite_svc::scheduler::SendFault,
    /// Tests only: a fault every service's event consumers run before applying an event.
    pub consumer_fault: referral_common::consumer::ConsumerFault,
}

impl MeshOptions {
    fn runs(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// A running mesh.
pub struct Mesh {
    pub gateway: SocketAddr,
    pub invite: SocketAddr,
    pub fraud: SocketAddr,
    pub incentive: SocketAddr,
    pub analytics: SocketAddr,
    pub keys: JwtKeys,
    /// The service-token key (tests call services over gRPC as a service with it).
    pub service_keys: ServiceKeys,
    /// Where invite-svc keeps every message it sends; `None` when it sends by SMTP.
    pub mailbox: Option<PathBuf>,
    /// invite-svc's scheduling clock: tests move it to watch days-ahead sends happen now.
    pub invite_clock: invite_svc::Clock,
    /// The gateway stops first (it flushes queued clicks to invite-svc), then the services.
    gateway_trigger: ShutdownTrigger,
    gateway_task: Option<JoinHandle<anyhow::Result<()>>>,
    trigger: ShutdownTrigger,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    /// Held (shared) while the mesh runs, so `restore` refuses this data dir.
    _data_dir_lock: lock::DataDirLock,
}

impl Mesh {
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway)
    }

    /// A web token (member, admin), or a service token signed with the service key (good
    /// for calling services over gRPC, refused by the gateway).
    pub fn token(&self, sub: &str, role: Role, kind: Option<&str>) -> String {
        match role {
            Role::Service => self.service_keys.mint(sub),
            _ => self.keys.mint(sub, role, kind, Duration::from_secs(3600)),
        }
    }

    /// Waits for any part to stop or fail (it should not), then reports it.
    pub async fn any_stopped(&mut self) -> (&'static str, anyhow::Result<()>) {
        let gateway = self.gateway_task.as_mut().map(|h| ("gateway", h));
        let futures = self
            .tasks
            .iter_mut()
            .map(|(name, h)| (*name, h))
            .chain(gateway)
            .map(|(name, h)| {
                Box::pin(async move {
                    (
                        name,
                        h.await
                            .unwrap_or_else(|e| Err(anyhow::anyhow!("task panicked: {e}"))),
                    )
                })
            });
        futures::future::select_all(futures).await.0
    }

    /// Drains every part (in-flight calls finish) and waits, at most `grace`.
    pub async fn stop(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.gateway_trigger.trigger();
        if let Some(gateway) = self.gateway_task {
            let _ = tokio::time::timeout_at(deadline, gateway).await;
        }
        self.trigger.trigger();
        let all = futures::future::join_all(self.tasks.into_iter().map(|(_, h)| h));
        let _ = tokio::time::timeout_at(deadline, all).await;
    }
}

#[derive(Parser)]
struct Wrap<T: Args> {
    #[command(flatten)]
    inner: T,
}

/// Builds a service's configuration exactly as its own binary would parse it.
fn config<T: Args>(args: Vec<String>) -> anyhow::Result<T> {
    let argv = std::iter::once("referral-mesh".to_string()).chain(args);
    Ok(Wrap::<T>::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .inner)
}

/// A service's listener when this process runs it, and its address either way.
async fn bind(
    opts: &MeshOptions,
    part: Part,
    fixed: u16,
) -> anyhow::Result<(Option<tokio::net::TcpListener>, SocketAddr)> {
    let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    if !opts.runs(part) {
        return Ok((None, at(fixed)));
    }
    let port = if opts.grpc_ports == GrpcPorts::Auto {
        0
    } else {
        fixed
    };
    let (listener, addr) = server::bind(at(port)).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on 127.0.0.1:{port} for {}: {e} (is another mesh running it? try --grpc-ports auto)",
            part.name()
        )
    })?;
    Ok((Some(listener), addr))
}

/// Every service's SQLite database (and an existing WAL and SHM file) 0600 before it is
/// opened: SQLite gives the WAL and SHM files it creates the database file's mode.
fn private_sqlite_files(data_dir: &std::path::Path) -> anyhow::Result<()> {
    for service in ["invite", "fraud", "incentive", "analytics"] {
        secret::private_file(&data_dir.join(format!("{service}.db")))?;
        for suffix in ["-wal", "-shm"] {
            let path = data_dir.join(format!("{service}.db{suffix}"));
            if path.exists() {
                secret::private_file(&path)?;
            }
        }
    }
    Ok(())
}

fn database_url(opts: &MeshOptions, service: &str) -> (String, String) {
    storage_url(&opts.storage, &opts.data_dir, service)
}

fn storage_url(storage: &Storage, data_dir: &std::path::Path, service: &str) -> (String, String) {
    match storage {
        Storage::Sqlite => (
            format!("sqlite:{}", data_dir.join(format!("{service}.db")).display()),
            service.into(),
        ),
        Storage::Postgres { url, schema_suffix } => (url.clone(), format!("{service}{schema_suffix}")),
    }
}

/// `referral-mesh reencrypt`: every service that keeps personal data seals it under the data
/// dir's first PII key (`pii-keys`, or PII_KEYS) and hashes lookups still held in plain;
/// run after putting a new key first (`k2:...,k1:...`) and restarting, then drop the old key.
/// Safe while the mesh runs (each batch is its own write transaction). Returns each
/// service's counts.
pub async fn reencrypt(
    storage: &Storage,
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<referral_common::pii::ReencryptReport>> {
    if matches!(storage, Storage::Sqlite) && !data_dir.join("invite.db").exists() {
        anyhow::bail!(
            "{} holds no mesh databases (is --data-dir the one `serve` used?)",
            data_dir.display()
        );
    }
    let pii = secret::pii_keys_load_or_create(data_dir)?;
    let common = |service: &str| -> Vec<String> {
        let (url, schema) = storage_url(storage, data_dir, service);
        vec![
            "--database-url".into(),
            url,
            "--db-schema".into(),
            schema,
            "--pii-keys".into(),
            pii.keys.clone(),
            "--pii-lookup-key".into(),
            pii.lookup.clone(),
        ]
    };
    let mut reports = Vec::new();
    let invite: invite_svc::InviteConfig = config(common("invite"))?;
    reports.push(invite_svc::reencrypt(&invite).await?);
    let fraud: fraud_svc::FraudConfig = config(common("fraud"))?;
    reports.push(fraud_svc::reencrypt(&fraud).await?);
    // incentive-svc and analytics-svc hold ids and pseudonyms, no sealed personal data.
    Ok(reports)
}

/// Starts the parts `opts` names (normally every service and the gateway); returns once
/// they are ready.
pub async fn start(opts: MeshOptions) -> anyhow::Result<Mesh> {
    if opts.parts.is_empty() {
        anyhow::bail!("--parts names no part to run");
    }
    if opts.parts.len() < Part::ALL.len() && opts.grpc_ports == GrpcPorts::Auto {
        anyhow::bail!(
            "--parts needs --grpc-ports fixed: the parts run elsewhere are found at their fixed ports"
        );
    }
    secret::private_dir(&opts.data_dir)?;
    let data_dir_lock = lock::running(&opts.data_dir)?;
    if matches!(opts.storage, Storage::Sqlite) {
        private_sqlite_files(&opts.data_dir)?;
    }
    let secret = opts.jwt_secret.expose().to_string();
    let service_secret = opts.service_jwt_secret.expose().to_string();
    let click_keys = secret::click_keys_load_or_create(&opts.data_dir)?
        .expose()
        .to_string();
    let pii = secret::pii_keys_load_or_create(&opts.data_dir)?;
    let unsubscribe_key = secret::unsubscribe_key_load_or_create(&opts.data_dir)?;
    let (trigger, shutdown) = server::shutdown_pair();
    let base = opts.grpc_base_port;
    if base > u16::MAX - 3 {
        anyhow::bail!("--grpc-base-port {base} leaves no room for the four services' ports");
    }
    let (invite_l, invite) = bind(&opts, Part::Invite, base).await?;
    let (fraud_l, fraud) = bind(&opts, Part::Fraud, base + 1).await?;
    let (incentive_l, incentive) = bind(&opts, Part::Incentive, base + 2).await?;
    let (analytics_l, analytics) = bind(&opts, Part::Analytics, base + 3).await?;
    let gateway_l = if opts.runs(Part::Gateway) {
        Some(
            server::bind(opts.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", opts.listen))?,
        )
    } else {
        None
    };
    let gateway = gateway_l.as_ref().map_or(opts.listen, |(_, addr)| *addr);
    let public_url = format!("http://{gateway}");
    let redis: Vec<String> = opts
        .redis_url
        .iter()
        .flat_map(|u| ["--redis-url".to_string(), u.clone()])
        .chain(
            opts.redis_ca_file
                .iter()
                .flat_map(|f| ["--redis-ca-file".to_string(), f.display().to_string()]),
        )
        .collect();
    let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();

    let (url, schema) = database_url(&opts, "invite");
    let mut args = vec![
        "--database-url".into(),
        url,
        "--db-schema".into(),
        schema,
        "--jwt-secret".into(),
        secret.clone(),
        "--service-jwt-secret".into(),
        service_secret.clone(),
        "--pii-keys".into(),
        pii.keys.clone(),
        "--pii-lookup-key".into(),
        pii.lookup.clone(),
        "--click-signing-keys".into(),
        click_keys.clone(),
        "--unsubscribe-signing-key".into(),
        unsubscribe_key,
        "--public-url".into(),
        public_url.clone(),
    ];
    // Tests may point invite-svc at a fraud-svc of their own (to stop and start it).
    if !opts.invite_args.iter().any(|a| a == "--fraud-addr") {
        args.extend(["--fraud-addr".to_string(), fraud.to_string()]);
    }
    // Every message lands in the data dir's mailbox, where a new user can open it.
    let mailbox = opts.data_dir.join("mailbox");
    args.extend(["--dev-mailbox-dir".to_string(), mailbox.display().to_string()]);
    args.extend(redis.clone());
    args.extend(opts.invite_args.clone());
    let mut invite_cfg: invite_svc::InviteConfig = config(args)?;
    // The parts dial one another, and the readiness wait dials them, in plaintext on
    // loopback: GRPC_TLS_* in the environment would half-apply, so it is refused outright.
    if invite_cfg.grpc_tls.files()?.is_some() {
        anyhow::bail!(
            "GRPC_TLS_* is set, but referral-mesh runs its parts in plaintext on loopback: unset it, or run each service's own binary for TLS"
        );
    }
    let invite_clock = invite_svc::Clock::system();
    invite_cfg.clock = invite_clock.clone();
    invite_cfg.send_fault = opts.invite_send_fault.clone();
    invite_cfg.supervision.consumer_fault = opts.consumer_fault.clone();
    let by_smtp = invite_cfg
        .smtp_host
        .as_deref()
        .is_some_and(|h| !h.trim().is_empty());
    let mailbox = (!by_smtp).then(|| invite_cfg.dev_mailbox_dir.clone());
    if let Some(l) = invite_l {
        tasks.push((
            "invite-svc",
            tokio::spawn(invite_svc::serve(invite_cfg, l, shutdown.clone())),
        ));
    }

    let (url, schema) = database_url(&opts, "fraud");
    let mut fraud_cfg: fraud_svc::FraudConfig = config(vec![
        "--database-url".into(),
        url,
        "--db-schema".into(),
        schema,
        "--jwt-secret".into(),
        secret.clone(),
        "--service-jwt-secret".into(),
        service_secret.clone(),
        "--pii-keys".into(),
        pii.keys.clone(),
        "--pii-lookup-key".into(),
        pii.lookup.clone(),
        "--invite-addr".into(),
        invite.to_string(),
    ])?;
    fraud_cfg.supervision.consumer_fault = opts.consumer_fault.clone();
    if let Some(l) = fraud_l {
        tasks.push((
            "fraud-svc",
            tokio::spawn(fraud_svc::serve(fraud_cfg, l, shutdown.clone())),
        ));
    }

    let (url, schema) = database_url(&opts, "incentive");
    let mut args = vec![
        "--database-url".into(),
        url,
        "--db-schema".into(),
        schema,
        "--jwt-secret".into(),
        secret.clone(),
        "--service-jwt-secret".into(),
        service_secret.clone(),
        "--pii-keys".into(),
        pii.keys.clone(),
        "--pii-lookup-key".into(),
        pii.lookup.clone(),
        "--invite-addr".into(),
        invite.to_string(),
        "--fraud-addr".into(),
        fraud.to_string(),
    ];
    args.extend(redis.clone());
    let mut incentive_cfg: incentive_svc::IncentiveConfig = config(args)?;
    incentive_cfg.supervision.consumer_fault = opts.consumer_fault.clone();
    if let Some(l) = incentive_l {
        tasks.push((
            "incentive-svc",
            tokio::spawn(incentive_svc::serve(incentive_cfg, l, shutdown.clone())),
        ));
    }

    let (url, schema) = database_url(&opts, "analytics");
    // analytics-svc consumes all three services' event logs into its rollups and webhooks.
    let mut args = vec![
        "--database-url".into(),
        url,
        "--db-schema".into(),
        schema,
        "--jwt-secret".into(),
        secret.clone(),
        "--service-jwt-secret".into(),
        service_secret.clone(),
        "--pii-keys".into(),
        pii.keys.clone(),
        "--pii-lookup-key".into(),
        pii.lookup.clone(),
        "--invite-addr".into(),
        invite.to_string(),
        "--fraud-addr".into(),
        fraud.to_string(),
        "--incentive-addr".into(),
        incentive.to_string(),
    ];
    args.extend(opts.analytics_args.clone());
    let mut analytics_cfg: analytics_svc::AnalyticsConfig = config(args)?;
    analytics_cfg.supervision.consumer_fault = opts.consumer_fault.clone();
    if let Some(l) = analytics_l {
        tasks.push((
            "analytics-svc",
            tokio::spawn(analytics_svc::serve(analytics_cfg, l, shutdown.clone())),
        ));
    }

    let mut args = vec![
        "--invite-addr".into(),
        invite.to_string(),
        "--fraud-addr".into(),
        fraud.to_string(),
        "--incentive-addr".into(),
        incentive.to_string(),
        "--analytics-addr".into(),
        analytics.to_string(),
        "--jwt-secret".into(),
        secret.clone(),
        "--service-jwt-secret".into(),
        service_secret.clone(),
        "--click-signing-keys".into(),
        click_keys,
        "--public-url".into(),
        public_url,
        "--listen".into(),
        gateway.to_string(),
    ];
    args.extend(redis);
    args.extend(opts.gateway_args.clone());
    let gateway_cfg: gateway::GatewayConfig = config(args)?;
    let (gateway_trigger, gateway_shutdown) = server::shutdown_pair();
    let gateway_task = match gateway_l {
        Some((l, _)) => {
            let gw = gateway::build(gateway_cfg, l).await?;
            Some(tokio::spawn(gw.run_until_stopped(gateway_shutdown)))
        }
        None => None,
    };

    let keys = JwtKeys::new(&opts.jwt_secret);
    let service_keys = ServiceKeys::new(&opts.service_jwt_secret);
    let mesh = Mesh {
        gateway,
        invite,
        fraud,
        incentive,
        analytics,
        keys,
        service_keys,
        mailbox,
        invite_clock,
        gateway_trigger,
        gateway_task,
        trigger,
        tasks,
        _data_dir_lock: data_dir_lock,
    };
    wait_ready(&mesh, &opts.parts, &shutdown).await?;
    Ok(mesh)
}

/// Ready when every service this process runs answers SERVING on its `readiness` health
/// check (migrations done) and the gateway, if run here, answers `/healthz`. Parts run by
/// another process are not waited for: they may be stopped on purpose.
async fn wait_ready(mesh: &Mesh, parts: &[Part], _shutdown: &Shutdown) -> anyhow::Result<()> {
    let services = [
        (Part::Invite, mesh.invite),
        (Part::Fraud, mesh.fraud),
        (Part::Incentive, mesh.incentive),
        (Part::Analytics, mesh.analytics),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for (part, addr) in services.into_iter().filter(|(p, _)| parts.contains(p)) {
        while !serving(addr).await {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{} did not become ready within 15 s ({addr})", part.name());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if parts.contains(&Part::Gateway) {
        let url = format!("{}/healthz", mesh.gateway_url());
        let client = reqwest::Client::new();
        while !client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the gateway did not answer within 15 s ({url})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn serving(addr: SocketAddr) -> bool {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut client = HealthClient::new(channel);
    let req = HealthCheckRequest {
        service: server::READINESS.to_string(),
    };
    client
        .check(req)
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// `Role` by its name, for the `token` subcommand.
pub fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role: member or admin"))
}

/// What `referral-mesh token` refuses up front, rather than print a token the gateway
/// would answer 401 to.
pub fn check_token_request(
    role: Role,
    kind: Option<&str>,
    sub: &str,
    ttl: Duration,
    max_lifetime: Duration,
) -> Result<(), String> {
    match role {
        Role::Service => {
            return Err("--role service: service tokens are minted by the services with SERVICE_JWT_SECRET and are never accepted by the gateway; use member or admin".into());
        }
        Role::ApiKey => {
            return Err("--role apikey: API keys are created by an admin with POST /v1/api-keys, not minted as tokens".into());
        }
        Role::Member if kind.is_none() => {
            return Err("--role member needs --kind SUPPLIER or --kind COUPLE".into());
        }
        _ => {}
    }
    referral_common::auth::valid_subject(sub).map_err(|e| format!("--sub: {e}"))?;
    if ttl.is_zero() {
        return Err("--ttl must be more than 0s".into());
    }
    if ttl > max_lifetime {
        return Err(format!(
            "--ttl {}s is above the maximum token lifetime of {}s (JWT_MAX_LIFETIME)",
            ttl.as_secs(),
            max_lifetime.as_secs()
        ));
    }
    Ok(())
}
