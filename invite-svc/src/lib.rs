//! invite-svc: referral codes, invitations, clicks, signups, conversions and attribution.
//!
//! `serve(config, listener, shutdown)` runs the service on an already bound listener until
//! shutdown (zero2prod style, so tests and the mesh bind port 0 and learn the port first).

pub mod api_keys;
pub mod clock;
pub mod consumers;
pub mod convert;
pub mod domain;
pub mod events;
pub mod fraud;
pub mod grpc;
pub mod parked;
pub mod scheduler;
pub mod sender;
pub mod settings;
pub mod store;

use std::{sync::Arc, time::Duration};

use referral_common::{
    auth::{AuthInterceptor, ServiceCredentials, ServiceKeys, Verifier},
    click_id::ClickKeys,
    config::{self, Backend, ConfigError},
    consumer::ConsumerConfig,
    idempotency::Idempotency,
    outbox::{EventLogService, EventLogStore},
    server::{self, Shutdown},
    service::GrpcServer,
    supervisor::until_shutdown,
};
use referral_proto::invite::v1::{
    api_key_service_server::ApiKeyServiceServer, invite_service_server::InviteServiceServer,
};
use tokio::net::TcpListener;

pub use clock::Clock;
pub use settings::InviteConfig;

use crate::{
    domain::{
        delivery::RetryPolicy,
        quota::{QuotaConfig, QuotaLimits},
        templates::{self, Catalog},
        timing,
        webhooks::{self, WebhookSecrets},
    },
    fraud::FraudGate,
    grpc::{InviteApi, Settings},
    scheduler::{Scheduler, SchedulerSettings},
    sender::{DevMailbox, EmailSender, NoSmsProvider, Senders, SmsSender, SmtpSender, SmtpSettings},
    store::{PgStore, SqliteStore, Store},
};

/// The longest attribution window accepted (ten years).
pub const MAX_ATTRIBUTION_WINDOW_DAYS: i64 = 3_650;

/// Checks every setting up front so a bad one stops start-up with one line naming it.
pub fn settings_from(config: &InviteConfig) -> Result<Settings, ConfigError> {
    config.web_tokens.validate()?;
    config::check_service_jwt_secret(&config.web_tokens.jwt_secret, &config.service_jwt_secret)?;
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
    let click_keys = ClickKeys::parse("CLICK_SIGNING_KEYS", &config.click_signing_keys)?;
    // Bounded above so that window arithmetic on any instant stays in chrono's range (a
    // window of 10^8 days would panic every signup).
    if !(1..=MAX_ATTRIBUTION_WINDOW_DAYS).contains(&config.attribution_window_days) {
        return Err(ConfigError::new(
            "ATTRIBUTION_WINDOW_DAYS",
            format!("must be 1-{MAX_ATTRIBUTION_WINDOW_DAYS} days"),
        ));
    }
    for (name, url) in [
        ("PUBLIC_URL", &config.public_url),
        ("DEFAULT_LANDING_URL", &config.default_landing_url),
    ] {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new(name, "must be an http(s) URL"));
        }
    }
    let preferred_slot = timing::parse_preferred_slot(&config.preferred_send_slot)
        .map_err(|e| ConfigError::new("PREFERRED_SEND_SLOT", e))?;
    let landing_hosts =
        referral_common::landing::LandingHosts::parse(&config.landing_hosts, &config.default_landing_url)
            .map_err(|e| ConfigError::new("LANDING_HOSTS", e))?;
    if config.max_amount_minor < 1 {
        return Err(ConfigError::new("MAX_AMOUNT_MINOR", "must be at least 1"));
    }
    // Keeps every derived instant (send slots, expiries) far inside the storable years.
    let send_at_horizon = chrono::TimeDelta::from_std(config.send_at_horizon)
        .ok()
        .filter(|h| *h > chrono::TimeDelta::zero() && *h <= chrono::TimeDelta::days(3_660))
        .ok_or_else(|| ConfigError::new("SEND_AT_HORIZON", "must be between 1s and 3660d"))?;
    Ok(Settings {
        landing_hosts,
        max_amount_minor: config.max_amount_minor,
        send_at_horizon,
        public_url: config.public_url.trim_end_matches('/').to_string(),
        default_landing_url: config.default_landing_url.clone(),
        quotas,
        send_rules: Default::default(),
        attribution_window_days: config.attribution_window_days,
        click_keys,
        default_timezone,
        preferred_slot,
        catalog: Arc::new(catalog_from(config)?),
        webhooks: webhook_secrets_from(config)?,
        clock: config.clock.clone(),
    })
}

