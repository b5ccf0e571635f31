//! Webhook configuration (flags and environment), flattened into analytics-svc's.

use std::time::Duration;

use ipnet::IpNet;
use referral_common::config::{ConfigError, parse_duration};

use crate::domain::webhooks::{retry::RetryPolicy, target::TargetPolicy};

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// Internal networks webhooks may reach anyway, comma-separated CIDRs (e.g.
    /// `127.0.0.0/8,::1/128` for a receiver on this machine). Empty: none (no SSRF).
    #[arg(
        long,
        env = "WEBHOOK_ALLOWED_NETWORKS",
        default_value = "",
        value_name = "CIDRS"
    )]
    pub webhook_allowed_networks: String,
    /// Wait before the first retry; later retries grow by --webhook-retry-factor.
    #[arg(long, env = "WEBHOOK_RETRY_BASE", default_value = "5s", value_parser = parse_duration)]
    pub webhook_retry_base: Duration,
    #[arg(long, env = "WEBHOOK_RETRY_FACTOR", default_value_t = 4)]
    pub webhook_retry_factor: u32,
    /// The longest wait between two attempts.
    #[arg(long, env = "WEBHOOK_RETRY_MAX_DELAY", default_value = "12h", value_parser = parse_duration)]
    pub webhook_retry_max_delay: Duration,
    /// How long after an event its delivery is still retried, then FAILED.
    #[arg(long, env = "WEBHOOK_RETRY_HORIZON", default_value = "3d", value_parser = parse_duration)]
    pub webhook_retry_horizon: Duration,
    /// Failed attempts in a row that disable an endpoint.
    #[arg(long, env = "WEBHOOK_DISABLE_AFTER", default_value_t = 20)]
    pub webhook_disable_after: u32,
    /// Time limit of one delivery attempt.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
}

impl WebhookConfig {
    pub fn target_policy(&self) -> Result<TargetPolicy, ConfigError> {
        let allowed = self
            .webhook_allowed_networks
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>().map_err(|_| {
                    ConfigError::new(
                        "WEBHOOK_ALLOWED_NETWORKS",
                        format!("{s:?} is not a network like 127.0.0.0/8 or ::1/128"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TargetPolicy::allowing(allowed))
    }

    pub fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        if self.webhook_retry_base.is_zero() {
            return Err(ConfigError::new("WEBHOOK_RETRY_BASE", "must be more than 0"));
        }
        if self.webhook_retry_factor == 0 {
            return Err(ConfigError::new("WEBHOOK_RETRY_FACTOR", "must be at least 1"));
        }
        if self.webhook_disable_after == 0 {
            return Err(ConfigError::new("WEBHOOK_DISABLE_AFTER", "must be at least 1"));
        }
        if self.webhook_timeout.is_zero() {
            return Err(ConfigError::new("WEBHOOK_TIMEOUT", "must be more than 0"));
        }
        Ok(RetryPolicy {
            base: self.webhook_retry_base,
            factor: self.webhook_retry_factor,
            max_delay: self.webhook_retry_max_delay.max(self.webhook_retry_base),
            horizon: self.webhook_retry_horizon,
            disable_after: self.webhook_disable_after,
        })
    }
}
