//! fraud-svc's configuration: flags and environment, defaults that work for the embedded mesh
//! and docs/api.md's weights and thresholds.

use std::time::Duration;

use referral_common::config::{ConfigError, LogFormat, Secret, parse_duration};

use crate::domain::{self, Scoring, Weights};

#[derive(Debug, Clone, clap::Args)]
pub struct FraudConfig {
    /// gRPC listen address.
    #[arg(long = "listen", env = "FRAUD_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: String,
    /// postgres://… or sqlite:…
    #[arg(long, env = "FRAUD_DATABASE_URL", default_value = "sqlite:data/fraud.db")]
    pub database_url: String,
    /// Postgres schema owned by this service.
    #[arg(long, env = "FRAUD_DB_SCHEMA", default_value = "fraud")]
    pub db_schema: String,
    /// How web tokens of direct callers are verified: the gateway's settings (JWT_SECRET
    /// and/or a JWKS, and the policy).
    #[command(flatten)]
    pub web_tokens: referral_common::auth::WebTokenArgs,
    /// HS256 secret of service tokens only (at least 32 characters, not JWT_SECRET).
    #[arg(long, env = "SERVICE_JWT_SECRET", hide_env_values = true, default_value = "")]
    pub service_jwt_secret: Secret,
    /// invite-svc, whose event log is consumed (signups and conversions to assess, and
    /// invitations and signups left pending while fraud-svc was away). Unset: no consumer.
    #[arg(long, env = "INVITE_ADDR")]
    pub invite_addr: Option<String>,
    /// Prometheus /metrics address for the standalone binary.
    #[arg(long, env = "FRAUD_METRICS_ADDR")]
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

