//! The reports, one module each: authorization and the request checked, then each metric
//! assembled from rollup rows and the formulas in `domain::metrics`: the store
//! answers sums, this module turns them into the API's messages (suppressing any aggregate
//! over fewer than 5 people). What "people" means per report:
//! - viral, funnel, time series, cohorts: the distinct referrers behind the numbers (a
//!   referrer's own funnel: the people it invited, one per invitation);
//! - attribution and leaderboards: the referrers listed;
//! - the funnel's RETAINED and churn: under the funnel's own rule (its referrers);
//! - experiments: the people a variant was sent to.

pub mod attribution;
pub mod cohorts;
pub mod experiment;
pub mod funnel;
pub mod leaderboard;
pub mod super_connectors;
pub mod timeseries;
pub mod viral;

// Each report's computation over a checked window, by the report's name.
pub use attribution::report as attribution;
pub use cohorts::report as cohorts;
pub use experiment::report as experiment;
pub use funnel::report as funnel;
pub use leaderboard::{Board, report as leaderboard};
pub use super_connectors::report as super_connectors;
pub use timeseries::report as timeseries;
pub use viral::report as viral;

use chrono::{DateTime, Duration, Utc};
use referral_common::{Violations, ids::from_ts};
use referral_proto::{
    analytics::v1::MetricsFilter,
    common::v1::{Flow, PartyKind, VendorType},
};

use crate::{
    domain::{DAY_SECONDS, day_of, metrics::Counts, scope::scope_of_filter},
    store::{DaySums, Store, StoreResult, Window},
};

/// The default window: the last 30 days.
const DEFAULT_WINDOW_DAYS: i64 = 30;
/// The longest window a query may ask for (ten years).
const MAX_WINDOW_DAYS: i64 = 3660;
const DEFAULT_LIMIT: i32 = 10;
const MAX_LIMIT: i32 = 100;
/// The longest id a request may name.
pub(crate) const MAX_ID_LEN: usize = 128;

pub const FLOWS: [Flow; 4] = [
    Flow::SupplierToCouple,
    Flow::CoupleToSupplier,
    Flow::SupplierToSupplier,
    Flow::CoupleToCouple,
];

/// Distinct referrers with an invitation in the window, exactly, for the window's filters
/// and for each flow in `flows` instead of the window's own (`None`: the window's flow).
pub(super) async fn referrers<S: Store>(
    store: &S,
    w: &Window,
    flows: &[Option<&str>],
) -> StoreResult<Vec<i64>> {
    let scopes: Vec<Option<String>> = flows
        .iter()
        .map(|f| {
            scope_of_filter(
                f.or(w.flow.as_deref()),
                w.referrer_kind.as_deref(),
                w.vendor_type.as_deref(),
            )
        })
        .collect();
    let wanted: Vec<String> = scopes.iter().flatten().cloned().collect();
    let counts = store.distinct_referrers(&wanted, w.from_day, w.to_day).await?;
    Ok(scopes
        .iter()
        .map(|s| {
            s.as_ref()
                .and_then(|s| counts.iter().find(|(c, _)| c == s).map(|(_, n)| *n))
                .unwrap_or(0)
        })
        .collect())
}

pub(super) fn total(rows: &[DaySums]) -> DaySums {
    let mut t = DaySums::default();
    rows.iter().for_each(|r| t.add(r));
    t
}

pub(super) fn counts(referrers: i64, s: &DaySums) -> Counts {
    Counts {
        referrers,
        invitations: s.invitations,
        signups: s.signups,
        conversions: s.conversions,
    }
}

pub fn to_ts_day(day: i64) -> referral_proto::Timestamp {
    referral_proto::Timestamp {
        seconds: day * DAY_SECONDS,
        nanos: 0,
    }
}

pub(super) fn kind_of(name: &str) -> PartyKind {
    PartyKind::from_str_name(name).unwrap_or(PartyKind::Unspecified)
}

