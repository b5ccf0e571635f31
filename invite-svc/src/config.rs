//! invite-svc configuration: `InviteConfig` (flags and environment, defaults that work for
//! the embedded mesh), checked once at start-up into the [`RuntimeConfig`] the use cases
//! read, the senders and the scheduler's settings; a bad setting stops start-up with one
//! line naming it.

use std::{path::PathBuf, sync::Arc, time::Duration};

use referral_common::{
    click_id::ClickKeys,
    config::{self, ConfigError, LogFormat, Secret, parse_duration},
};

use crate::{
    adapters::sender::{
        DevMailbox, EmailSender, NoSmsProvider, Senders, SmsSender, SmtpSender, SmtpSettings, SmtpTls,
    },
    app::{
        clock::Clock,
        deliver_due_invitations::{SchedulerSettings, SendFault},
    },
    domain::{
        delivery::RetryPolicy,
        quota::{QuotaConfig, QuotaLimits},
        templates::{self, Catalog},
        timing::{self, SendRules},
        webhooks::{self, WebhookSecrets},
    },
};

#[derive(Debug, Clone, clap::Args)]
pub struct InviteConfig {
    /// gRPC listen address.
    #[arg(long = "listen", env = "INVITE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// postgres://… or sqlite:…
    #[arg(long, env = "INVITE_DATABASE_URL", default_value = "sqlite:data/invite.db")]
    pub database_url: String,
    /// Postgres schema owned by this service.
    #[arg(long, env = "INVITE_DB_SCHEMA", default_value = "invite")]
    pub db_schema: String,
    /// How web tokens of direct callers are verified: the gateway's settings (JWT_SECRET
    /// and/or a JWKS, and the policy).
    #[command(flatten)]
    pub web_tokens: referral_common::auth::WebTokenArgs,
    /// HS256 secret of service tokens only (at least 32 characters, not JWT_SECRET).
    #[arg(long, env = "SERVICE_JWT_SECRET", hide_env_values = true, default_value = "")]
    pub service_jwt_secret: Secret,
    /// Shared limits and idempotency keys live here when set.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// PEM CA(s) a rediss:// REDIS_URL's certificate must chain to (instead of the web roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// fraud-svc; without it every invitation is approved (the spine runs alone).
    #[arg(long, env = "FRAUD_ADDR")]
    pub fraud_addr: Option<String>,
    /// How long an invitation waits for fraud-svc before it is held for review.
    #[arg(long, env = "FRAUD_DEADLINE", default_value = "300ms", value_parser = parse_duration)]
    pub fraud_deadline: Duration,
    /// Base of the shareable links (`{PUBLIC_URL}/r/{code}`): the gateway's public address.
    #[arg(long, env = "PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// Where /r/{code} sends visitors when a code has no landing URL of its own.
    #[arg(long, env = "DEFAULT_LANDING_URL", default_value = "https://example.com/join")]
    pub default_landing_url: String,
    /// Hosts a `landingUrl` may point at, comma-separated (`*.example.com` for subdomains);
    /// DEFAULT_LANDING_URL's host is always allowed. The gateway re-checks at redirect.
    #[arg(long, env = "LANDING_HOSTS", default_value = "")]
    pub landing_hosts: String,
    /// Largest money amount (minor units) a conversion may report.
    #[arg(long, env = "MAX_AMOUNT_MINOR", default_value_t = referral_common::input::DEFAULT_MAX_AMOUNT_MINOR)]
    pub max_amount_minor: i64,
    /// How far ahead an invitation's `sendAt` may be.
    #[arg(long, env = "SEND_AT_HORIZON", default_value = "730d", value_parser = parse_duration)]
    pub send_at_horizon: Duration,
    /// Keys that verify signed click ids, `kid:secret,...` (the gateway's CLICK_SIGNING_KEYS:
    /// signups reach invite-svc directly too, so it checks the ids itself).
    #[arg(
        long,
        env = "CLICK_SIGNING_KEYS",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub click_signing_keys: Secret,
    /// Days after sending that an invitation's link still attributes (and then expires).
    #[arg(long, env = "ATTRIBUTION_WINDOW_DAYS", default_value_t = 30)]
    pub attribution_window_days: i64,
    // The defaults are the domain's (`domain::quota::FREE_TIER_INVITATIONS_PER_DAY`...).
    /// Quotas per tier as `hourly/daily`.
    #[arg(long, env = "QUOTA_REGULAR", default_value_t = QuotaConfig::default().regular.to_string())]
    pub quota_regular: String,
    #[arg(long, env = "QUOTA_PREMIUM", default_value_t = QuotaConfig::default().premium.to_string())]
    pub quota_premium: String,
    #[arg(long, env = "QUOTA_SUPER_CONNECTOR", default_value_t = QuotaConfig::default().super_connector.to_string())]
    pub quota_super_connector: String,
    /// Unsent invitations a referrer may have queued before creation answers 429.
    #[arg(long, env = "MAX_QUEUED_PER_REFERRER", default_value_t = 1000)]
    pub max_queued: i64,
    /// Recipients' time zone when an invitation names none.
    #[arg(long, env = "DEFAULT_TIMEZONE", default_value = "Europe/London")]
    pub default_timezone: String,
    /// Prometheus /metrics address for the standalone binary.
    #[arg(long, env = "INVITE_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// TLS on every gRPC hop (GRPC_TLS_*; see `referral_common::tls`).
    #[command(flatten)]
    pub grpc_tls: referral_common::tls::GrpcTlsArgs,
    /// A plaintext port serving only gRPC health (kubelet's gRPC probes speak no TLS); for
    /// when GRPC_TLS_* is on.
    #[arg(long, env = "GRPC_HEALTH_LISTEN")]
    pub health_listen: Option<String>,

