//! Per-referrer pacing. Quotas decide *when* an invitation goes out, never *whether* it is
//! accepted: a photographer importing two hundred past clients is the normal case, so the
//! overflow is scheduled into later windows with room.
//!
//! Windows are UTC hour and UTC day buckets. A referrer's recipients live in many time zones
//! and the referrer's own zone is not known, so the only bucket every invitation of one
//! referrer agrees on is UTC's; fixed buckets are also what SQL (`date_trunc`) and Redis
//! counters count cheaply, and they make "10 an hour" mean the same on every replica.

use chrono::{DateTime, NaiveTime, TimeDelta, Timelike, Utc};

api_enum! {
    /// How much a referrer may send; REGULAR until an admin says otherwise.
    #[derive(Default)]
    pub enum ReferrerTier ("referrer tier") {
        #[default]
        Regular => "REGULAR",
        Premium => "PREMIUM",
        SuperConnector => "SUPER_CONNECTOR",
    }
}

/// The free tier (REGULAR, where every supplier and couple starts): a referrer may have at
/// most this many invitations sent per UTC day (docs/api.md, quotas: "REGULAR 10/hour and
/// 50/day"). The default of `QUOTA_REGULAR`, which overrides it.
pub const FREE_TIER_INVITATIONS_PER_DAY: u32 = 50;
/// The free tier's pace within a day: at most this many invitations sent per UTC hour.
pub const FREE_TIER_INVITATIONS_PER_HOUR: u32 = 10;

/// How many invitations one referrer may have sent in one UTC hour and one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub per_hour: u32,
    pub per_day: u32,
}

/// As configured: `hourly/daily`, e.g. `10/50`.
impl std::fmt::Display for QuotaLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.per_hour, self.per_day)
    }
}

/// The quotas of every tier, and the queue size beyond which creation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    pub regular: QuotaLimits,
    pub premium: QuotaLimits,
    pub super_connector: QuotaLimits,
    /// Unsent invitations (PENDING_REVIEW or SCHEDULED) a referrer may have queued before
    /// new ones are refused with RESOURCE_EXHAUSTED; see [`QuotaConfig::queue_is_over_limit`].
    pub max_queued: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            regular: QuotaLimits {
                per_hour: FREE_TIER_INVITATIONS_PER_HOUR,
                per_day: FREE_TIER_INVITATIONS_PER_DAY,
            },
            premium: QuotaLimits {
                per_hour: 20,
                per_day: 100,
            },
            super_connector: QuotaLimits {
                per_hour: 30,
                per_day: 200,
            },
            max_queued: 1000,
        }
    }
}

/// A quota setting that would stop a tier from ever sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {tier} quota must allow at least one invitation per hour and per day")]
pub struct QuotaConfigError {
    pub tier: ReferrerTier,
}

impl QuotaConfig {
    /// The limits of `tier`.
    pub fn limits(&self, tier: ReferrerTier) -> QuotaLimits {
        match tier {
            ReferrerTier::Regular => self.regular,
            ReferrerTier::Premium => self.premium,
            ReferrerTier::SuperConnector => self.super_connector,
        }
    }

    /// Whether a referrer with `queued_unsent` invitations already waiting is refused a new
    /// one. The contract refuses "a referrer with more than `max_queued` unsent invitations
    /// queued", so with the default 1000 the 1001st is still accepted and the 1002nd refused.
    pub fn queue_is_over_limit(&self, queued_unsent: u32) -> bool {
        queued_unsent > self.max_queued
    }

    /// Checks configured quotas at start-up: a zero limit would leave [`place`] searching for
    /// room that never comes.
    pub fn validate(&self) -> Result<(), QuotaConfigError> {
        for tier in ReferrerTier::ALL.iter().copied() {
            let limits = self.limits(tier);
            if limits.per_hour == 0 || limits.per_day == 0 {
                return Err(QuotaConfigError { tier });
            }
        }
        Ok(())
    }
}

/// How many of one referrer's invitations are already placed (scheduled or sent) in a bucket,
/// by their send time, not their creation time.
pub trait QuotaUsage {
    /// Invitations in the UTC hour starting at `hour_start`.
    fn hour_count(&self, hour_start: DateTime<Utc>) -> u32;
    /// Invitations in the UTC day starting at `day_start`.
    fn day_count(&self, day_start: DateTime<Utc>) -> u32;
}

/// Bound on [`place`]'s search: each step moves to a later hour or day, and 400 days of
/// hours is far more than any valid quota needs.
const MAX_PLACEMENT_STEPS: usize = 400 * 25;

