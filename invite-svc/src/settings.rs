//! invite-svc settings: flags and environment, defaults that work for the embedded mesh.

use std::time::Duration;

use referral_common::config::{LogFormat, Secret, parse_duration};

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
    /// HS256 secret shared with the gateway (at least 32 characters).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    pub jwt_secret: Secret,
    /// Shared limits and idempotency keys live here when set.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
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
}
