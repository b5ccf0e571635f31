//! Every metric's formula (docs/api.md, analytics-svc), over plain numbers.

use chrono::{Datelike, NaiveDate};

use super::rollup::STAGES;

/// Any aggregate over fewer than this many distinct people is suppressed.
pub const MIN_PEOPLE: i64 = 5;

/// Whether an aggregate over `people` distinct people must be suppressed.
pub fn suppressed(people: i64) -> bool {
    people < MIN_PEOPLE
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// The counts a K-factor is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub referrers: i64,
    pub invitations: i64,
    pub signups: i64,
    pub conversions: i64,
}

/// invitesPerReferrer, conversionRate and kFactor of some counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viral {
    pub invites_per_referrer: f64,
    pub conversion_rate: f64,
    pub k_factor: f64,
}

/// invitesPerReferrer = invitations / referrers; conversionRate = signups / invitations;
/// kFactor = their product (= signups / referrers).
pub fn viral(c: Counts) -> Viral {
    let invites_per_referrer = ratio(c.invitations as f64, c.referrers as f64);
    let conversion_rate = ratio(c.signups as f64, c.invitations as f64);
    Viral {
        invites_per_referrer,
        conversion_rate,
        k_factor: invites_per_referrer * conversion_rate,
    }
}

/// The two-sided loop: a supplier brings couples, a couple brings suppliers.
pub fn loop_k(k_supplier_to_couple: f64, k_couple_to_supplier: f64) -> f64 {
    k_supplier_to_couple * k_couple_to_supplier
}

/// Mean days from invitation to signup, from summed seconds; absent without signups.
pub fn mean_days(cycle_seconds: i64, signups: i64) -> Option<f64> {
    (signups > 0).then(|| cycle_seconds as f64 / signups as f64 / 86_400.0)
}

/// The loop's cycle time: both halves' mean delays; absent unless both are known.
pub fn cycle_time_days(supplier_to_couple: Option<f64>, couple_to_supplier: Option<f64>) -> Option<f64> {
    Some(supplier_to_couple? + couple_to_supplier?)
}

/// cycleTime × ln 2 / ln K when K > 1 (the loop grows), else absent.
pub fn doubling_time_days(cycle_time_days: Option<f64>, k: f64) -> Option<f64> {
    let cycle = cycle_time_days?;
    (k > 1.0).then(|| cycle * std::f64::consts::LN_2 / k.ln())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    Viral,
    NearViral,
    SubViral,
}

/// VIRAL above 1, NEAR_VIRAL above 0.7, else SUB_VIRAL.
pub fn growth_status(k: f64) -> Growth {
    if k > 1.0 {
        Growth::Viral
    } else if k > 0.7 {
        Growth::NearViral
    } else {
        Growth::SubViral
    }
}

/// One funnel stage: its count and the step rate from the stage before.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub stage: &'static str,
    pub count: i64,
    pub step_rate: f64,
}

/// Stages SENT..RETAINED from the counts of invitations that reached each; step rate =
/// count / previous count (1 for SENT); the bottleneck is the step with the lowest rate
/// (the earliest on a tie), none when nothing was sent.
pub fn funnel(counts: [i64; 8]) -> (Vec<Stage>, Option<&'static str>) {
    let mut stages = Vec::with_capacity(8);
    for (i, name) in STAGES.iter().enumerate() {
        let step_rate = if i == 0 {
            1.0
        } else {
            ratio(counts[i] as f64, counts[i - 1] as f64)
        };
        stages.push(Stage {
            stage: name,
            count: counts[i],
            step_rate,
        });
    }
    let bottleneck = (counts[0] > 0)
        .then(|| {
            stages[1..]
                .iter()
                .fold(None::<&Stage>, |low, s| match low {
                    Some(l) if l.step_rate <= s.step_rate => Some(l),
                    _ => Some(s),
                })
                .map(|s| s.stage)
        })
        .flatten();
    (stages, bottleneck)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Week,
    Month,
}

/// The first day (days since 1970-01-01) of the period holding `day`: the day itself, its
/// ISO week's Monday, or the 1st of its month.
pub fn period_start(day: i64, g: Granularity) -> i64 {
    match g {
        Granularity::Day => day,
        // 1970-01-01 was a Thursday: Monday-based weeks start 3 days after day 0 (mod 7).
        Granularity::Week => day - (day + 3).rem_euclid(7),
        Granularity::Month => {
            let d = date_of(day);
            days_of(NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d))
        }
    }
}

/// How many periods `day`'s period is after `start`'s (0 = the same).
pub fn periods_between(start: i64, day: i64, g: Granularity) -> i64 {
    match g {
        Granularity::Day => day - start,
        Granularity::Week => (period_start(day, g) - period_start(start, g)) / 7,
        Granularity::Month => {
            let (a, b) = (date_of(start), date_of(day));
            i64::from(b.year() - a.year()) * 12 + i64::from(b.month()) - i64::from(a.month())
        }
    }
}