/// The send time of a new invitation: the first instant at or after `candidate` that the
/// timing rule allows (`allowed(t) == t`) and whose UTC hour and UTC day both have room.
///
/// `allowed` maps an instant to the first allowed instant at or after it (for instance
/// [`first_allowed_instant`](super::timing::first_allowed_instant) for the recipient). When a
/// bucket is full the search jumps to the start of the next bucket and applies `allowed`
/// again. The search is bounded; with limits that [`QuotaConfig::validate`] refuses it gives
/// up and returns the instant it reached.
pub fn place(
    candidate: DateTime<Utc>,
    limits: QuotaLimits,
    usage: &impl QuotaUsage,
    allowed: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
) -> DateTime<Utc> {
    // Never step backwards, whatever `allowed` does.
    let allowed_from = |t: DateTime<Utc>| allowed(t).max(t);
    let mut at = allowed_from(candidate);
    for _ in 0..MAX_PLACEMENT_STEPS {
        let day = day_bucket(at);
        if usage.day_count(day) >= limits.per_day {
            at = allowed_from(day + TimeDelta::days(1));
            continue;
        }
        let hour = hour_bucket(at);
        if usage.hour_count(hour) >= limits.per_hour {
            at = allowed_from(hour + TimeDelta::hours(1));
            continue;
        }
        return at;
    }
    at
}

/// Start of the UTC hour containing `t`.
pub fn hour_bucket(t: DateTime<Utc>) -> DateTime<Utc> {
    day_bucket(t) + TimeDelta::hours(i64::from(t.hour()))
}

