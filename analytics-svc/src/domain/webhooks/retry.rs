//! When a failed delivery is tried again, when it is given up, and when an endpoint is
//! disabled. Exponential backoff: the n-th retry waits `base × factor^(n-1)`, at most
//! `max_delay`; no retry is scheduled past `horizon` after the delivery was created (3 days
//! by default, as docs/api.md asks). The defaults (5 s × 4ⁿ, capped at 12 h) start like the
//! Standard Webhooks' suggested schedule — 5 s, 20 s, 80 s, 5 min, 21 min, 85 min, 6 h —
//! then retry every 12 h until the third day is over.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait before the first retry.
    pub base: Duration,
    pub factor: u32,
    pub max_delay: Duration,
    /// How long after its creation a delivery is still retried.
    pub horizon: Duration,
    /// Consecutive failed attempts (across an endpoint's deliveries) that disable it.
    pub disable_after: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            factor: 4,
            max_delay: Duration::from_secs(12 * 3600),
            horizon: Duration::from_secs(3 * 24 * 3600),
            disable_after: 20,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt (1 = the first attempt failed).
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(32);
        let grown = self
            .base
            .checked_mul(self.factor.max(1).saturating_pow(exponent))
            .unwrap_or(self.max_delay);
        grown.min(self.max_delay)
    }

    /// When to try again after `attempts` failed attempts, or None: give up (FAILED).
    pub fn next_attempt(
        &self,
        attempts: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let delay = chrono::Duration::from_std(self.delay_after(attempts)).ok()?;
        let horizon = chrono::Duration::from_std(self.horizon).ok()?;
        let next = now + delay;
        (next <= created_at + horizon).then_some(next)
    }

    /// The disable rule: this many failures in a row and the endpoint is switched off.
    pub fn disables(&self, consecutive_failures: u32) -> bool {
        consecutive_failures >= self.disable_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_delays_grow_exponentially_then_cap_at_twelve_hours() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=10).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(secs, vec![5, 20, 80, 320, 1280, 5120, 20480, 43200, 43200, 43200]);
        assert_eq!(p.delay_after(u32::MAX), Duration::from_secs(43200));
    }

    #[test]
    fn retries_stop_three_days_after_creation() {
        let p = RetryPolicy::default();
        let created = Utc::now();
        // The first attempt is made at creation; each failure schedules the next, if any.
        let mut at = created;
        let mut attempts = 1;
        while let Some(next) = p.next_attempt(attempts, created, at) {
            attempts += 1;
            at = next;
            assert!(attempts < 100, "the schedule must end");
        }
        assert!(at <= created + chrono::Duration::days(3));
        assert!(
            at > created + chrono::Duration::hours(60),
            "retries span the three days: {at}"
        );
        // 5s, 20s, 80s, 5m, 21m, 85m, 6h (7.6 h in all), then every 12 h: 5 more by 67.6 h.
        assert_eq!(attempts, 13);
    }

    #[test]
    fn twenty_failures_in_a_row_disable() {
        let p = RetryPolicy::default();
        assert!(!p.disables(19));
        assert!(p.disables(20));
    }
}