    // ---- delivery -------------------------------------------------------------------
    /// Where `optimize: true` aims, as the recipient's local `Weekday HH:00`.
    #[arg(long, env = "PREFERRED_SEND_SLOT", default_value = "Tue 14:00")]
    pub preferred_send_slot: String,
    /// How often the scheduler looks for due invitations.
    #[arg(long, env = "SCHEDULER_TICK", default_value = "1s", value_parser = parse_duration)]
    pub scheduler_tick: Duration,
    /// How long a sender holds an invitation it is sending before another may take over.
    #[arg(long, env = "SEND_LEASE", default_value = "2m", value_parser = parse_duration)]
    pub send_lease: Duration,
    /// Wait after a failed send; doubled after each further failure (capped at 1 hour).
    #[arg(long, env = "SEND_RETRY_BASE", default_value = "30s", value_parser = parse_duration)]
    pub send_retry_base: Duration,
    /// Attempts before a message is given up as BOUNCED.
    #[arg(long, env = "SEND_MAX_ATTEMPTS", default_value_t = 8)]
    pub send_max_attempts: u32,
    /// Sends of one invitation that may panic before it is parked (not tried again until
    /// an admin retries it).
    #[arg(long, env = "PARK_AFTER", default_value_t = 5)]
    pub park_after: u32,
    /// The From of every invitation e-mail.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Referral Mesh <invitations@referral-mesh.localhost>"
    )]
    pub mail_from: String,
    /// SMTP server for e-mail; without it messages go to the dev mailbox.
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,
    #[arg(long, env = "SMTP_PORT", default_value_t = 587)]
    pub smtp_port: u16,
    /// none (loopback relays only), starttls (required) or tls (implicit, port 465).
    #[arg(long, env = "SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,
    #[arg(long, env = "SMTP_USERNAME", default_value = "")]
    pub smtp_username: String,
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true, default_value = "")]
    pub smtp_password: Secret,
    /// Directory that keeps every message (`.eml`, `.sms.txt`) when no SMTP host is set.
    #[arg(long, env = "DEV_MAILBOX_DIR", default_value = "data/mailbox")]
    pub dev_mailbox_dir: PathBuf,
    /// A JSON template catalog replacing the built-in one (templates/default.json).
    #[arg(long, env = "TEMPLATES_FILE")]
    pub templates_file: Option<PathBuf>,
    /// Resend's signing secret, `whsec_…`; unset: its webhook answers 404.
    #[arg(
        long,
        env = "RESEND_WEBHOOK_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub resend_webhook_secret: Secret,
    /// SendGrid's verification key (PEM or base64 DER of the P-256 public key).
    #[arg(
        long,
        env = "SENDGRID_WEBHOOK_PUBLIC_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub sendgrid_webhook_public_key: Secret,
    #[arg(
        long,
        env = "MAILGUN_WEBHOOK_SIGNING_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub mailgun_webhook_signing_key: Secret,
    /// `user:password` that Postmark's webhook sends as HTTP Basic credentials.
    #[arg(
        long,
        env = "POSTMARK_WEBHOOK_CREDENTIALS",
        hide_env_values = true,
        default_value = ""
    )]
    pub postmark_webhook_credentials: Secret,
    /// Secret (at least 32 characters) that signs the unsubscribe links of invitation emails
    /// (the mesh generates one into its data dir).
    #[arg(
        long,
        env = "UNSUBSCRIBE_SIGNING_KEY",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub unsubscribe_signing_key: Secret,
    /// Domain of the `mailto:unsubscribe@…` link of `List-Unsubscribe` (default: MAIL_FROM's).
    #[arg(long, env = "UNSUBSCRIBE_MAILTO_DOMAIN", default_value = "")]
    pub unsubscribe_mailto_domain: String,
    /// How long a provider event id is remembered to refuse its replay. Signed providers'
    /// events older than 5 minutes are refused by their timestamp anyway; this bounds the
    /// table (Postmark's events carry no signed timestamp, hence the generous default).
    #[arg(long, env = "PROVIDER_EVENT_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub provider_event_retention: Duration,
    /// How long an export's documents are kept after the privacy request is done (then
    /// deleted: they are personal data); at least an hour.
    #[arg(long, env = "PRIVACY_EXPORT_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub privacy_export_retention: Duration,
    /// invite-svc's clock (the system clock; tests move it).
    #[arg(skip)]
    pub clock: Clock,
    /// Tests only: a fault the scheduler runs before each send.
    #[arg(skip)]
    pub send_fault: SendFault,
    #[command(flatten)]
    pub supervision: referral_common::supervisor::SupervisionConfig,
    /// Keys of personal data at rest (PII_KEYS, PII_LOOKUP_KEY; see `referral_common::pii`).
    #[command(flatten)]
    pub pii: referral_common::pii::PiiArgs,
    /// The retention job (RETENTION_*, OUTBOX_RETENTION_GRACE, DEDUPE_WINDOW...; see
    /// `referral_common::retention`).
    #[command(flatten)]
    pub retention: referral_common::retention::RetentionArgs,
}

