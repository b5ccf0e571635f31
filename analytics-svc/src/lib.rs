//! analytics-svc: the viral loop measured from rollups of every service's events, and the
//! live feed.
//!
//! `serve(config, listener, shutdown)` runs the service on an already bound listener until
//! shutdown: health (readiness SERVING once migrations ran), reflection, `AnalyticsService`
//! behind the auth interceptor, and a consumer for each configured event log (invite-svc's,
//! fraud-svc's, incentive-svc's) that keeps the rollups up to date. `rebuild(config)`
//! recomputes every rollup from the logs.
//!
//! Rooms: `adapters/` (gRPC, the event consumers, the rebuild replay, the live feed, the
//! webhook consumers and dispatcher) only translate and call one `app/` function per use
//! case; `app/` orchestrates `domain/` (pure rules) and `store/` (the `Store` trait and its
//! `WebhookStore` companion, both implemented by the Postgres and SQLite stores, the SQL
//! written once in `store/sql.rs`).

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;

/// What `rebuild` replayed per log (`rebuild::Replayed`).
pub use adapters::rebuild;

use std::time::Duration;

use referral_common::{
    auth::{AuthInterceptor, ServiceCredentials, ServiceKeys, Verifier},
    config::{Backend, ConfigError, backend_of},
    consumer::{self, ConsumerConfig},
    server::{self, Shutdown},
    service::GrpcServer,
    tls::GrpcTls,
};
use referral_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use config::{AnalyticsConfig, RuntimeConfig};

use crate::{
    adapters::{
        consumers::{self, Rollups},
        grpc::AnalyticsApi,
        live::LiveFeed,
        rebuild::Replayed,
        webhooks,
    },
    store::{PgStore, SqliteStore, Store, webhooks::WebhookStore},
};

/// The start-up check the mesh and the binary run before serving.
pub fn check(config: &AnalyticsConfig) -> Result<(), ConfigError> {
    config.runtime()?;
    config.webhooks.target_policy()?;
    config.webhooks.retry_policy().map(|_| ())
}

/// Runs analytics-svc on `listener` until `shutdown`, draining in-flight calls.
pub async fn serve(config: AnalyticsConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    check(&config)?;
    let runtime = config.runtime()?;
    match backend_of("ANALYTICS_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema).await?;
            serve_with(config, runtime, store, listener, shutdown).await
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url).await?;
            serve_with(config, runtime, store, listener, shutdown).await
        }
    }
}

// How the `analytics-svc` binary starts (see `referral_common::service`).
referral_common::service_config! {
    AnalyticsConfig {
        name: "analytics-svc",
        about: "referral-mesh analytics-svc: rollups, viral metrics, the live feed",
        settings: "ANALYTICS",
        check: check,
    }
}

/// Runs the migrations only (the k8s migration Job).
pub async fn migrate(config: &AnalyticsConfig) -> anyhow::Result<()> {
    match backend_of("ANALYTICS_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            PgStore::connect(&config.database_url, &config.db_schema)
                .await?
                .migrate()
                .await
        }
        Backend::Sqlite => SqliteStore::connect(&config.database_url).await?.migrate().await,
    }
}

/// The logs this configuration consumes: (source key, setting name, address).
fn sources(config: &AnalyticsConfig) -> Vec<(&'static str, &'static str, String)> {
    [
        (consumers::INVITE_SOURCE, "INVITE_ADDR", &config.invite_addr),
        (consumers::FRAUD_SOURCE, "FRAUD_ADDR", &config.fraud_addr),
        (
            consumers::INCENTIVE_SOURCE,
            "INCENTIVE_ADDR",
            &config.incentive_addr,
        ),
    ]
    .into_iter()
    .filter_map(|(source, name, addr)| addr.clone().map(|a| (source, name, a)))
    .collect()
}

fn channel_of(name: &'static str, addr: &str, tls: &GrpcTls) -> Result<Channel, ConfigError> {
    server::channel(addr, tls).map_err(|e| ConfigError::new(name, e.to_string()))
}

/// Serves an already migrated store (tests and benchmarks build their own).
pub async fn serve_with<
    S: Store
        + WebhookStore
        + referral_common::audit::AuditStore
        + Into<referral_common::parked::ParkedDb>
        + Into<referral_common::retention::RetentionDb>,
