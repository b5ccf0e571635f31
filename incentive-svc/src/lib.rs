//! incentive-svc: reward programs as data, campaigns, an append-only ledger, payouts.
//!
//! `serve(config, listener, shutdown)` runs the service on an already bound listener until
//! shutdown: health (readiness SERVING once migrations ran and the default programs exist),
//! reflection, `IncentiveService` and its own `EventLog` (RewardGranted / Eligible / Voided /
//! Expired, PayoutPaid) behind the auth interceptor; the consumers of invite-svc's and
//! fraud-svc's logs when their addresses are set; and the scheduler that moves rewards past
//! their hold to ELIGIBLE and unclaimed ones past their expiry to EXPIRED.

//! Rooms: `adapters/` (gRPC, the event consumers, the scheduler) only translate and call one
//! `app/` function per use case; `app/` orchestrates `domain/` (pure rules) and `store/`
//! (one `Store` trait, Postgres and SQLite); `store::convert` maps stored rows to proto messages
//! and `store::events` builds this service's outgoing events from them.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;

use std::time::Duration;

use referral_common::{
    auth::{AuthInterceptor, ServiceCredentials, ServiceKeys, Verifier},
    config::{Backend, ConfigError, backend_of},
    consumer::{self, ConsumerConfig},
    idempotency::Idempotency,
    outbox::{EventLogService, EventLogStore},
    server::{self, Shutdown},
    service::GrpcServer,
    supervisor::until_shutdown,
};
use referral_proto::incentive::v1::incentive_service_server::IncentiveServiceServer;
use tokio::net::TcpListener;

pub use config::IncentiveConfig;

use crate::{
    adapters::{
        consumers::{self, LedgerSink},
        grpc::IncentiveApi,
        scheduler,
    },
    store::{PgStore, SqliteStore, Store},
};

/// The start-up check the mesh and the binary run before serving.
pub fn check(config: &IncentiveConfig) -> Result<(), ConfigError> {
    config.check().map(|_| ())
}

/// Runs incentive-svc on `listener` until `shutdown`, draining in-flight calls.
pub async fn serve(config: IncentiveConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    config.check()?;
    match backend_of("INCENTIVE_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema).await?;
            let log = store.pool().clone();
            serve_with(config, store, log, listener, shutdown).await
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url).await?;
            let log = store.pool().clone();
            serve_with(config, store, log, listener, shutdown).await
        }
    }
}

// How the `incentive-svc` binary starts (see `referral_common::service`).
referral_common::service_config! {
    IncentiveConfig {
        name: "incentive-svc",
        about: "referral-mesh incentive-svc: reward programs, campaigns, the ledger, payouts",
        settings: "INCENTIVE",
        check: check,
    }
}

/// Runs the migrations only (the k8s migration Job).
pub async fn migrate(config: &IncentiveConfig) -> anyhow::Result<()> {
    match backend_of("INCENTIVE_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            PgStore::connect(&config.database_url, &config.db_schema)
                .await?
                .migrate()
                .await
        }
        Backend::Sqlite => SqliteStore::connect(&config.database_url).await?.migrate().await,
    }
}

/// The programs that exist on first start (docs/api.md's supplier and couple defaults).
pub use app::seed_programs::seed;

/// Serves an already migrated store (tests build their own).
pub async fn serve_with<
    S: Store,
    L: EventLogStore
        + referral_common::audit::AuditStore
        + Into<referral_common::parked::ParkedDb>
        + Into<referral_common::retention::RetentionDb>,
