//! What happens after a send attempt fails: retry later with exponential backoff, or give
//! up and mark the invitation BOUNCED (a permanent refusal, or too many attempts).

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt; doubled after each further one.
    pub base: TimeDelta,
    /// Longest wait between attempts.
    pub max_delay: TimeDelta,
    /// Attempts in all before giving up.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: TimeDelta::seconds(30),
            max_delay: TimeDelta::hours(1),
            max_attempts: 8,
        }
    }
}

/// How a provider refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// Worth another try: connection trouble, a 4xx SMTP reply, a time-out.
    Transient(String),
    /// The provider will never take it: a 5xx SMTP reply (no such mailbox, rejected).
    Permanent(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    /// Stop and mark the invitation BOUNCED with this reason.
    GiveUp(String),
}

/// The wait before attempt `attempts + 1`: `base * 2^(attempts - 1)`, capped.
pub fn backoff(policy: &RetryPolicy, attempts: u32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).min(30);
    let factor = 1i32 << doublings;
    policy
        .base
        .checked_mul(factor)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

/// The decision after attempt number `attempts` (1-based) failed at `now`.
pub fn after_failure(
    policy: &RetryPolicy,
    attempts: u32,
    failure: &SendFailure,
    now: DateTime<Utc>,
) -> AfterFailure {
    match failure {
        SendFailure::Permanent(why) => AfterFailure::GiveUp(format!("bounced: {why}")),
        SendFailure::Transient(why) if attempts >= policy.max_attempts => {
            AfterFailure::GiveUp(format!("undeliverable after {attempts} attempts: {why}"))
        }
        SendFailure::Transient(_) => AfterFailure::RetryAt(now + backoff(policy, attempts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let waits: Vec<i64> = (1..=9).map(|n| backoff(&p, n).num_seconds()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(&p, 1000), p.max_delay);
        assert_eq!(backoff(&p, 0).num_seconds(), 30);
    }

    #[test]
    fn transient_failures_retry_until_the_last_attempt() {
        let p = RetryPolicy::default();
        let now: DateTime<Utc> = "2026-01-06T10:00:00Z".parse().unwrap();
        let t = SendFailure::Transient("421 try later".into());
        assert_eq!(
            after_failure(&p, 1, &t, now),
            AfterFailure::RetryAt(now + TimeDelta::seconds(30))
        );
        assert_eq!(
            after_failure(&p, 7, &t, now),
            AfterFailure::RetryAt(now + TimeDelta::seconds(1920))
        );
        assert!(
            matches!(after_failure(&p, 8, &t, now), AfterFailure::GiveUp(why) if why.contains("8 attempts"))
        );
    }

    #[test]
    fn permanent_failures_give_up_at_once() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        let f = SendFailure::Permanent("550 no such user".into());
        assert_eq!(
            after_failure(&p, 1, &f, now),
            AfterFailure::GiveUp("bounced: 550 no such user".into())
        );
    }
}
