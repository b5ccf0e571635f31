//! fraud-svc: explainable risk scores, hard rules, review cases and fraud rings.
//!
//! `serve(config, listener, shutdown)` runs the service on an already bound listener until
//! shutdown (zero2prod style, so tests and the mesh bind port 0 and learn the port first):
//! health (readiness SERVING once migrations ran), reflection, `FraudService` and its own
//! `EventLog` (FraudAssessed / FraudResolved) behind the auth interceptor, its part of privacy
//! requests (`referral.common.v1.PrivacyService`: erase and export a person), and — when
//! `--invite-addr` is set — the consumer of invite-svc's event log.
//!
//! No personal data is stored in plaintext: stores get the `PiiKeys` of `PII_KEYS` /
//! `PII_LOOKUP_KEY` at construction; [`reencrypt`] converts rows written before that.
//!
//! Rooms: `adapters/` (gRPC, the event consumer) only translate; `app/` holds one module per
//! use case; `domain/` is pure; `store/` is the one `Store` trait with its Postgres and SQLite
//! implementations; `config.rs` the configuration.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;

use std::time::Duration;

use referral_common::{
    auth::{AuthInterceptor, ServiceCredentials, ServiceKeys, Verifier},
    config::{self as common_config, Backend, ConfigError},
    consumer::{self, ConsumerConfig},
    outbox::{EventLogService, EventLogStore},
    privacy::PrivacyServer,
    server::{self, Shutdown},
    service::GrpcServer,
};
use referral_proto::fraud::v1::fraud_service_server::FraudServiceServer;
use tokio::net::TcpListener;

pub use config::FraudConfig;

use crate::{
    adapters::{
        consumers::{self, InviteEvents},
        grpc::FraudApi,
    },
    app::privacy::PersonRecords,
    domain::Scoring,
    store::{PgStore, SqliteStore, Store},
};

/// Checks every setting up front so a bad one stops start-up with one line naming it; the
/// decision's configuration.
pub fn scoring_from(config: &FraudConfig) -> Result<Scoring, ConfigError> {
    config.web_tokens.validate()?;
    config.pii.keys()?;
    common_config::check_service_jwt_secret(&config.web_tokens.jwt_secret, &config.service_jwt_secret)?;
    common_config::backend_of("FRAUD_DATABASE_URL", &config.database_url)?;
    if let Some(addr) = &config.invite_addr
        && addr.trim().is_empty()
    {
        return Err(ConfigError::new(
            "INVITE_ADDR",
            "must be HOST:PORT or a URL when set",
        ));
    }
    config.scoring()
}

/// The start-up check the mesh and the binary run before serving.
pub fn check(config: &FraudConfig) -> Result<(), ConfigError> {
    scoring_from(config).map(|_| ())
}

/// Runs fraud-svc on `listener` until `shutdown`, draining in-flight calls.
pub async fn serve(config: FraudConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let scoring = scoring_from(&config)?;
    let pii = config.pii.keys()?;
    match common_config::backend_of("FRAUD_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema, pii).await?;
            store.migrate().await?;
            let log = store.pool().clone();
            serve_with(config, scoring, store, log, listener, shutdown).await
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url, pii).await?;
            store.migrate().await?;
            let log = store.pool().clone();
            serve_with(config, scoring, store, log, listener, shutdown).await
        }
    }
}

// How the `fraud-svc` binary starts (see `referral_common::service`).
referral_common::service_config! {
    FraudConfig {
        name: "fraud-svc",
        about: "referral-mesh fraud-svc: risk scores, hard rules, review cases, fraud rings",
        settings: "FRAUD",
        check: check,
        reencrypt: reencrypt,
    }
}

/// Runs the migrations only (the k8s migration Job).
pub async fn migrate(config: &FraudConfig) -> anyhow::Result<()> {
    let pii = config.pii.keys()?;
    match common_config::backend_of("FRAUD_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            PgStore::connect(&config.database_url, &config.db_schema, pii)
                .await?
                .migrate()
                .await
        }
        Backend::Sqlite => {
            SqliteStore::connect(&config.database_url, pii)
                .await?
                .migrate()
                .await
        }
    }
}