>(
    config: IncentiveConfig,
    store: S,
    log: L,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let tick = config.check()?;
    seed(&store).await?;
    let keys = ServiceKeys::new(&config.service_jwt_secret);
    let tls = config.grpc_tls.load()?;
    // Stored answers are sealed, in Redis or in our own database.
    let pii = config.pii.keys()?;
    let idempotency = match &config.redis_url {
        Some(url) => {
            let client = referral_common::redis_client::client(url, config.redis_ca_file.as_deref())?;
            Idempotency::redis(
                redis::aio::ConnectionManager::new(client).await?,
                "incentive",
                pii,
            )
        }
        None => Idempotency::database(log.clone(), "incentive", pii),
    };
    // The ledger is money and kept; what incentive-svc bounds is what every service shares.
    let retention = referral_common::retention::RetentionJob::new(
        "incentive-svc",
        log.clone(),
        &config.retention,
        Vec::new(),
    );
    let interceptor = AuthInterceptor::new(Verifier::new(
        config.web_tokens.validate()?.keys().await?,
        keys.clone(),
    ));
    let api = IncentiveApi::new(store.clone(), idempotency);
    let audit_log = referral_common::audit::AuditLogService::new(log.clone(), "incentive-svc");
    let parking = referral_common::parked::Parking::new(log.clone(), &config.supervision);
    let parked = referral_common::parked::ParkedWorkService::new(parking.clone(), "incentive-svc");
    let events = EventLogService::new(log, store.outbox(), Duration::from_secs(5), shutdown.clone());
    // Privacy requests (issue #16): this service's part, served and followed.
    let person_records: std::sync::Arc<dyn referral_common::privacy::PersonData> = std::sync::Arc::new(
        app::privacy::PersonRecords::new(store.clone(), config.pii.keys()?),
    );

    let mut grpc = GrpcServer::new(
        "incentive-svc",
        interceptor,
        config.health_listen.as_deref(),
        &shutdown,
    )
    .await?;
    grpc.add(IncentiveServiceServer::new(api))
        .add(audit_log.into_server())
        .add(parked.into_server())
        .add(events.into_server())
        .add(
            referral_common::privacy::PrivacyServer::new("incentive-svc", person_records.clone())
                .into_server(),
        )
        .watch(store.outbox().supervisor().clone());
    let tasks = grpc.tasks();
    retention.supervise(tasks, shutdown.clone());
    let sources = [
        (consumers::INVITE_SOURCE, "INVITE_ADDR", &config.invite_addr),
        (consumers::FRAUD_SOURCE, "FRAUD_ADDR", &config.fraud_addr),
    ];
    for (source, setting, addr) in sources {
        let Some(addr) = addr else { continue };
        let consumer_config = ConsumerConfig {
            source: source.into(),
            consumer: consumers::CONSUMER.into(),
            channel: server::channel(addr, &tls).map_err(|e| ConfigError::new(setting, e.to_string()))?,
            credentials: ServiceCredentials::new(&keys, consumers::CONSUMER),
            max_batch: 200,
            max_backoff: Duration::from_secs(5),
            parking: parking.clone(),
        };
        consumer::supervise(
            tasks,
            format!("incentive-svc.consumer.{source}"),
            consumer_config,
            LedgerSink::new(store.clone()),
            shutdown.receiver(),
        );
        tracing::info!(source, %addr, "consuming event log");
    }
    if let Some(addr) = &config.invite_addr {
        referral_common::privacy::follow_requests(
            tasks,
            referral_common::privacy::Follower {
                service: "incentive-svc",
                data: person_records.clone(),
                db: parking.db().clone(),
                invite: server::channel(addr, &tls)
                    .map_err(|e| ConfigError::new("INVITE_ADDR", e.to_string()))?,
                keys: keys.clone(),
                parking: parking.clone(),
                max_backoff: Duration::from_secs(10),
            },
            shutdown.receiver(),
        );
    }
    let (sched_store, stop) = (store.clone(), shutdown.clone());
    tasks.spawn("incentive-svc.scheduler", move || {
        until_shutdown(scheduler::run(sched_store.clone(), tick, stop.clone()))
    });

    grpc.serve(listener, &tls, config.supervision.task_down_threshold, shutdown)
        .await
}