>(
    config: AnalyticsConfig,
    runtime: RuntimeConfig,
    store: S,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let keys = ServiceKeys::new(&config.service_jwt_secret);
    let tls = config.grpc_tls.load()?;
    let interceptor = AuthInterceptor::new(Verifier::new(
        config.web_tokens.validate()?.keys().await?,
        keys.clone(),
    ));
    let sink = Rollups::new(store.clone(), &runtime.currency);
    let pii = config.pii.keys()?;
    let live = LiveFeed::new(runtime.live_feed_rate, pii.clone());
    let mut grpc = GrpcServer::new(
        "analytics-svc",
        interceptor,
        config.health_listen.as_deref(),
        &shutdown,
    )
    .await?;
    let tasks = grpc.tasks().clone();
    // Rollups are aggregates and kept; what analytics-svc bounds is its dedupe ids.
    referral_common::retention::RetentionJob::new(
        "analytics-svc",
        store.clone(),
        &config.retention,
        Vec::new(),
    )
    .supervise(&tasks, shutdown.clone());
    let parking = referral_common::parked::Parking::new(store.clone(), &config.supervision);
    // Privacy requests (issue #16): this service's part, served and followed.
    let person_records: std::sync::Arc<dyn referral_common::privacy::PersonData> = std::sync::Arc::new(
        app::privacy::PersonRecords::new(store.clone(), config.pii.keys()?),
    );
    if let Some(addr) = &config.invite_addr {
        referral_common::privacy::follow_requests(
            &tasks,
            referral_common::privacy::Follower {
                service: "analytics-svc",
                data: person_records.clone(),
                db: parking.db().clone(),
                invite: channel_of("INVITE_ADDR", addr, &tls)?,
                keys: keys.clone(),
                parking: parking.clone(),
                max_backoff: Duration::from_secs(10),
            },
            shutdown.receiver(),
        );
    }
    for (source, name, addr) in sources(&config) {
        live.tail(
            &tasks,
            source,
            channel_of(name, &addr, &tls)?,
            ServiceCredentials::new(&keys, consumers::CONSUMER),
            shutdown.receiver(),
        );
        let consumer_config = ConsumerConfig {
            source: source.into(),
            consumer: consumers::CONSUMER.into(),
            channel: channel_of(name, &addr, &tls)?,
            credentials: ServiceCredentials::new(&keys, consumers::CONSUMER),
            max_batch: 200,
            max_backoff: Duration::from_secs(10),
            parking: parking.clone(),
        };
        consumer::supervise(
            &tasks,
            format!("analytics-svc.consumer.{source}"),
            consumer_config,
            sink.clone(),
            shutdown.receiver(),
        );
        tracing::info!(source, %addr, "consuming an event log into the rollups");
    }
    // Outbound webhooks read the same logs under their own name and offsets.
    let webhook_sources = sources(&config)
        .into_iter()
        .map(|(source, name, addr)| {
            Ok(ConsumerConfig {
                source: source.into(),
                consumer: webhooks::consumer::CONSUMER.into(),
                channel: channel_of(name, &addr, &tls)?,
                credentials: ServiceCredentials::new(&keys, webhooks::consumer::CONSUMER),
                max_batch: 200,
                max_backoff: Duration::from_secs(10),
                parking: parking.offsets_in(crate::store::webhooks::OFFSETS_TABLE),
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let webhook_targets = webhooks::start(
        store.clone(),
        &config.webhooks,
        webhook_sources,
        shutdown.receiver(),
        &tasks,
        &pii,
    )?;
    let audit_log = referral_common::audit::AuditLogService::new(store.clone(), "analytics-svc");
    let parked = referral_common::parked::ParkedWorkService::new(parking, "analytics-svc");
    let privacy = referral_common::privacy::PrivacyServer::new("analytics-svc", person_records);
    let api = AnalyticsApi::new(store, runtime, live, pii).with_webhooks(webhook_targets);

    grpc.add(AnalyticsServiceServer::new(api))
        .add(audit_log.into_server())
        .add(parked.into_server())
        .add(privacy.into_server());
    grpc.serve(listener, &tls, config.supervision.task_down_threshold, shutdown)
        .await
}

/// What `rebuild` did, per log.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub logs: Vec<(&'static str, Replayed)>,
}

/// Empties every rollup and replays every configured log from offset 0 (`analytics-svc
/// rebuild`, `app::rebuild`).
pub async fn rebuild(config: &AnalyticsConfig) -> anyhow::Result<RebuildReport> {
    let runtime = config.runtime()?;
    match backend_of("ANALYTICS_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema).await?;
            rebuild_with(config, &runtime, store).await
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url).await?;
            rebuild_with(config, &runtime, store).await
        }
    }
}

async fn rebuild_with<S: Store>(
    config: &AnalyticsConfig,
    runtime: &RuntimeConfig,
    store: S,
) -> anyhow::Result<RebuildReport> {
    let keys = ServiceKeys::new(&config.service_jwt_secret);
    let tls = config.grpc_tls.load()?;
    let sources = sources(config);
    anyhow::ensure!(
        !sources.is_empty(),
        "nothing to rebuild from: set INVITE_ADDR, FRAUD_ADDR and INCENTIVE_ADDR"
    );
    app::rebuild::reset(&store).await?;
    let replays = sources.into_iter().map(|(source, name, addr)| {
        let (store, keys, tls) = (store.clone(), keys.clone(), tls.clone());
        async move {
            let channel = channel_of(name, &addr, &tls)?;
            let credentials = ServiceCredentials::new(&keys, consumers::CONSUMER);
            let done = rebuild::replay(&store, &runtime.currency, source, channel, credentials).await?;
            tracing::info!(source, ?done, "replayed");
            anyhow::Ok((source, done))
        }
    });
    let logs = futures::future::try_join_all(replays).await?;
    Ok(RebuildReport { logs })
}
