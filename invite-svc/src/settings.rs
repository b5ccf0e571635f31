//! invite-svc settings: flags and environment, defaults that work for the embedded mesh.

use std::{path::PathBuf, time::Duration};

use referral_common::config::{LogFormat, Secret, parse_duration};

use crate::{clock::Clock, sender::SmtpTls};

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
    /// Quotas per tier as `hourly/daily`.
    #[arg(long, env = "QUOTA_REGULAR", default_value = "10/50")]
    pub quota_regular: String,
    #[arg(long, env = "QUOTA_PREMIUM", default_value = "20/100")]
    pub quota_premium: String,
    #[arg(long, env = "QUOTA_SUPER_CONNECTOR", default_value = "30/200")]
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
    /// How long a provider event id is remembered to refuse its replay. Signed providers'
    /// events older than 5 minutes are refused by their timestamp anyway; this bounds the
    /// table (Postmark's events carry no signed timestamp, hence the generous default).
    #[arg(long, env = "PROVIDER_EVENT_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub provider_event_retention: Duration,
    /// invite-svc's clock (the system clock; tests move it).
    #[arg(skip)]
    pub clock: Clock,
    /// Tests only: a fault the scheduler runs before each send.
    #[arg(skip)]
    pub send_fault: crate::scheduler::SendFault,
    #[command(flatten)]
    pub supervision: referral_common::supervisor::SupervisionConfig,
}
