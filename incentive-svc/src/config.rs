//! incentive-svc settings: flags and environment, defaults that work for the embedded mesh.

use std::time::Duration;

use referral_common::config::{self, ConfigError, LogFormat, Secret, parse_duration};

#[derive(Debug, Clone, clap::Args)]
pub struct IncentiveConfig {
    /// gRPC listen address.
    #[arg(long = "listen", env = "INCENTIVE_LISTEN", default_value = "127.0.0.1:50053")]
    pub listen: String,
    /// postgres://… or sqlite:…
    #[arg(
        long,
        env = "INCENTIVE_DATABASE_URL",
        default_value = "sqlite:data/incentive.db"
    )]
    pub database_url: String,
    /// Postgres schema owned by this service.
    #[arg(long, env = "INCENTIVE_DB_SCHEMA", default_value = "incentive")]
    pub db_schema: String,
    /// How web tokens of direct callers are verified: the gateway's settings (JWT_SECRET
    /// and/or a JWKS, and the policy).
    #[command(flatten)]
    pub web_tokens: referral_common::auth::WebTokenArgs,
    /// HS256 secret of service tokens only (at least 32 characters, not JWT_SECRET).
    #[arg(long, env = "SERVICE_JWT_SECRET", hide_env_values = true, default_value = "")]
    pub service_jwt_secret: Secret,
    /// Idempotency keys (payouts, programs, campaigns) live here when set, so every replica
    /// sees them.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// PEM CA(s) a rediss:// REDIS_URL's certificate must chain to (instead of the web roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// invite-svc, whose event log (conversions) is consumed. Unset: no consumer.
    #[arg(long, env = "INVITE_ADDR")]
    pub invite_addr: Option<String>,
    /// fraud-svc, whose event log (assessments, case resolutions) is consumed. Unset: none.
    #[arg(long, env = "FRAUD_ADDR")]
    pub fraud_addr: Option<String>,
    /// How often the scheduler moves rewards past their hold to ELIGIBLE and unclaimed ones
    /// past their expiry to EXPIRED.
    #[arg(long, env = "INCENTIVE_SCHEDULER_TICK", default_value = "1s")]
    pub scheduler_tick: String,
    /// Prometheus /metrics address for the standalone binary.
    #[arg(long, env = "INCENTIVE_METRICS_ADDR")]
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
    pub supervision: referral_common::supervisor::SupervisionConfig,
    /// Keys of personal data at rest (PII_KEYS, PII_LOOKUP_KEY; see `referral_common::pii`).
    #[command(flatten)]
    pub pii: referral_common::pii::PiiArgs,
    /// The retention job (RETENTION_*, OUTBOX_RETENTION_GRACE, DEDUPE_WINDOW...; see
    /// `referral_common::retention`).
    #[command(flatten)]
    pub retention: referral_common::retention::RetentionArgs,
}

impl IncentiveConfig {
    /// Checks every setting so a bad one stops start-up with one line naming it; returns the
    /// scheduler tick.
    pub fn check(&self) -> Result<Duration, ConfigError> {
        self.web_tokens.validate()?;
        config::check_service_jwt_secret(&self.web_tokens.jwt_secret, &self.service_jwt_secret)?;
        config::backend_of("INCENTIVE_DATABASE_URL", &self.database_url)?;
        for (name, addr) in [
            ("INVITE_ADDR", &self.invite_addr),
            ("FRAUD_ADDR", &self.fraud_addr),
        ] {
            if addr.as_ref().is_some_and(|a| a.trim().is_empty()) {
                return Err(ConfigError::new(name, "must be HOST:PORT or a URL when set"));
            }
        }
        let tick = parse_duration(&self.scheduler_tick)
            .map_err(|e| ConfigError::new("INCENTIVE_SCHEDULER_TICK", e))?;
        if tick.is_zero() || tick > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "INCENTIVE_SCHEDULER_TICK",
                "must be between 1ms and 1h",
            ));
        }
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        c: IncentiveConfig,
    }

    fn parse(extra: &[&str]) -> IncentiveConfig {
        let secret = "s".repeat(32);
        let mut args = vec![
            "incentive-svc",
            "--jwt-secret",
            &secret,
            "--service-jwt-secret",
            "service-secret-for-tests-0123456789abcdef",
        ];
        args.extend(extra);
        Cli::parse_from(args).c
    }

    #[test]
    fn the_scheduler_tick_is_a_duration_and_bad_settings_name_themselves() {
        assert_eq!(parse(&[]).check().unwrap(), Duration::from_secs(1));
        assert_eq!(
            parse(&["--scheduler-tick", "250ms"]).check().unwrap(),
            Duration::from_millis(250)
        );
        let e = parse(&["--scheduler-tick", "soon"]).check().unwrap_err();
        assert!(e.to_string().contains("INCENTIVE_SCHEDULER_TICK"), "{e}");
        let e = parse(&["--fraud-addr", " "]).check().unwrap_err();
        assert!(e.to_string().contains("FRAUD_ADDR"), "{e}");
        let e = parse(&["--database-url", "mysql://x"]).check().unwrap_err();
        assert!(e.to_string().contains("INCENTIVE_DATABASE_URL"), "{e}");
    }
}