/// The template catalog: the built-in one, or `TEMPLATES_FILE`'s, checked whole.
fn catalog_from(config: &InviteConfig) -> Result<Catalog, ConfigError> {
    let text = match &config.templates_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("TEMPLATES_FILE", format!("{}: {e}", path.display())))?,
        None => templates::DEFAULT_CATALOG.to_string(),
    };
    Catalog::parse(&text).map_err(|e| ConfigError::new("TEMPLATES_FILE", e.to_string()))
}

/// Provider webhook secrets; an empty setting leaves that provider unconfigured (404).
fn webhook_secrets_from(config: &InviteConfig) -> Result<WebhookSecrets, ConfigError> {
    fn parse<T>(
        name: &'static str,
        value: &referral_common::config::Secret,
        parse: impl Fn(&str) -> Result<T, webhooks::SecretError>,
    ) -> Result<Option<T>, ConfigError> {
        let v = value.expose().trim();
        if v.is_empty() {
            return Ok(None);
        }
        parse(v)
            .map(Some)
            .map_err(|e| ConfigError::new(name, e.to_string()))
    }
    Ok(WebhookSecrets {
        resend: parse(
            "RESEND_WEBHOOK_SECRET",
            &config.resend_webhook_secret,
            webhooks::parse_resend_secret,
        )?,
        sendgrid: parse(
            "SENDGRID_WEBHOOK_PUBLIC_KEY",
            &config.sendgrid_webhook_public_key,
            webhooks::parse_sendgrid_key,
        )?,
        mailgun: parse(
            "MAILGUN_WEBHOOK_SIGNING_KEY",
            &config.mailgun_webhook_signing_key,
            |k| Ok(k.as_bytes().to_vec()),
        )?,
        postmark: parse(
            "POSTMARK_WEBHOOK_CREDENTIALS",
            &config.postmark_webhook_credentials,
            webhooks::parse_postmark_credentials,
        )?,
    })
}

/// The senders (SMTP when `SMTP_HOST` is set, else the dev mailbox) and the scheduler's
/// settings.
pub fn delivery_from(config: &InviteConfig) -> Result<(Senders, SchedulerSettings), ConfigError> {
    let from = config.mail_from.parse().map_err(|e| {
        ConfigError::new(
            "MAIL_FROM",
            format!("is not a mailbox like `Name <a@b.example>`: {e}"),
        )
    })?;
    if config.send_max_attempts == 0 {
        return Err(ConfigError::new("SEND_MAX_ATTEMPTS", "must be at least 1"));
    }
    if config.park_after == 0 {
        return Err(ConfigError::new("PARK_AFTER", "must be at least 1"));
    }
    if config.scheduler_tick.is_zero() {
        return Err(ConfigError::new("SCHEDULER_TICK", "must be above 0"));
    }
    let delta = |name: &'static str, d: Duration| {
        chrono::TimeDelta::from_std(d).map_err(|_| ConfigError::new(name, "is too long"))
    };
    let settings = SchedulerSettings {
        tick: config.scheduler_tick,
        lease: delta("SEND_LEASE", config.send_lease)?,
        retry: RetryPolicy {
            base: delta("SEND_RETRY_BASE", config.send_retry_base)?,
            max_delay: chrono::TimeDelta::hours(1),
            max_attempts: config.send_max_attempts,
        },
        public_url: config.public_url.trim_end_matches('/').to_string(),
        park_after: i64::from(config.park_after),
        fault: config.send_fault.clone(),
    };
    // SMS: no provider ships with the service (one plugs in through `SmsSender`). Without
    // SMTP everything is kept in the dev mailbox; with SMTP (production) an SMS cannot go
    // anywhere real, so it is refused rather than reported as sent.
    let (email, sms): (Arc<dyn EmailSender>, Arc<dyn SmsSender>) =
        match config.smtp_host.as_deref().map(str::trim) {
            Some(host) if !host.is_empty() => {
                let smtp = SmtpSender::new(&SmtpSettings {
                    host: host.to_string(),
                    port: config.smtp_port,
                    tls: config.smtp_tls.clone(),
                    username: config.smtp_username.clone(),
                    password: config.smtp_password.expose().to_string(),
                    timeout: Duration::from_secs(30),
                })
                .map_err(|e| ConfigError::new("SMTP_HOST", e))?;
                (Arc::new(smtp), Arc::new(NoSmsProvider))
            }
            _ => {
                let mailbox = DevMailbox::new(&config.dev_mailbox_dir).map_err(|e| {
                    ConfigError::new(
                        "DEV_MAILBOX_DIR",
                        format!("{}: {e}", config.dev_mailbox_dir.display()),
                    )
                })?;
                (Arc::new(mailbox.clone()), Arc::new(mailbox))
            }
        };
    Ok((Senders { email, sms, from }, settings))
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
    delivery_from(&config)?;
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

