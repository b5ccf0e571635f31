//! invite-svc: referral codes, invitations, clicks, signups, conversions and attribution.
//!
//! `serve(config, listener, shutdown)` runs the service on an already bound listener until
//! shutdown (zero2prod style, so tests and the mesh bind port 0 and learn the port first).
//!
//! The rooms: `adapters/` (gRPC services, fraud-svc's log, the sending and sweeping loops,
//! the mail senders and the fraud client) only translate; `app/` holds one module per use
//! case, the one place that orchestrates `domain/` rules (pure), `store/` calls and outgoing
//! calls; `config` checks the configuration once at start-up.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;

use std::time::Duration;

use referral_common::{
    auth::{AuthInterceptor, ServiceCredentials, ServiceKeys, Verifier},
    config::{self as common_config, Backend, ConfigError},
    consumer::ConsumerConfig,
    idempotency::Idempotency,
    outbox::{EventLogService, EventLogStore},
    privacy::PrivacyServer,
    server::{self, Shutdown},
    service::GrpcServer,
    supervisor::until_shutdown,
};
use referral_proto::invite::v1::{
    api_key_service_server::ApiKeyServiceServer, consent_service_server::ConsentServiceServer,
    invite_service_server::InviteServiceServer,
};
use tokio::net::TcpListener;

pub use app::clock::Clock;
/// `main.rs` checks the configuration under this name before it binds.
pub use config::runtime_config as settings_from;
pub use config::{InviteConfig, MAX_ATTRIBUTION_WINDOW_DAYS, RuntimeConfig, delivery_from};

/// The sending loop's types, where the mesh and the tests have always found them.
pub mod scheduler {
    pub use crate::app::deliver_due_invitations::{Scheduler, SchedulerSettings, SendFault};
}

use crate::{
    adapters::{
        consumers,
        fraud::FraudGate,
        grpc::{self, InviteApi, api_keys::ApiKeysApi, consent::ConsentApi, parked},
        privacy_parts, scheduler as send_loop, sweeper,
    },
    app::deliver_due_invitations::Scheduler,
    config::{check_privacy_export_retention, check_provider_event_retention},
    store::{PgStore, SqliteStore, Store},
};

/// Runs invite-svc on `listener` until `shutdown`, draining in-flight calls.
pub async fn serve(config: InviteConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let runtime = config::runtime_config(&config)?;
    delivery_from(&config)?;
    let pii = config.pii.keys()?;
    match common_config::backend_of("INVITE_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema, pii)
                .await?
                .with_attribution_window(config.attribution_window_days);
            store.migrate().await?;
            let log = store.pool().clone();
            serve_with(config, runtime, store, log, listener, shutdown).await
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url, pii)
                .await?
                .with_attribution_window(config.attribution_window_days);
            store.migrate().await?;
            let log = store.pool().clone();
            serve_with(config, runtime, store, log, listener, shutdown).await
        }
    }
}

// How the `invite-svc` binary starts (see `referral_common::service`).
referral_common::service_config! {
    InviteConfig {
        name: "invite-svc",
        about: "referral-mesh invite-svc: codes, invitations, attribution",
        settings: "INVITE",
        check: |config| settings_from(config).map(drop),
        reencrypt: reencrypt,
    }
}