    // ---- weights (signups and conversions) ----------------------------------------
    /// Weight of velocity (too many referred signups in 24 h).
    #[arg(
        long,
        env = "FRAUD_WEIGHT_VELOCITY",
        default_value_t = 0.30,
        help_heading = "Scoring"
    )]
    pub weight_velocity: f64,
    /// Weight of e-mail / name similarity to another referee of the referrer.
    #[arg(
        long,
        env = "FRAUD_WEIGHT_SIMILARITY",
        default_value_t = 0.25,
        help_heading = "Scoring"
    )]
    pub weight_similarity: f64,
    /// Weight of IP clustering among the referrer's referees.
    #[arg(
        long,
        env = "FRAUD_WEIGHT_IP_CLUSTER",
        default_value_t = 0.20,
        help_heading = "Scoring"
    )]
    pub weight_ip_cluster: f64,
    /// Weight of timing regularity of the referrer's signups.
    #[arg(
        long,
        env = "FRAUD_WEIGHT_TIMING",
        default_value_t = 0.15,
        help_heading = "Scoring"
    )]
    pub weight_timing: f64,
    /// Weight of click-to-conversion speed (conversions only).
    #[arg(
        long,
        env = "FRAUD_WEIGHT_CONVERSION_SPEED",
        default_value_t = 0.10,
        help_heading = "Scoring"
    )]
    pub weight_conversion_speed: f64,
    /// Weight of a disposable e-mail domain.
    #[arg(
        long,
        env = "FRAUD_WEIGHT_DISPOSABLE",
        default_value_t = 0.25,
        help_heading = "Scoring"
    )]
    pub weight_disposable: f64,
    /// Weight of belonging to a fraud ring larger than --cluster-size-limit.
    #[arg(
        long,
        env = "FRAUD_WEIGHT_FRAUD_RING",
        default_value_t = 0.20,
        help_heading = "Scoring"
    )]
    pub weight_fraud_ring: f64,

    // ---- thresholds -------------------------------------------------------------
    /// Velocity fires above this many referred signups in 24 h.
    #[arg(
        long,
        env = "FRAUD_VELOCITY_LIMIT",
        default_value_t = 10,
        help_heading = "Scoring"
    )]
    pub velocity_limit: u32,
    /// Similarity fires above this (0..1, normalised Levenshtein).
    #[arg(
        long,
        env = "FRAUD_SIMILARITY_THRESHOLD",
        default_value_t = 0.8,
        help_heading = "Scoring"
    )]
    pub similarity_threshold: f64,
    /// IP clustering fires at this many of the referrer's referees from one IP in 7 days.
    #[arg(
        long,
        env = "FRAUD_IP_CLUSTER_MIN",
        default_value_t = 5,
        help_heading = "Scoring"
    )]
    pub ip_cluster_min: u32,
    /// Timing regularity fires below this coefficient of variation...
    #[arg(
        long,
        env = "FRAUD_TIMING_MAX_CV",
        default_value_t = 0.1,
        help_heading = "Scoring"
    )]
    pub timing_max_cv: f64,
    /// ...over at least this many of the referrer's signups.
    #[arg(
        long,
        env = "FRAUD_TIMING_MIN_EVENTS",
        default_value_t = 5,
        help_heading = "Scoring"
    )]
    pub timing_min_events: usize,
    /// Conversion speed fires under this from click to conversion (90s, 5m, 1h). Unset:
    /// `domain::CONVERSION_SPEED_MIN` (5m), the one place its default is written.
    #[arg(long, env = "FRAUD_CONVERSION_SPEED_MIN", value_parser = parse_duration, help_heading = "Scoring")]
    pub conversion_speed_min: Option<Duration>,
    /// A score above this is MEDIUM and REVIEW.
    #[arg(
        long,
        env = "FRAUD_REVIEW_THRESHOLD",
        default_value_t = 0.4,
        help_heading = "Scoring"
    )]
    pub review_threshold: f64,
    /// A score above this is HIGH and REJECT.
    #[arg(
        long,
        env = "FRAUD_REJECT_THRESHOLD",
        default_value_t = 0.7,
        help_heading = "Scoring"
    )]
    pub reject_threshold: f64,

    // ---- hard rules and rings -------------------------------------------------------
    /// Refuse a recipient invited by more than this many different referrers in 30 days.
    #[arg(
        long,
        env = "FRAUD_RECIPIENT_REFERRER_LIMIT",
        default_value_t = 3,
        help_heading = "Rules"
    )]
    pub recipient_referrer_limit: u32,
    /// Refuse more than this many invitations from one device id in 24 h.
    #[arg(
        long,
        env = "FRAUD_DEVICE_INVITATION_LIMIT",
        default_value_t = 100,
        help_heading = "Rules"
    )]
    pub device_invitation_limit: u32,
    /// Exempt a device that acted for one referrer only (their own import; quotas pace it).
    #[arg(long, env = "FRAUD_DEVICE_SINGLE_REFERRER_EXEMPT", default_value_t = true, action = clap::ArgAction::Set, help_heading = "Rules")]
    pub device_single_referrer_exempt: bool,
    /// A fraud ring (people linked by a shared IP, device or e-mail) larger than this
    /// raises every member's score by --weight-fraud-ring.
    #[arg(
        long,
        env = "FRAUD_CLUSTER_SIZE_LIMIT",
        default_value_t = 10,
        help_heading = "Rules"
    )]
    pub cluster_size_limit: u32,
    /// Loopback, private and link-local IPs (our own network) link nobody into a ring.
    #[arg(long, env = "FRAUD_RING_IGNORE_PRIVATE_IPS", default_value_t = true, action = clap::ArgAction::Set, help_heading = "Rules")]
    pub ring_ignore_private_ips: bool,
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