/// The runtime configuration the use cases read: `InviteConfig` checked and parsed once at
/// start-up ([`runtime_config`]).
pub struct RuntimeConfig {
    pub public_url: String,
    pub default_landing_url: String,
    pub quotas: QuotaConfig,
    pub send_rules: SendRules,
    pub attribution_window_days: i64,
    /// Verify (and, for clicks recorded without an id, sign) click ids.
    pub click_keys: ClickKeys,
    pub default_timezone: chrono_tz::Tz,
    /// Where `optimize: true` aims (local weekday and hour).
    pub preferred_slot: (chrono::Weekday, u32),
    pub catalog: Arc<Catalog>,
    pub webhooks: WebhookSecrets,
    /// "Now" for scheduling (the system clock; tests move it).
    pub clock: Clock,
    /// Where a `landingUrl` may point (`LANDING_HOSTS`).
    pub landing_hosts: referral_common::landing::LandingHosts,
    /// The largest conversion value accepted (`MAX_AMOUNT_MINOR`).
    pub max_amount_minor: i64,
    /// How far ahead `sendAt` may be (`SEND_AT_HORIZON`).
    pub send_at_horizon: chrono::TimeDelta,
    /// Suppression lookups and unsubscribe links (`app::consent`).
    pub consent: crate::app::consent::ConsentSettings,
}