pub fn date_of(day: i64) -> NaiveDate {
    // Rollup days lie within the storable years; beyond chrono's range falls back to the epoch.
    NaiveDate::from_num_days_from_ce_opt(UNIX_EPOCH_CE + day as i32).unwrap_or_default()
}

pub fn days_of(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce() - UNIX_EPOCH_CE)
}

/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const UNIX_EPOCH_CE: i32 = 719_163;

/// A referrer as a super-connector candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Connector {
    pub connections: i64,
    /// Sum over their invitations of the funnel stage reached (0..=6).
    pub stage_sum: i64,
    pub successes: i64,
    pub days_since_active: i64,
}

/// Connections needed to be a super-connector.
pub const MIN_CONNECTIONS: i64 = 20;
/// Recency boost halves its excess every this many days of inactivity.
pub const RECENCY_HALF_LIFE_DAYS: f64 = 30.0;

/// Super-connector scoring: strength of a connection is how far its invitation got (stage /
/// 6: sent 1/6 .. converted 1); the recency boost is 1 + 2^(-days since last invitation /
/// 30), 2 for someone inviting today; score = connections × mean strength × (1 + successes
/// × 0.1) × recency boost.
pub fn connector_score(c: &Connector) -> (f64, f64, f64) {
    let mean_strength = ratio(c.stage_sum as f64, 6.0 * c.connections as f64);
    let recency_boost = 1.0 + 0.5f64.powf(c.days_since_active.max(0) as f64 / RECENCY_HALF_LIFE_DAYS);
    let score = c.connections as f64 * mean_strength * (1.0 + c.successes as f64 * 0.1) * recency_boost;
    (mean_strength, recency_boost, score)
}

/// PLATINUM >= 1000, GOLD >= 500, SILVER >= 200, else BRONZE.
pub fn connector_tier(score: f64) -> &'static str {
    if score >= 1000.0 {
        "PLATINUM"
    } else if score >= 500.0 {
        "GOLD"
    } else if score >= 200.0 {
        "SILVER"
    } else {
        "BRONZE"
    }
}

/// A variant against its control: rate, relative lift and the two-sided p-value of the
/// two-proportion z-test (pooled standard error). Lift and p are 0 and 1 where undefined.
pub fn experiment(sent: i64, signups: i64, control_sent: i64, control_signups: i64) -> (f64, f64, f64) {
    let rate = ratio(signups as f64, sent as f64);
    let control = ratio(control_signups as f64, control_sent as f64);
    let lift = ratio(rate - control, control);
    let (n1, n0) = (sent as f64, control_sent as f64);
    let pooled = ratio((signups + control_signups) as f64, n1 + n0);
    let se = (pooled * (1.0 - pooled) * (ratio(1.0, n1) + ratio(1.0, n0))).sqrt();
    let p_value = if sent == 0 || control_sent == 0 || se == 0.0 {
        1.0
    } else {
        let z = (rate - control) / se;
        libm::erfc(z.abs() / std::f64::consts::SQRT_2)
    };
    (rate, lift, p_value)
}

/// Badges in rank order; a referrer's tier is its highest badge.
pub const BADGES: [&str; 5] = ["BRONZE", "SILVER", "GOLD", "PLATINUM", "DIAMOND"];

/// `badges` (comma-separated, rank order) with `badge` added once.
pub fn add_badge(badges: &str, badge: &str) -> String {
    let mut have: Vec<&str> = badges.split(',').filter(|b| !b.is_empty()).collect();
    if !have.contains(&badge) {
        have.push(badge);
    }
    have.sort_by_key(|b| BADGES.iter().position(|x| x == b).unwrap_or(BADGES.len()));
    have.join(",")
}