/// A metrics filter checked, as a window of whole UTC days `[from, to)` and dimensions.
pub fn window(v: &mut Violations, f: Option<&MetricsFilter>, now: DateTime<Utc>) -> Window {
    // No filter is the empty filter: the last 30 days, every dimension.
    let f = f.cloned().unwrap_or_default();
    let instant = |v: &mut Violations, ts: Option<&referral_proto::Timestamp>, field: &str| {
        let t = ts.map(from_ts);
        if matches!(t, Some(None)) {
            v.add(field, "is not a valid timestamp");
        }
        t.flatten()
    };
    let to = instant(v, f.to.as_ref(), "to").unwrap_or(now);
    // Checked: an instant at the edge of chrono's range must not panic.
    let before = |t: DateTime<Utc>, d: Duration| t.checked_sub_signed(d).unwrap_or(t);
    let from = instant(v, f.from.as_ref(), "from").unwrap_or(before(to, Duration::days(DEFAULT_WINDOW_DAYS)));
    v.check(from >= to, "from", "must be before to");
    v.check(
        to - from > Duration::days(MAX_WINDOW_DAYS),
        "from",
        format!("the window may span at most {MAX_WINDOW_DAYS} days"),
    );
    let from_day = day_of(from);
    Window {
        from_day,
        // `to` is exclusive: an instant at midnight ends the day before.
        to_day: day_of(before(to, Duration::microseconds(1))).max(from_day),
        flow: enum_name(v, f.flow, "flow", |x: Flow| x.as_str_name()),
        referrer_kind: enum_name(v, f.referrer_kind, "referrerKind", |x: PartyKind| x.as_str_name()),
        vendor_type: enum_name(v, f.vendor_type, "vendorType", |x: VendorType| x.as_str_name()),
    }
}

/// An optional enum filter by its API name; unspecified or unknown values name the field.
pub(super) fn enum_name<E: TryFrom<i32>>(
    v: &mut Violations,
    value: Option<i32>,
    field: &str,
    name: impl Fn(E) -> &'static str,
) -> Option<String> {
    let value = value?;
    match E::try_from(value).map(name) {
        Ok(n) if value != 0 => Some(n.to_string()),
        _ => {
            v.add(field, "must be one of the listed values");
            None
        }
    }
}

pub(super) fn limit(v: &mut Violations, limit: i32) -> i32 {
    v.check(
        !(0..=MAX_LIMIT).contains(&limit),
        "limit",
        format!("must be between 1 and {MAX_LIMIT}"),
    );
    if limit == 0 {
        DEFAULT_LIMIT
    } else {
        limit.clamp(1, MAX_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use referral_proto::common::v1::Flow;

    use referral_common::ids;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_default_to_the_last_30_days_and_bad_filters_name_their_field() {
        let now = at("2026-11-21T15:00:00Z");
        let mut v = Violations::default();
        let w = window(&mut v, None, now);
        assert!(v.is_empty());
        assert_eq!(w.to_day - w.from_day, 30);
        assert_eq!(w.to_day, day_of(now));
        // `to` at midnight ends the day before.
        let f = MetricsFilter {
            from: Some(ids::to_ts(at("2026-11-01T00:00:00Z"))),
            to: Some(ids::to_ts(at("2026-11-08T00:00:00Z"))),
            flow: Some(Flow::CoupleToCouple as i32),
            ..Default::default()
        };
        let w = window(&mut v, Some(&f), now);
        assert!(v.is_empty());
        assert_eq!(
            (w.from_day, w.to_day),
            (
                day_of(at("2026-11-01T00:00:00Z")),
                day_of(at("2026-11-07T12:00:00Z"))
            )
        );
        assert_eq!(w.flow.as_deref(), Some("COUPLE_TO_COUPLE"));
        let bad = MetricsFilter {
            from: Some(ids::to_ts(at("2026-11-08T00:00:00Z"))),
            to: Some(ids::to_ts(at("2026-11-01T00:00:00Z"))),
            flow: Some(0),
            vendor_type: Some(99),
            ..Default::default()
        };
        let mut v = Violations::default();
        window(&mut v, Some(&bad), now);
        let fields: Vec<&str> = v.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["from", "flow", "vendorType"]);
        let far = MetricsFilter {
            from: Some(referral_proto::Timestamp {
                seconds: -8_000_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let mut v = Violations::default();
        window(&mut v, Some(&far), now);
        assert!(!v.is_empty(), "out of range or too long, never a panic");
    }
}