/// Runs the migrations only (the k8s migration Job).
pub async fn migrate(config: &InviteConfig) -> anyhow::Result<()> {
    let pii = config.pii.keys()?;
    match common_config::backend_of("INVITE_DATABASE_URL", &config.database_url)? {
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

/// Rows `reencrypt` reads and rewrites per transaction.
const REENCRYPT_BATCH: i64 = 500;

/// `reencrypt`: seals every row of personal data under PII_KEYS' first key (rows from before
/// encryption, and rows under an older key after a rotation) and replaces stored normalised
/// addresses by their keyed hashes. Idempotent and resumable; safe while the service runs.
pub async fn reencrypt(config: &InviteConfig) -> anyhow::Result<referral_common::pii::ReencryptReport> {
    let pii = config.pii.keys()?;
    let tables = match common_config::backend_of("INVITE_DATABASE_URL", &config.database_url)? {
        Backend::Postgres => {
            let store = PgStore::connect(&config.database_url, &config.db_schema, pii).await?;
            let out = store.reencrypt(REENCRYPT_BATCH).await;
            store.pool().close().await;
            out?
        }
        Backend::Sqlite => {
            let store = SqliteStore::connect(&config.database_url, pii).await?;
            let out = store.reencrypt(REENCRYPT_BATCH).await;
            store.pool().close().await;
            out?
        }
    };
    Ok(referral_common::pii::ReencryptReport {
        service: "invite-svc",
        tables: tables
            .into_iter()
            .map(|(table, n)| referral_common::pii::TableResealed {
                table,
                examined: n.examined,
                changed: n.changed,
            })
            .collect(),
    })
}

async fn serve_with<
    S: Store,
    L: EventLogStore
        + referral_common::audit::AuditStore
        + Into<referral_common::parked::ParkedDb>
        + Into<referral_common::retention::RetentionDb>,
>(
    config: InviteConfig,
    runtime: RuntimeConfig,
    store: S,
    log: L,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let keys = ServiceKeys::new(&config.service_jwt_secret);
    let tls = config.grpc_tls.load()?;
    let fraud = match &config.fraud_addr {
        Some(addr) => FraudGate::connect(
            addr,
            &tls,
            ServiceCredentials::new(&keys, "invite-svc"),
            config.fraud_deadline,
        )?,
        None => FraudGate::Off,
    };
    // Stored answers hold recipients' emails: sealed, in Redis or in our own database.
    let pii = config.pii.keys()?;
    let idempotency = match &config.redis_url {
        Some(url) => {
            let client = referral_common::redis_client::client(url, config.redis_ca_file.as_deref())?;
            Idempotency::redis(redis::aio::ConnectionManager::new(client).await?, "invite", pii)
        }
        None => Idempotency::database(log.clone(), "invite", pii),
    };
    let retention = referral_common::retention::RetentionJob::new(
        "invite-svc",
        log.clone(),
        &config.retention,
        store::retention::rules(&config.retention),
    );
    let interceptor = AuthInterceptor::new(Verifier::new(
        config.web_tokens.validate()?.keys().await?,
        keys.clone(),
    ));
    let (senders, scheduler_settings) = delivery_from(&config)?;
    let scheduler = Scheduler::new(
        store.clone(),
        senders,
        runtime.catalog.clone(),
        config.clock.clone(),
        scheduler_settings,
    );
    let consent = ConsentApi::new(store.clone(), runtime.consent.clone());
    let api = InviteApi::new(store.clone(), runtime, fraud, idempotency);
    let api_keys = ApiKeysApi::new(store.clone());
    let audit_log = referral_common::audit::AuditLogService::new(log.clone(), "invite-svc");
    let parking = referral_common::parked::Parking::new(log.clone(), &config.supervision);
    let parked = referral_common::parked::ParkedWorkService::new(parking.clone(), "invite-svc")
        .with_sends(parked::Sends(store.clone()));
    let events = EventLogService::new(log, store.outbox(), Duration::from_secs(5), shutdown.clone());
    // Privacy requests (issue #16): the book, invite-svc's own part, and PrivacyService.
    let pii = config.pii.keys()?;
    let mailbox = config
        .smtp_host
        .as_deref()
        .is_none_or(|h| h.trim().is_empty())
        .then(|| config.dev_mailbox_dir.clone());
    let person_records = std::sync::Arc::new(
        app::privacy::PersonRecords::new(store.clone(), pii.clone()).with_mailbox(mailbox),
    );
    let privacy_book =
        app::privacy_requests::PrivacyBook::new(store.clone(), pii, config.privacy_export_retention);

    check_provider_event_retention(config.provider_event_retention)?;
    check_privacy_export_retention(config.privacy_export_retention)?;
    let mut grpc = GrpcServer::new(
        "invite-svc",
        interceptor,
        config.health_listen.as_deref(),
        &shutdown,
    )
    .await?;
    grpc.add(InviteServiceServer::new(api))
        .add(ApiKeyServiceServer::new(api_keys))
        .add(ConsentServiceServer::new(consent))
        .add(audit_log.into_server())
        .add(parked.into_server())
        .add(events.into_server())
        .add(grpc::privacy::PrivacyRequestsApi::new(privacy_book.clone()).into_server())
        .add(PrivacyServer::new("invite-svc", person_records.clone()).into_server())
        .watch(store.outbox().supervisor().clone());
    let tasks = grpc.tasks();
    retention.supervise(tasks, shutdown.clone());
    let stop = shutdown.clone();
    tasks.spawn("invite-svc.privacy", move || {
        until_shutdown(privacy_parts::run(
            privacy_book.clone(),
            person_records.clone(),
            stop.clone(),
        ))
    });
    let (sweep_store, retention, stop) = (store.clone(), config.provider_event_retention, shutdown.clone());
    tasks.spawn("invite-svc.sweeper", move || {
        until_shutdown(sweeper::run(sweep_store.clone(), retention, stop.clone()))
    });
    let stop = shutdown.clone();
    tasks.spawn("invite-svc.scheduler", move || {
        until_shutdown(send_loop::run(scheduler.clone(), stop.clone()))
    });
    if let Some(addr) = &config.fraud_addr {
        // Decisions made after the fact (fraud-svc was away, or a reviewer resolved a case).
        let consumer = ConsumerConfig {
            source: "fraud".into(),
            consumer: "invite-svc".into(),
            channel: server::channel(addr, &tls)
                .map_err(|e| ConfigError::new("FRAUD_ADDR", e.to_string()))?,
            credentials: ServiceCredentials::new(&keys, "invite-svc"),
            max_batch: 200,
            max_backoff: Duration::from_secs(5),
            parking,
        };
        referral_common::consumer::supervise(
            tasks,
            "invite-svc.consumer.fraud",
            consumer,
            consumers::FraudSink::new(store.clone()),
            shutdown.receiver(),
        );
    }
    grpc.serve(listener, &tls, config.supervision.task_down_threshold, shutdown)
        .await
}