/// The highest badge held, '' for none.
pub fn tier_of_badges(badges: &str) -> String {
    badges
        .split(',')
        .filter_map(|b| BADGES.iter().position(|x| *x == b))
        .max()
        .map(|i| BADGES[i].to_string())
        // No known badge: no tier.
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn viral_counts_by_hand() {
        // 4 referrers sent 20 invitations, 6 signed up: 5 invites each, 30%, K = 1.5.
        let v = viral(Counts {
            referrers: 4,
            invitations: 20,
            signups: 6,
            conversions: 2,
        });
        close(v.invites_per_referrer, 5.0);
        close(v.conversion_rate, 0.3);
        close(v.k_factor, 1.5);
        assert_eq!(viral(Counts::default()).k_factor, 0.0);
        close(loop_k(1.5, 0.4), 0.6);
    }

    #[test]
    fn cycle_and_doubling_time_by_hand() {
        // 2 signups 3 and 5 days after their invitations: mean 4 days; other side 2 days.
        let s2c = mean_days(8 * 86_400, 2);
        assert_eq!(s2c, Some(4.0));
        assert_eq!(mean_days(0, 0), None);
        let cycle = cycle_time_days(s2c, Some(2.0));
        assert_eq!(cycle, Some(6.0));
        assert_eq!(cycle_time_days(s2c, None), None);
        // K = 2: doubles every cycle.
        close(doubling_time_days(cycle, 2.0).unwrap(), 6.0);
        // K = 1.5: 6 × ln 2 / ln 1.5 = 6 × 0.693147 / 0.405465 = 10.257067748
        close(doubling_time_days(cycle, 1.5).unwrap(), 10.257_067_748);
        assert_eq!(doubling_time_days(cycle, 1.0), None);
        assert_eq!(doubling_time_days(None, 3.0), None);
    }

    #[test]
    fn growth_status_thresholds() {
        assert_eq!(growth_status(1.01), Growth::Viral);
        assert_eq!(growth_status(1.0), Growth::NearViral);
        assert_eq!(growth_status(0.71), Growth::NearViral);
        assert_eq!(growth_status(0.7), Growth::SubViral);
    }

    #[test]
    fn funnel_step_rates_and_bottleneck_by_hand() {
        let (stages, bottleneck) = funnel([100, 80, 40, 30, 6, 3, 3, 3]);
        let rates: Vec<f64> = stages.iter().map(|s| s.step_rate).collect();
        assert_eq!(rates, vec![1.0, 0.8, 0.5, 0.75, 0.2, 0.5, 1.0, 1.0]);
        assert_eq!(bottleneck, Some("SIGNED_UP"));
        let (_, tie) = funnel([10, 5, 5, 5, 5, 5, 5, 5]);
        assert_eq!(tie, Some("DELIVERED"));
        // The last two stages are stages like the others: a churned base is the bottleneck.
        let (stages, last) = funnel([100, 90, 80, 70, 60, 50, 40, 4]);
        assert_eq!(last, Some("RETAINED"));
        assert_eq!(stages[7].step_rate, 0.1);
        let (_, activation) = funnel([100, 90, 80, 70, 60, 50, 5, 5]);
        assert_eq!(activation, Some("ACTIVATED"));
        let (stages, none) = funnel([0; 8]);
        assert_eq!(none, None);
        assert_eq!(stages[3].step_rate, 0.0);
    }

    #[test]
    fn suppression_under_five_people() {
        assert!(suppressed(4));
        assert!(!suppressed(5));
    }

    #[test]
    fn periods_start_on_mondays_and_firsts() {
        let d = |y, m, dd| days_of(NaiveDate::from_ymd_opt(y, m, dd).unwrap());
        // 2026-11-21 is a Saturday; its week starts Monday 2026-11-16.
        assert_eq!(period_start(d(2026, 11, 21), Granularity::Week), d(2026, 11, 16));
        assert_eq!(period_start(d(2026, 11, 16), Granularity::Week), d(2026, 11, 16));
        assert_eq!(period_start(d(2026, 11, 21), Granularity::Month), d(2026, 11, 1));
        assert_eq!(period_start(0, Granularity::Week), d(1969, 12, 29));
        assert_eq!(
            periods_between(d(2026, 11, 21), d(2026, 11, 23), Granularity::Week),
            1
        );
        assert_eq!(
            periods_between(d(2026, 11, 30), d(2027, 2, 1), Granularity::Month),
            3
        );
        assert_eq!(
            date_of(d(2026, 2, 28)),
            NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
        );
    }

    #[test]
    fn connector_score_by_hand() {
        // 30 connections that all signed up (stage 5): mean strength 5/6; 4 successes;
        // active 30 days ago: boost 1.5. Score = 30 × 5/6 × 1.4 × 1.5 = 52.5.
        let (strength, boost, score) = connector_score(&Connector {
            connections: 30,
            stage_sum: 150,
            successes: 4,
            days_since_active: 30,
        });
        close(strength, 5.0 / 6.0);
        close(boost, 1.5);
        close(score, 52.5);
        assert_eq!(connector_tier(score), "BRONZE");
        assert_eq!(connector_tier(200.0), "SILVER");
        assert_eq!(connector_tier(500.0), "GOLD");
        assert_eq!(connector_tier(1000.0), "PLATINUM");
    }

    #[test]
    fn z_test_by_hand() {
        // Control 100 sent / 10 signups, variant 100 / 20: pooled 0.15,
        // se = sqrt(0.15 × 0.85 × 0.02) = 0.050498, z = 1.98030, p = 0.047670.
        let (rate, lift, p) = experiment(100, 20, 100, 10);
        close(rate, 0.2);
        close(lift, 1.0);
        assert!((p - 0.047_670).abs() < 1e-5, "{p}");
        let (_, lift, p) = experiment(100, 10, 100, 10);
        close(lift, 0.0);
        close(p, 1.0);
        assert_eq!(experiment(0, 0, 100, 10).2, 1.0);
    }

    #[test]
    fn badges_accumulate_once_and_the_tier_is_the_highest() {
        let b = add_badge("", "SILVER");
        let b = add_badge(&b, "BRONZE");
        let b = add_badge(&b, "SILVER");
        assert_eq!(b, "BRONZE,SILVER");
        assert_eq!(tier_of_badges(&b), "SILVER");
        assert_eq!(tier_of_badges(""), "");
    }
}
