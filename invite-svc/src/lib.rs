//! invite-svc: referral codes, invitations, clicks, signups, conversions and attribution.
//!
//! `serve(config, listener, shutdown)` runs the service on an already bound listener until
//! shutdown (zero2prod style, so tests and the mesh bind port 0 and learn the port first).

pub mod consumers;
pub mod convert;
pub mod domain;
pub mod events;
pub mod fraud;
pub mod grpc;
pub mod settings;
pub mod store;

use std::time::Duration;

use referral_common::{
    auth::{AuthInterceptor, JwtKeys, ServiceCredentials},
    config::{self, Backend, ConfigError},
    consumer::ConsumerConfig,
    idempotency::Idempotency,
    outbox::{EventLogService, EventLogStore},
    server::{self, Shutdown},
};
use referral_proto::invite::v1::invite_service_server::InviteServiceServer;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

pub use settings::InviteConfig;

use crate::{
    domain::{
        quota::{QuotaConfig, QuotaLimits},
        timing,
    },
    fraud::FraudGate,
    grpc::{InviteApi, Settings},
    store::{PgStore, SqliteStore, Store},
};

/// Checks every setting up front so a bad one stops start-up with one line naming it.
pub fn settings_from(config: &InviteConfig) -> Result<Settings, ConfigError> {
    config::check_jwt_secret("JWT_SECRET", &config.jwt_secret)?;
    config::backend_of("INVITE_DATABASE_URL", &config.database_url)?;
    let quotas = QuotaConfig {
        regular: parse_quota("QUOTA_REGULAR", &config.quota_regular)?,
        premium: parse_quota("QUOTA_PREMIUM", &config.quota_premium)?,
        super_connector: parse_quota("QUOTA_SUPER_CONNECTOR", &config.quota_super_connector)?,
        max_queued: u32::try_from(config.max_queued)
            .map_err(|_| ConfigError::new("MAX_QUEUED_PER_REFERRER", "must be a positive number"))?,
    };
    quotas
        .validate()
        .map_err(|e| ConfigError::new("QUOTA_*", e.to_string()))?;
    let default_timezone = timing::parse_timezone(&config.default_timezone)
        .map_err(|e| ConfigError::new("DEFAULT_TIMEZONE", e.to_string()))?;
    if config.attribution_window_days < 1 {
        return Err(ConfigError::new("ATTRIBUTION_WINDOW_DAYS", "must be at least 1"));
    }
    for (name, url) in [
        ("PUBLIC_URL", &config.public_url),
        ("DEFAULT_LANDING_URL", &config.default_landing_url),
    ] {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new(name, "must be an http(s) URL"));
        }
    }
    Ok(Settings {
        public_url: config.public_url.trim_end_matches('/').to_string(),
        default_landing_url: config.default_landing_url.clone(),
        quotas,
        send_rules: Default::default(),
        attribution_window_days: config.attribution_window_days,
        default_timezone,
    })
}

/// `hourly/daily`, e.g. `10/50`.
fn parse_quota(name: &'static str, value: &str) -> Result<QuotaLimits, ConfigError> {
    let parsed = value.split_once('/').and_then(|(h, d)| {
        Some(QuotaLimits {
            per_hour: h.trim().parse().ok()?,
            per_day: d.trim().parse().ok()?,
        })
    });
    parsed.ok_or_else(|| ConfigError::new(name, format!("{value:?} is not HOURLY/DAILY like 10/50")))
}

/// Runs invite-svc on `listener` until `shutdown`, draining in-flight calls.
pub async fn serve(config: InviteConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = settings_from(&config)?;
    match config::backend_of("INVITE_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema)
                .await?
                .with_attribution_window(config.attribution_window_days);
            store.migrate().await?;
            let log = store.pool().clone();
            serve_with(config, settings, store, log, listener, shutdown).await
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url)
                .await?
                .with_attribution_window(config.attribution_window_days);
            store.migrate().await?;
            let log = store.pool().clone();
            serve_with(config, settings, store, log, listener, shutdown).await
        }
    }
}

/// Runs the migrations only (the k8s migration Job).
pub async fn migrate(config: &InviteConfig) -> anyhow::Result<()> {
    match config::backend_of("INVITE_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            PgStore::connect(&config.database_url, &config.db_schema)
                .await?
                .migrate()
                .await
        }
        Backend::Sqlite => SqliteStore::connect(&config.database_url).await?.migrate().await,
    }
}

async fn serve_with<S: Store, L: EventLogStore>(
    config: InviteConfig,
    settings: Settings,
    store: S,
    log: L,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let keys = JwtKeys::new(&config.jwt_secret);
    let fraud = match &config.fraud_addr {
        Some(addr) => FraudGate::connect(
            addr,
            ServiceCredentials::new(&keys, "invite-svc"),
            config.fraud_deadline,
        )?,
        None => FraudGate::Off,
    };
    let idempotency = match &config.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str())
                .map_err(|e| ConfigError::new("REDIS_URL", e.to_string()))?;
            Idempotency::redis(redis::aio::ConnectionManager::new(client).await?, "invite")
        }
        None => Idempotency::in_memory("invite"),
    };
    let (health, health_server) = server::health().await;
    let (reflection_v1, reflection_v1alpha) =
        server::reflection(&["referral.invite.v1.InviteService", "referral.events.v1.EventLog"])?;
    let interceptor = AuthInterceptor::new(keys);
    let api = InviteApi::new(store.clone(), settings, fraud, idempotency);
    let events = EventLogService::new(log, store.outbox(), Duration::from_secs(5), shutdown.clone());

    tokio::spawn(expire_sweeper(store.clone(), shutdown.clone()));
    if let Some(addr) = &config.fraud_addr {
        // Decisions made after the fact (fraud-svc was away, or a reviewer resolved a case).
        let consumer = ConsumerConfig {
            source: "fraud".into(),
            consumer: "invite-svc".into(),
            channel: server::channel(addr).map_err(|e| ConfigError::new("FRAUD_ADDR", e.to_string()))?,
            credentials: ServiceCredentials::new(&JwtKeys::new(&config.jwt_secret), "invite-svc"),
            max_batch: 200,
            max_backoff: Duration::from_secs(5),
        };
        tokio::spawn(referral_common::consumer::run(
            consumer,
            consumers::FraudSink::new(store.clone()),
            shutdown.receiver(),
        ));
    }
    health
        .set_service_status(server::READINESS, ServingStatus::Serving)
        .await;
    tracing::info!(addr = %listener.local_addr()?, "invite-svc serving");
    tonic::transport::Server::builder()
        .layer(referral_common::metrics::GrpcMetricsLayer)
        .add_service(health_server)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InviteServiceServer::with_interceptor(api, interceptor.clone()))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            events.into_server(),
            interceptor,
        ))
        .serve_with_incoming_shutdown(server::incoming(listener), shutdown.wait())
        .await?;
    tracing::info!("invite-svc stopped");
    Ok(())
}

/// Closes invitations whose attribution window has passed, once a minute.
async fn expire_sweeper<S: Store>(store: S, shutdown: Shutdown) {
    loop {
        match store.expire_due(referral_common::ids::now(), 500).await {
            Ok(n) if n > 0 => tracing::info!(expired = n, "invitations expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}
