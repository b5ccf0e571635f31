//! analytics-svc's configuration: flags and environment ([`AnalyticsConfig`], with the
//! webhooks' in [`webhooks::WebhookConfig`]), defaults that work for the embedded mesh, and
//! the checked [`RuntimeConfig`] the service runs with.

pub mod webhooks;

use referral_common::config::{ConfigError, LogFormat, Secret};

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsConfig {
    /// gRPC listen address.
    #[arg(long = "listen", env = "ANALYTICS_LISTEN", default_value = "127.0.0.1:50054")]
    pub listen: String,
    /// postgres://… or sqlite:…
    #[arg(
        long,
        env = "ANALYTICS_DATABASE_URL",
        default_value = "sqlite:data/analytics.db"
    )]
    pub database_url: String,
    /// Postgres schema owned by this service.
    #[arg(long, env = "ANALYTICS_DB_SCHEMA", default_value = "analytics")]
    pub db_schema: String,
    /// How web tokens of direct callers are verified: the gateway's settings (JWT_SECRET
    /// and/or a JWKS, and the policy).
    #[command(flatten)]
    pub web_tokens: referral_common::auth::WebTokenArgs,
    /// HS256 secret of service tokens only (at least 32 characters, not JWT_SECRET).
    #[arg(long, env = "SERVICE_JWT_SECRET", hide_env_values = true, default_value = "")]
    pub service_jwt_secret: Secret,
    /// invite-svc, whose event log (invitations, clicks, signups, conversions) is consumed.
    /// Unset: not consumed.
    #[arg(long, env = "INVITE_ADDR")]
    pub invite_addr: Option<String>,
    /// fraud-svc, whose event log (assessments, resolutions) is consumed. Unset: not consumed.
    #[arg(long, env = "FRAUD_ADDR")]
    pub fraud_addr: Option<String>,
    /// incentive-svc, whose event log (rewards, badges, payouts) is consumed. Unset: not consumed.
    #[arg(long, env = "INCENTIVE_ADDR")]
    pub incentive_addr: Option<String>,
    /// Revenue figures (time series, leaderboards) count conversions in this ISO 4217
    /// currency; attribution reports every currency apart.
    #[arg(long, env = "ANALYTICS_CURRENCY", default_value = "GBP")]
    pub currency: String,
    /// Live feed: at most this many events a second per client; older ones are dropped with
    /// a `lagged` notice.
    #[arg(long, env = "LIVE_FEED_RATE", default_value_t = 10)]
    pub live_feed_rate: u32,
    /// How many levels deep a member may see their own referral network
    /// (`GET /v1/referrers/{id}/network?depth=`), 1 to 3 (3 is the most the graph is ever
    /// exposed, issue #16).
    #[arg(long, env = "MAX_NETWORK_DEPTH", default_value_t = crate::domain::network::MAX_DEPTH)]
    pub max_network_depth: i32,
    /// Prometheus /metrics address for the standalone binary.
    #[arg(long, env = "ANALYTICS_METRICS_ADDR")]
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
    #[command(flatten)]
    pub webhooks: webhooks::WebhookConfig,
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

/// The checked configuration the service runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub currency: String,
    pub live_feed_rate: u32,
    /// 1 ..= `domain::network::MAX_DEPTH`.
    pub max_network_depth: i32,
}

impl AnalyticsConfig {
    /// Checks every setting: one line naming a bad one.
    pub fn runtime(&self) -> Result<RuntimeConfig, ConfigError> {
        self.web_tokens.validate()?;
        referral_common::config::check_service_jwt_secret(
            &self.web_tokens.jwt_secret,
            &self.service_jwt_secret,
        )?;
        referral_common::config::backend_of("ANALYTICS_DATABASE_URL", &self.database_url)?;
        for (name, addr) in [
            ("INVITE_ADDR", &self.invite_addr),
            ("FRAUD_ADDR", &self.fraud_addr),
            ("INCENTIVE_ADDR", &self.incentive_addr),
        ] {
            if addr.as_ref().is_some_and(|a| a.trim().is_empty()) {
                return Err(ConfigError::new(name, "must be HOST:PORT or a URL when set"));
            }
        }
        let currency = self.currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ConfigError::new(
                "ANALYTICS_CURRENCY",
                "must be a three-letter ISO 4217 code",
            ));
        }
        if self.live_feed_rate == 0 || self.live_feed_rate > 1000 {
            return Err(ConfigError::new("LIVE_FEED_RATE", "must be between 1 and 1000"));
        }
        if !(1..=crate::domain::network::MAX_DEPTH).contains(&self.max_network_depth) {
            return Err(ConfigError::new(
                "MAX_NETWORK_DEPTH",
                format!("must be between 1 and {}", crate::domain::network::MAX_DEPTH),
            ));
        }
        Ok(RuntimeConfig {
            currency,
            live_feed_rate: self.live_feed_rate,
            max_network_depth: self.max_network_depth,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: AnalyticsConfig,
    }

    fn parse(args: &[&str]) -> AnalyticsConfig {
        let mut all = vec![
            "analytics-svc",
            "--jwt-secret",
            "0123456789abcdef0123456789abcdef",
            "--service-jwt-secret",
            "service-secret-for-tests-0123456789abcdef",
        ];
        all.extend_from_slice(args);
        Cli::parse_from(all).config
    }

    #[test]
    fn defaults_and_bad_values_name_the_setting() {
        let s = parse(&[]).runtime().unwrap();
        assert_eq!(s.currency, "GBP");
        assert_eq!(s.live_feed_rate, 10);
        assert_eq!(s.max_network_depth, 3);
        assert_eq!(
            parse(&["--max-network-depth", "2"])
                .runtime()
                .unwrap()
                .max_network_depth,
            2
        );
        for bad in ["0", "4"] {
            let e = parse(&["--max-network-depth", bad]).runtime().unwrap_err();
            assert!(e.to_string().contains("MAX_NETWORK_DEPTH"), "{e}");
        }
        let e = parse(&["--currency", "pounds"]).runtime().unwrap_err();
        assert!(e.to_string().contains("ANALYTICS_CURRENCY"), "{e}");
        let e = parse(&["--live-feed-rate", "0"]).runtime().unwrap_err();
        assert!(e.to_string().contains("LIVE_FEED_RATE"), "{e}");
        let e = parse(&["--fraud-addr", " "]).runtime().unwrap_err();
        assert!(e.to_string().contains("FRAUD_ADDR"), "{e}");
    }
}