impl FraudConfig {
    /// The decision's configuration, checked: one line naming a bad setting.
    pub fn scoring(&self) -> Result<Scoring, ConfigError> {
        let weights = Weights {
            velocity: weight("FRAUD_WEIGHT_VELOCITY", self.weight_velocity)?,
            similarity: weight("FRAUD_WEIGHT_SIMILARITY", self.weight_similarity)?,
            ip_cluster: weight("FRAUD_WEIGHT_IP_CLUSTER", self.weight_ip_cluster)?,
            timing: weight("FRAUD_WEIGHT_TIMING", self.weight_timing)?,
            conversion_speed: weight("FRAUD_WEIGHT_CONVERSION_SPEED", self.weight_conversion_speed)?,
            disposable: weight("FRAUD_WEIGHT_DISPOSABLE", self.weight_disposable)?,
            fraud_ring: weight("FRAUD_WEIGHT_FRAUD_RING", self.weight_fraud_ring)?,
        };
        let similarity_threshold = fraction("FRAUD_SIMILARITY_THRESHOLD", self.similarity_threshold)?;
        let review_above = fraction("FRAUD_REVIEW_THRESHOLD", self.review_threshold)?;
        let reject_above = fraction("FRAUD_REJECT_THRESHOLD", self.reject_threshold)?;
        if reject_above < review_above {
            return Err(ConfigError::new(
                "FRAUD_REJECT_THRESHOLD",
                "must not be below FRAUD_REVIEW_THRESHOLD",
            ));
        }
        if !(self.timing_max_cv.is_finite() && self.timing_max_cv > 0.0) {
            return Err(ConfigError::new(
                "FRAUD_TIMING_MAX_CV",
                "must be a positive number",
            ));
        }
        if self.timing_min_events < 3 {
            return Err(ConfigError::new(
                "FRAUD_TIMING_MIN_EVENTS",
                "must be at least 3 (two gaps to compare)",
            ));
        }
        for (name, n) in [
            ("FRAUD_VELOCITY_LIMIT", self.velocity_limit),
            ("FRAUD_IP_CLUSTER_MIN", self.ip_cluster_min),
            ("FRAUD_RECIPIENT_REFERRER_LIMIT", self.recipient_referrer_limit),
            ("FRAUD_DEVICE_INVITATION_LIMIT", self.device_invitation_limit),
            ("FRAUD_CLUSTER_SIZE_LIMIT", self.cluster_size_limit),
        ] {
            if n == 0 {
                return Err(ConfigError::new(name, "must be at least 1"));
            }
        }
        let conversion_speed_min = match self.conversion_speed_min {
            None => domain::CONVERSION_SPEED_MIN,
            Some(d) => chrono::Duration::from_std(d)
                .ok()
                .filter(|d| *d > chrono::Duration::zero())
                .ok_or_else(|| {
                    ConfigError::new("FRAUD_CONVERSION_SPEED_MIN", "must be a positive duration")
                })?,
        };
        Ok(Scoring {
            weights,
            velocity_limit: self.velocity_limit,
            similarity_threshold,
            ip_cluster_min: self.ip_cluster_min,
            timing_max_cv: self.timing_max_cv,
            timing_min_events: self.timing_min_events,
            conversion_speed_min,
            review_above,
            reject_above,
            recipient_referrer_limit: self.recipient_referrer_limit,
            device_invitation_limit: self.device_invitation_limit,
            device_single_referrer_exempt: self.device_single_referrer_exempt,
            cluster_size_limit: self.cluster_size_limit,
            ring_ignores_non_public_ips: self.ring_ignore_private_ips,
        })
    }
}

fn weight(name: &'static str, w: f64) -> Result<f64, ConfigError> {
    fraction(name, w)
}

fn fraction(name: &'static str, x: f64) -> Result<f64, ConfigError> {
    if x.is_finite() && (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(ConfigError::new(name, format!("{x} is not between 0 and 1")))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: FraudConfig,
    }

    fn parse(args: &[&str]) -> FraudConfig {
        let mut all = vec!["fraud-svc"];
        all.extend_from_slice(args);
        Cli::parse_from(all).config
    }

    #[test]
    fn defaults_are_docs_api_md() {
        let c = parse(&[]);
        assert_eq!(c.scoring().unwrap(), Scoring::default());
        assert_eq!(c.db_schema, "fraud");
        assert_eq!(c.invite_addr, None);
    }

    #[test]
    fn flags_override_and_bad_values_name_the_setting() {
        let c = parse(&[
            "--weight-velocity",
            "0.5",
            "--cluster-size-limit",
            "4",
            "--conversion-speed-min",
            "90s",
            "--device-single-referrer-exempt",
            "false",
        ]);
        let s = c.scoring().unwrap();
        assert_eq!(s.weights.velocity, 0.5);
        assert_eq!(s.cluster_size_limit, 4);
        assert_eq!(s.conversion_speed_min, chrono::Duration::seconds(90));
        assert!(!s.device_single_referrer_exempt);
        let e = parse(&["--weight-timing", "1.5"]).scoring().unwrap_err();
        assert!(e.to_string().contains("FRAUD_WEIGHT_TIMING"), "{e}");
        let e = parse(&["--review-threshold", "0.8", "--reject-threshold", "0.5"])
            .scoring()
            .unwrap_err();
        assert!(e.to_string().contains("FRAUD_REJECT_THRESHOLD"), "{e}");
        let e = parse(&["--velocity-limit", "0"]).scoring().unwrap_err();
        assert!(e.to_string().contains("FRAUD_VELOCITY_LIMIT"), "{e}");
    }
}