/// Converts rows stored before personal data was hashed and sealed (and similarity pairs
/// sealed under a key other than the first of `PII_KEYS`): idempotent, in batches of one
/// transaction each; the number of rows converted. Run after an upgrade past migration 0080
/// and after putting a new key first in `PII_KEYS`.
pub async fn reencrypt(config: &FraudConfig) -> anyhow::Result<referral_common::pii::ReencryptReport> {
    let pii = config.pii.keys()?;
    let converted = match common_config::backend_of("FRAUD_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema, pii).await?;
            store.migrate().await?;
            app::reencrypt::reencrypt(&store).await?
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url, pii).await?;
            store.migrate().await?;
            app::reencrypt::reencrypt(&store).await?
        }
    };
    Ok(referral_common::pii::ReencryptReport {
        service: "fraud-svc",
        tables: vec![referral_common::pii::TableResealed {
            table: "all",
            examined: converted,
            changed: converted,
        }],
    })
}

/// Serves an already migrated store (tests and benchmarks build their own).
pub async fn serve_with<
    S: Store,
    L: EventLogStore
        + referral_common::audit::AuditStore
        + Into<referral_common::parked::ParkedDb>
        + Into<referral_common::retention::RetentionDb>,
>(
    config: FraudConfig,
    scoring: Scoring,
    store: S,
    log: L,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let keys = ServiceKeys::new(&config.service_jwt_secret);
    let tls = config.grpc_tls.load()?;
    let interceptor = AuthInterceptor::new(Verifier::new(
        config.web_tokens.validate()?.keys().await?,
        keys.clone(),
    ));
    let api = FraudApi::new(store.clone(), scoring.clone());
    let audit_log = referral_common::audit::AuditLogService::new(log.clone(), "fraud-svc");
    let parking = referral_common::parked::Parking::new(log.clone(), &config.supervision);
    let parked = referral_common::parked::ParkedWorkService::new(parking.clone(), "fraud-svc");
    let retention = referral_common::retention::RetentionJob::new(
        "fraud-svc",
        log.clone(),
        &config.retention,
        store::retention::rules(&config.retention),
    );
    let events = EventLogService::new(log, store.outbox(), Duration::from_secs(5), shutdown.clone());
    // Privacy requests (issue #16): this service's part, served and followed.
    let person_records: std::sync::Arc<dyn referral_common::privacy::PersonData> =
        std::sync::Arc::new(PersonRecords::new(store.clone(), store.pii().clone()));

    let mut grpc = GrpcServer::new(
        "fraud-svc",
        interceptor,
        config.health_listen.as_deref(),
        &shutdown,
    )
    .await?;
    grpc.add(FraudServiceServer::new(api))
        .add(audit_log.into_server())
        .add(parked.into_server())
        .add(events.into_server())
        .add(PrivacyServer::new("fraud-svc", person_records.clone()).into_server())
        .watch(store.outbox().supervisor().clone());
    retention.supervise(grpc.tasks(), shutdown.clone());
    if let Some(addr) = &config.invite_addr {
        let channel =
            server::channel(addr, &tls).map_err(|e| ConfigError::new("INVITE_ADDR", e.to_string()))?;
        let consumer_config = ConsumerConfig {
            source: consumers::INVITE_SOURCE.into(),
            consumer: consumers::CONSUMER.into(),
            channel: channel.clone(),
            credentials: ServiceCredentials::new(&keys, consumers::CONSUMER),
            max_batch: 100,
            max_backoff: Duration::from_secs(10),
            parking: parking.clone(),
        };
        let sink = InviteEvents::new(store.clone(), scoring, store.pii().clone());
        consumer::supervise(
            grpc.tasks(),
            "fraud-svc.consumer.invite",
            consumer_config,
            sink,
            shutdown.receiver(),
        );
        referral_common::privacy::follow_requests(
            grpc.tasks(),
            referral_common::privacy::Follower {
                service: "fraud-svc",
                data: person_records.clone(),
                db: parking.db().clone(),
                invite: channel.clone(),
                keys: keys.clone(),
                parking: parking.clone(),
                max_backoff: Duration::from_secs(10),
            },
            shutdown.receiver(),
        );
        tracing::info!(invite = %addr, "consuming invite-svc's event log");
    }

    grpc.serve(listener, &tls, config.supervision.task_down_threshold, shutdown)
        .await
}