// How the `invite-svc` binary starts (see `referral_common::service`).
referral_common::service_config! {
    InviteConfig {
        name: "invite-svc",
        about: "referral-mesh invite-svc: codes, invitations, attribution",
        settings: "INVITE",
        check: |config| settings_from(config).map(drop),
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

async fn serve_with<
    S: Store,
    L: EventLogStore + referral_common::audit::AuditStore + Into<referral_common::parked::ParkedDb>,
>(
    config: InviteConfig,
    settings: Settings,
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
    let idempotency = match &config.redis_url {
        Some(url) => {
            let client = referral_common::redis_client::client(url, config.redis_ca_file.as_deref())?;
            Idempotency::redis(redis::aio::ConnectionManager::new(client).await?, "invite")
        }
        None => Idempotency::in_memory("invite"),
    };
    let interceptor = AuthInterceptor::new(Verifier::new(
        config.web_tokens.validate()?.keys().await?,
        keys.clone(),
    ));
    let (senders, scheduler_settings) = delivery_from(&config)?;
    let scheduler = Scheduler::new(
        store.clone(),
        senders,
        settings.catalog.clone(),
        config.clock.clone(),
        scheduler_settings,
    );
    let api = InviteApi::new(store.clone(), settings, fraud, idempotency);
    let api_keys = api_keys::ApiKeysApi::new(store.clone());
    let audit_log = referral_common::audit::AuditLogService::new(log.clone(), "invite-svc");
    let parking = referral_common::parked::Parking::new(log.clone(), &config.supervision);
    let parked = referral_common::parked::ParkedWorkService::new(parking.clone(), "invite-svc")
        .with_sends(parked::Sends(store.clone()));
    let events = EventLogService::new(log, store.outbox(), Duration::from_secs(5), shutdown.clone());

    check_provider_event_retention(config.provider_event_retention)?;
    let mut grpc = GrpcServer::new(
        "invite-svc",
        interceptor,
        config.health_listen.as_deref(),
        &shutdown,
    )
    .await?;
    grpc.add(InviteServiceServer::new(api))
        .add(ApiKeyServiceServer::new(api_keys))
        .add(audit_log.into_server())
        .add(parked.into_server())
        .add(events.into_server())
        .watch(store.outbox().supervisor().clone());
    let tasks = grpc.tasks();
    let (sweep_store, retention, stop) = (store.clone(), config.provider_event_retention, shutdown.clone());
    tasks.spawn("invite-svc.sweeper", move || {
        until_shutdown(sweeper(sweep_store.clone(), retention, stop.clone()))
    });
    let stop = shutdown.clone();
    tasks.spawn("invite-svc.scheduler", move || {
        until_shutdown(scheduler.clone().run(stop.clone()))
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

/// The shortest PROVIDER_EVENT_RETENTION: well past the 5 minutes a signed event's timestamp
/// may be off.
const MIN_PROVIDER_EVENT_RETENTION: Duration = Duration::from_secs(3600);
fn check_provider_event_retention(retention: Duration) -> Result<(), ConfigError> {
    if retention < MIN_PROVIDER_EVENT_RETENTION {
        return Err(ConfigError::new(
            "PROVIDER_EVENT_RETENTION",
            "must be at least 1h: a provider's replays are refused for that long at least",
        ));
    }
    Ok(())
}

/// Provider event ids forgotten per statement of a sweep.
const FORGET_BATCH: i64 = 1000;

/// Once a minute: closes invitations whose attribution window has passed, and forgets
/// provider event ids older than `retention` (in bounded batches until none are left).
async fn sweeper<S: Store>(store: S, retention: Duration, shutdown: Shutdown) {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    loop {
        let now = referral_common::ids::now();
        match store.expire_due(now, 500).await {
            Ok(n) if n > 0 => tracing::info!(expired = n, "invitations expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
        }
        if let Some(before) = now.checked_sub_signed(retention) {
            let mut forgotten = 0;
            loop {
                match store.forget_provider_events(before, FORGET_BATCH).await {
                    Ok(n) => {
                        forgotten += n;
                        if n < FORGET_BATCH as u64 || shutdown.is_triggered() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "provider event retention sweep failed");
                        break;
                    }
                }
            }
            if forgotten > 0 {
                tracing::info!(forgotten, "provider event ids past retention forgotten");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: InviteConfig,
    }

    #[test]
    fn provider_event_retention_defaults_to_30_days_and_refuses_less_than_an_hour() {
        let c = config(&[]);
        assert_eq!(c.provider_event_retention, Duration::from_secs(30 * 86_400));
        assert!(check_provider_event_retention(c.provider_event_retention).is_ok());
        let e = check_provider_event_retention(Duration::from_secs(300)).unwrap_err();
        assert!(e.to_string().contains("PROVIDER_EVENT_RETENTION"), "{e}");
    }

    fn config(args: &[&str]) -> InviteConfig {
        let base = [
            "invite-svc",
            "--jwt-secret",
            "a-test-secret-of-at-least-32-characters",
            "--service-jwt-secret",
            "service-secret-for-tests-0123456789abcdef",
            "--click-signing-keys",
            "k1:a-click-key-of-at-least-32-characters",
        ];
        Cli::try_parse_from(base.iter().chain(args))
            .expect("flags parse")
            .config
    }

    fn failing_setting(args: &[&str]) -> String {
        match settings_from(&config(args)) {
            Ok(_) => panic!("{args:?} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn input_limits_default_to_the_contract() {
        let s = settings_from(&config(&[])).unwrap();
        assert_eq!(s.max_amount_minor, 100_000_000_000);
        assert_eq!(s.send_at_horizon, chrono::TimeDelta::days(730));
        let landing = |u: &str| s.landing_hosts.allows(&url::Url::parse(u).unwrap());
        assert!(landing("https://example.com/spring") && !landing("https://evil.com/"));
        let s = settings_from(&config(&["--landing-hosts", "*.weddings.test"])).unwrap();
        assert!(
            s.landing_hosts
                .allows(&url::Url::parse("https://a.weddings.test/").unwrap())
        );
    }

    #[test]
    fn the_attribution_window_is_bounded() {
        assert_eq!(settings_from(&config(&[])).unwrap().attribution_window_days, 30);
        assert!(settings_from(&config(&["--attribution-window-days", "3650"])).is_ok());
        for bad in ["0", "-1", "3651", "100000000"] {
            let e = failing_setting(&[&format!("--attribution-window-days={bad}")]);
            assert!(e.contains("ATTRIBUTION_WINDOW_DAYS"), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_webhook_secrets_leave_providers_unconfigured() {
        let settings = settings_from(&config(&[
            "--resend-webhook-secret",
            "",
            "--mailgun-webhook-signing-key",
            " ",
        ]))
        .unwrap();
        let w = &settings.webhooks;
        assert!(w.resend.is_none() && w.sendgrid.is_none() && w.mailgun.is_none() && w.postmark.is_none());
    }

    #[test]
    fn unusable_settings_name_themselves() {
        for (args, name) in [
            (
                &["--resend-webhook-secret", "whsec_"][..],
                "RESEND_WEBHOOK_SECRET",
            ),
            (
                &["--sendgrid-webhook-public-key", "bm90IGEga2V5"][..],
                "SENDGRID_WEBHOOK_PUBLIC_KEY",
            ),
            (
                &["--postmark-webhook-credentials", "user-only"][..],
                "POSTMARK_WEBHOOK_CREDENTIALS",
            ),
            (&["--preferred-send-slot", "Tue 14:30"][..], "PREFERRED_SEND_SLOT"),
            (
                &["--templates-file", "/no/such/templates.json"][..],
                "TEMPLATES_FILE",
            ),
            (&["--landing-hosts", "https://evil.com"][..], "LANDING_HOSTS"),
            (&["--max-amount-minor", "0"][..], "MAX_AMOUNT_MINOR"),
            (&["--send-at-horizon", "4000d"][..], "SEND_AT_HORIZON"),
        ] {
            let message = failing_setting(args);
            assert!(message.contains(name), "{args:?}: {message}");
            assert!(!message.contains("user-only"), "secrets never print: {message}");
        }
    }

    #[test]
    fn delivery_settings_are_checked() {
        let refused = |args: &[&str]| match delivery_from(&config(args)) {
            Ok(_) => panic!("{args:?} should be refused"),
            Err(e) => e.to_string(),
        };
        assert!(refused(&["--mail-from", "not a mailbox"]).contains("MAIL_FROM"));
        assert!(refused(&["--send-max-attempts", "0"]).contains("SEND_MAX_ATTEMPTS"));
        let dir = std::env::temp_dir().join(format!("mailbox-cfg-{}", uuid::Uuid::now_v7()));
        let dir_arg = dir.display().to_string();
        let (senders, settings) = delivery_from(&config(&["--dev-mailbox-dir", &dir_arg])).unwrap();
        assert!(dir.is_dir(), "the dev mailbox is created at start-up");
        assert_eq!(settings.lease, chrono::TimeDelta::minutes(2));
        assert_eq!(
            senders.from.email.to_string(),
            "invitations@referral-mesh.localhost"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
