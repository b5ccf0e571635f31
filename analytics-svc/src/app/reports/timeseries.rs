//! A time series (docs/api.md) of invitations, signups, conversions, revenue or K-factor by
//! day, week or month; admins only.

use referral_common::{
    ApiResult, Violations,
    auth::{Principal, Scope},
    ids,
};
use referral_proto::analytics::v1::{Timeseries, TimeseriesPoint, TimeseriesRequest, timeseries_request};

use super::{counts, to_ts_day, total, window};
use crate::{
    domain::{
        metrics::{self, Granularity},
        scope::{distinct_in, scope_of_filter},
    },
    store::{Store, StoreResult, Window},
};

pub async fn get<S: Store>(store: &S, p: &Principal, r: &TimeseriesRequest) -> ApiResult<Timeseries> {
    p.authorize(Scope::ReportsRead, Principal::require_admin)?;
    let mut v = Violations::default();
    let w = window(&mut v, r.filter.as_ref(), ids::now());
    let metric = if r.metric.is_empty() {
        "invitations"
    } else {
        r.metric.as_str()
    };
    v.check(
        !SERIES.contains(&metric),
        "metric",
        format!("must be one of {}", SERIES.join(", ")),
    );
    use timeseries_request::Granularity as G;
    let g = match G::try_from(r.granularity) {
        Ok(G::Unspecified | G::Day) => Granularity::Day,
        Ok(G::Week) => Granularity::Week,
        Ok(G::Month) => Granularity::Month,
        Err(_) => {
            v.add("granularity", "must be DAY, WEEK or MONTH");
            Granularity::Day
        }
    };
    v.into_result()?;
    Ok(report(store, &w, g, metric).await?)
}

/// The metrics a time series can show.
pub const SERIES: [&str; 5] = ["invitations", "signups", "conversions", "revenue", "k_factor"];

pub async fn report<S: Store>(
    store: &S,
    w: &Window,
    g: Granularity,
    metric: &str,
) -> StoreResult<Timeseries> {
    let rows = store.day_sums(w).await?;
    let gaps = match scope_of_filter(
        w.flow.as_deref(),
        w.referrer_kind.as_deref(),
        w.vendor_type.as_deref(),
    ) {
        Some(scope) => store.gap_rows(&scope, w.from_day, w.to_day).await?,
        None => vec![],
    };
    let mut points = Vec::new();
    let mut start = metrics::period_start(w.from_day, g);
    while start <= w.to_day {
        let next = next_period(start, g);
        let (from, to) = (start.max(w.from_day), (next - 1).min(w.to_day));
        let sums = total(
            &rows
                .iter()
                .filter(|r| (from..=to).contains(&r.day))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let inside: Vec<_> = gaps
            .iter()
            .copied()
            .filter(|r| (from..=to).contains(&r.0))
            .collect();
        let people = distinct_in(&inside, from, to);
        let suppressed = metrics::suppressed(people);
        let value = match metric {
            _ if suppressed => 0.0,
            "signups" => sums.signups as f64,
            "conversions" => sums.conversions as f64,
            "revenue" => sums.revenue_minor as f64,
            "k_factor" => metrics::viral(counts(people, &sums)).k_factor,
            _ => sums.invitations as f64,
        };
        points.push(TimeseriesPoint {
            period_start: Some(to_ts_day(start)),
            value,
            suppressed,
        });
        start = next;
    }
    Ok(Timeseries {
        metric: metric.into(),
        points,
    })
}

/// The first day of the period after the one starting on `start`.
fn next_period(start: i64, g: Granularity) -> i64 {
    match g {
        Granularity::Day => start + 1,
        Granularity::Week => start + 7,
        Granularity::Month => metrics::period_start(start + 31, g),
    }
}