/// Start of the UTC day containing `t`.
pub fn day_bucket(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_time(NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono_tz::Europe::London;

    use super::super::timing::{SendRules, first_allowed_instant, is_allowed};
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// In-memory counts of placed invitations, as the store would report them.
    #[derive(Default)]
    struct Placed {
        hours: HashMap<DateTime<Utc>, u32>,
        days: HashMap<DateTime<Utc>, u32>,
    }

    impl Placed {
        fn record(&mut self, at: DateTime<Utc>) {
            *self.hours.entry(hour_bucket(at)).or_default() += 1;
            *self.days.entry(day_bucket(at)).or_default() += 1;
        }
    }

    impl QuotaUsage for Placed {
        fn hour_count(&self, hour_start: DateTime<Utc>) -> u32 {
            self.hours.get(&hour_start).copied().unwrap_or(0)
        }
        fn day_count(&self, day_start: DateTime<Utc>) -> u32 {
            self.days.get(&day_start).copied().unwrap_or(0)
        }
    }

    fn anytime(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }

    #[test]
    fn buckets_truncate_to_the_utc_hour_and_day() {
        let t = utc("2024-06-11T13:47:12.5Z");
        assert_eq!(hour_bucket(t), utc("2024-06-11T13:00:00Z"));
        assert_eq!(day_bucket(t), utc("2024-06-11T00:00:00Z"));
        let midnight = utc("2024-06-11T00:00:00Z");
        assert_eq!(hour_bucket(midnight), midnight);
        assert_eq!(day_bucket(midnight), midnight);
    }

    #[test]
    fn default_quotas_match_the_contract() {
        let config = QuotaConfig::default();
        let pair = |tier| {
            let l = config.limits(tier);
            (l.per_hour, l.per_day)
        };
        // REGULAR, the free tier: the_free_tier_sends_at_most_50_invitations_a_day.
        assert_eq!(config.limits(ReferrerTier::Regular).per_hour, 10);
        assert_eq!(pair(ReferrerTier::Premium), (20, 100));
        assert_eq!(pair(ReferrerTier::SuperConnector), (30, 200));
        assert_eq!(config.max_queued, 1000);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(ReferrerTier::default(), ReferrerTier::Regular);
    }

    #[test]
    fn tier_names() {
        assert_eq!(ReferrerTier::SuperConnector.as_str(), "SUPER_CONNECTOR");
        assert_eq!(ReferrerTier::parse("PREMIUM"), Ok(ReferrerTier::Premium));
        assert!(ReferrerTier::parse("GOLD").is_err());
    }

    #[test]
    fn only_more_than_max_queued_refuses() {
        let config = QuotaConfig::default();
        assert!(!config.queue_is_over_limit(0));
        assert!(!config.queue_is_over_limit(1000));
        assert!(config.queue_is_over_limit(1001));
    }

    #[test]
    fn validate_refuses_zero_limits() {
        let mut config = QuotaConfig::default();
        config.premium.per_hour = 0;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "the PREMIUM quota must allow at least one invitation per hour and per day"
        );
    }

    #[test]
    fn with_room_the_candidate_itself_is_used() {
        let limits = QuotaLimits {
            per_hour: 10,
            per_day: 50,
        };
        let t = utc("2024-06-11T10:17:00Z");
        assert_eq!(place(t, limits, &Placed::default(), anytime), t);
    }

    #[test]
    fn a_full_hour_moves_to_the_next_hour_start() {
        let limits = QuotaLimits {
            per_hour: 2,
            per_day: 50,
        };
        let mut placed = Placed::default();
        placed.record(utc("2024-06-11T10:05:00Z"));
        placed.record(utc("2024-06-11T10:50:00Z"));
        placed.record(utc("2024-06-11T11:00:00Z"));
        placed.record(utc("2024-06-11T11:30:00Z"));
        assert_eq!(
            place(utc("2024-06-11T10:17:00Z"), limits, &placed, anytime),
            utc("2024-06-11T12:00:00Z")
        );
    }

    #[test]
    fn a_full_day_moves_to_the_next_days_first_allowed_instant() {
        let limits = QuotaLimits {
            per_hour: 10,
            per_day: 1,
        };
        let mut placed = Placed::default();
        placed.record(utc("2024-06-11T09:00:00Z"));
        let allowed = |t| first_allowed_instant(t, London, None, &SendRules::default());
        // Next UTC day starts at 01:00 BST (quiet) -> 08:00 BST.
        assert_eq!(
            place(utc("2024-06-11T15:00:00Z"), limits, &placed, allowed),
            utc("2024-06-12T07:00:00Z")
        );
    }

    #[test]
    fn the_candidate_is_first_moved_out_of_blackouts() {
        let limits = QuotaLimits {
            per_hour: 10,
            per_day: 50,
        };
        let allowed = |t| first_allowed_instant(t, London, None, &SendRules::default());
        // Saturday 10:00 BST -> 18:00 BST.
        assert_eq!(
            place(utc("2024-06-15T09:00:00Z"), limits, &Placed::default(), allowed),
            utc("2024-06-15T17:00:00Z")
        );
    }

    #[test]
    fn zero_limits_terminate() {
        let limits = QuotaLimits {
            per_hour: 0,
            per_day: 0,
        };
        let t = utc("2024-06-11T10:00:00Z");
        assert!(place(t, limits, &Placed::default(), anytime) > t + TimeDelta::days(400));
    }

    #[test]
    fn an_allowed_rule_that_goes_backwards_cannot_stall_placement() {
        let limits = QuotaLimits {
            per_hour: 1,
            per_day: 50,
        };
        let mut placed = Placed::default();
        placed.record(utc("2024-06-11T10:00:00Z"));
        let backwards = |t: DateTime<Utc>| t - TimeDelta::hours(5);
        assert_eq!(
            place(utc("2024-06-11T10:30:00Z"), limits, &placed, backwards),
            utc("2024-06-11T11:00:00Z")
        );
    }

    /// The newcomer's rule: "a supplier may send at most 50 invitations a day on the free
    /// tier" (and 10 an hour). The 51st of one day waits for the next UTC day.
    #[test]
    fn the_free_tier_sends_at_most_50_invitations_a_day() {
        let per_day = 50;
        let free = QuotaConfig::default().limits(ReferrerTier::default());
        assert_eq!(free.per_day, per_day, "FREE_TIER_INVITATIONS_PER_DAY");
        let monday = utc("2024-06-10T00:00:00Z");
        let mut placed = Placed::default();
        let times: Vec<_> = (0..=per_day)
            .map(|_| {
                let at = place(monday, free, &placed, anytime);
                placed.record(at);
                at
            })
            .collect();
        assert_eq!(placed.days[&monday], per_day);
        assert!(placed.hours.values().all(|n| *n <= free.per_hour));
        assert_eq!(times[per_day as usize], utc("2024-06-11T00:00:00Z"));
    }

    /// A photographer importing 200 past clients at once on Friday 2024-06-14 10:17 BST.
    #[test]
    fn two_hundred_regular_invitations_land_ten_an_hour_fifty_a_day_outside_blackouts() {
        let rules = SendRules::default();
        let limits = QuotaLimits {
            per_hour: 10,
            per_day: 50,
        };
        let allowed = |t| first_allowed_instant(t, London, None, &rules);
        let created = utc("2024-06-14T09:17:00Z");
        let mut placed = Placed::default();
        let mut times = Vec::new();
        for _ in 0..200 {
            let at = place(created, limits, &placed, allowed);
            placed.record(at);
            times.push(at);
        }

        assert!(times.windows(2).all(|w| w[0] <= w[1]), "placed in order");
        assert!(times.iter().all(|t| is_allowed(*t, London, None, &rules)));
        assert!(placed.hours.values().all(|n| *n == 10));
        assert!(placed.days.values().all(|n| *n == 50));

        let hours_of = |day: &str| {
            let mut hours: Vec<u32> = placed
                .hours
                .keys()
                .filter(|h| day_bucket(**h) == utc(&format!("{day}T00:00:00Z")))
                .map(|h| h.hour())
                .collect();
            hours.sort();
            hours
        };
        // Friday: from 10:17 BST, five hours fill the day's 50.
        assert_eq!(hours_of("2024-06-14"), [9, 10, 11, 12, 13]);
        assert_eq!(times[0], created);
        assert_eq!(times[9], created);
        assert_eq!(times[10], utc("2024-06-14T10:00:00Z"));
        // Saturday: 08:00 BST, then nothing until 18:00 BST, and the evening to 22:00 BST.
        assert_eq!(hours_of("2024-06-15"), [7, 17, 18, 19, 20]);
        // Sunday and Monday: from 08:00 BST.
        assert_eq!(hours_of("2024-06-16"), [7, 8, 9, 10, 11]);
        assert_eq!(hours_of("2024-06-17"), [7, 8, 9, 10, 11]);
        assert_eq!(times[199], utc("2024-06-17T11:00:00Z"));
    }
}