/// The longest attribution window accepted (ten years).
pub const MAX_ATTRIBUTION_WINDOW_DAYS: i64 = 3_650;

/// Checks every setting up front so a bad one stops start-up with one line naming it.
pub fn runtime_config(config: &InviteConfig) -> Result<RuntimeConfig, ConfigError> {
    config.web_tokens.validate()?;
    config::check_service_jwt_secret(&config.web_tokens.jwt_secret, &config.service_jwt_secret)?;
    config::backend_of("INVITE_DATABASE_URL", &config.database_url)?;
    // Personal data is sealed at rest: no keys, no start (the error names PII_KEYS).
    config.pii.keys()?;
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
    Ok(RuntimeConfig {
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
        consent: consent_from(config)?,
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

/// The PII keys (suppressions are found by their lookup hash) and the unsubscribe links'
/// signing key and addresses.
pub fn consent_from(config: &InviteConfig) -> Result<crate::app::consent::ConsentSettings, ConfigError> {
    use crate::domain::suppression::UnsubscribeKey;
    let pii = config.pii.keys()?;
    let key = UnsubscribeKey::new(config.unsubscribe_signing_key.expose())
        .map_err(|e| ConfigError::new("UNSUBSCRIBE_SIGNING_KEY", e))?;
    let mailto_domain = if config.unsubscribe_mailto_domain.trim().is_empty() {
        let from: lettre::message::Mailbox = config.mail_from.parse().map_err(|e| {
            ConfigError::new(
                "MAIL_FROM",
                format!("is not a mailbox like `Name <a@b.example>`: {e}"),
            )
        })?;
        from.email.domain().to_string()
    } else {
        config.unsubscribe_mailto_domain.trim().to_ascii_lowercase()
    };
    let domain_ok = !mailto_domain.is_empty()
        && mailto_domain.len() <= 253
        && mailto_domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !domain_ok {
        return Err(ConfigError::new(
            "UNSUBSCRIBE_MAILTO_DOMAIN",
            "must be a domain name (letters, digits, dots and hyphens)",
        ));
    }
    Ok(crate::app::consent::ConsentSettings {
        pii,
        key,
        public_url: config.public_url.trim_end_matches('/').to_string(),
        mailto_domain,
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
        consent: consent_from(config)?,
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

/// The shortest PROVIDER_EVENT_RETENTION: well past the 5 minutes a signed event's timestamp
/// may be off.
const MIN_PROVIDER_EVENT_RETENTION: Duration = Duration::from_secs(3600);
pub fn check_provider_event_retention(retention: Duration) -> Result<(), ConfigError> {
    if retention < MIN_PROVIDER_EVENT_RETENTION {
        return Err(ConfigError::new(
            "PROVIDER_EVENT_RETENTION",
            "must be at least 1h: a provider's replays are refused for that long at least",
        ));
    }
    Ok(())
}

/// The shortest PRIVACY_EXPORT_RETENTION: a person must have time to fetch their export.
const MIN_PRIVACY_EXPORT_RETENTION: Duration = Duration::from_secs(3600);
pub fn check_privacy_export_retention(retention: Duration) -> Result<(), ConfigError> {
    if retention < MIN_PRIVACY_EXPORT_RETENTION {
        return Err(ConfigError::new(
            "PRIVACY_EXPORT_RETENTION",
            "must be at least 1h: the person needs time to download their export",
        ));
    }
    Ok(())
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
    fn privacy_export_retention_defaults_to_30_days_and_refuses_less_than_an_hour() {
        let c = config(&[]);
        assert_eq!(c.privacy_export_retention, Duration::from_secs(30 * 86_400));
        assert!(check_privacy_export_retention(c.privacy_export_retention).is_ok());
        let e = check_privacy_export_retention(Duration::from_secs(60)).unwrap_err();
        assert!(e.to_string().contains("PRIVACY_EXPORT_RETENTION"), "{e}");
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
            "--unsubscribe-signing-key",
            "an-unsubscribe-key-of-at-least-32-chars",
        ];
        let mut pii = vec![];
        for (flag, value) in [
            ("--pii-keys", "p1:a-pii-key-of-at-least-32-characters-000"),
            ("--pii-lookup-key", "a-pii-lookup-key-of-at-least-32-characters"),
        ] {
            if !args.contains(&flag) {
                pii.extend([flag, value]);
            }
        }
        Cli::try_parse_from(base.iter().chain(&pii).chain(args))
            .expect("flags parse")
            .config
    }

    fn failing_setting(args: &[&str]) -> String {
        match runtime_config(&config(args)) {
            Ok(_) => panic!("{args:?} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn input_limits_default_to_the_contract() {
        let s = runtime_config(&config(&[])).unwrap();
        assert_eq!(s.max_amount_minor, 100_000_000_000);
        assert_eq!(s.send_at_horizon, chrono::TimeDelta::days(730));
        let landing = |u: &str| s.landing_hosts.allows(&url::Url::parse(u).unwrap());
        assert!(landing("https://example.com/spring") && !landing("https://evil.com/"));
        let s = runtime_config(&config(&["--landing-hosts", "*.weddings.test"])).unwrap();
        assert!(
            s.landing_hosts
                .allows(&url::Url::parse("https://a.weddings.test/").unwrap())
        );
    }

    #[test]
    fn quotas_default_to_the_domains() {
        assert_eq!(
            runtime_config(&config(&[])).unwrap().quotas,
            QuotaConfig::default()
        );
    }

    #[test]
    fn the_attribution_window_is_bounded() {
        assert_eq!(runtime_config(&config(&[])).unwrap().attribution_window_days, 30);
        assert!(runtime_config(&config(&["--attribution-window-days", "3650"])).is_ok());
        for bad in ["0", "-1", "3651", "100000000"] {
            let e = failing_setting(&[&format!("--attribution-window-days={bad}")]);
            assert!(e.contains("ATTRIBUTION_WINDOW_DAYS"), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_webhook_secrets_leave_providers_unconfigured() {
        let settings = runtime_config(&config(&[
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
    fn unsubscribe_links_need_a_key_and_default_to_the_senders_domain() {
        let s = runtime_config(&config(&[])).unwrap();
        assert_eq!(s.consent.mailto_domain, "referral-mesh.localhost");
        let links = s.consent.links("inv-1");
        assert!(
            links.url.starts_with("http://127.0.0.1:8080/u/inv-1."),
            "{links:?}"
        );
        let s = runtime_config(&config(&["--unsubscribe-mailto-domain", "Mail.Example.com"])).unwrap();
        assert_eq!(s.consent.mailto_domain, "mail.example.com");
        let refused = |change: &dyn Fn(&mut InviteConfig)| {
            let mut c = config(&[]);
            change(&mut c);
            match runtime_config(&c) {
                Ok(_) => panic!("should be refused"),
                Err(e) => e.to_string(),
            }
        };
        let e = refused(&|c| c.unsubscribe_signing_key = Secret::new("short"));
        assert!(e.contains("UNSUBSCRIBE_SIGNING_KEY"), "{e}");
        let e = refused(&|c| c.unsubscribe_mailto_domain = "a b?c".into());
        assert!(e.contains("UNSUBSCRIBE_MAILTO_DOMAIN"), "{e}");
        let e = refused(&|c| c.pii.pii_lookup_key = Secret::new(""));
        assert!(e.contains("PII_LOOKUP_KEY"), "{e}");
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
            // Personal data is sealed at rest: unusable keys stop start-up.
            (&["--pii-keys", "p1:short"][..], "PII_KEYS"),
            (&["--pii-lookup-key", "short"][..], "PII_LOOKUP_KEY"),
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
