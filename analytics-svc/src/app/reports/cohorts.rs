//! Cohorts (docs/api.md): referrers by the week or month of their first invitation, with
//! cumulative signups and conversions per period after it; admins only.

use std::collections::BTreeMap;

use referral_common::{
    ApiResult, Violations,
    auth::{Principal, Scope},
    ids,
};
use referral_proto::analytics::v1::{Cohort, CohortPeriod, Cohorts, CohortsRequest, cohorts_request};

use super::{to_ts_day, window};
use crate::{
    domain::{
        metrics::{self, Granularity},
        scope::scope_of_filter,
    },
    store::{Store, StoreResult, Window},
};

pub async fn get<S: Store>(store: &S, p: &Principal, r: &CohortsRequest) -> ApiResult<Cohorts> {
    p.authorize(Scope::ReportsRead, Principal::require_admin)?;
    let mut v = Violations::default();
    let w = window(&mut v, r.filter.as_ref(), ids::now());
    use cohorts_request::Granularity as G;
    let g = match G::try_from(r.granularity) {
        Ok(G::Unspecified | G::Week) => Granularity::Week,
        Ok(G::Month) => Granularity::Month,
        Err(_) => {
            v.add("granularity", "must be WEEK or MONTH");
            Granularity::Week
        }
    };
    v.into_result()?;
    Ok(report(store, &w, g).await?)
}

pub async fn report<S: Store>(store: &S, w: &Window, g: Granularity) -> StoreResult<Cohorts> {
    let Some(scope) = scope_of_filter(
        w.flow.as_deref(),
        w.referrer_kind.as_deref(),
        w.vendor_type.as_deref(),
    ) else {
        return Ok(Cohorts::default());
    };
    let rows = store.cohort_rows(&scope, w).await?;
    let mut sizes: BTreeMap<i64, i64> = BTreeMap::new();
    for (first, n) in &rows.sizes {
        *sizes.entry(metrics::period_start(*first, g)).or_default() += n;
    }
    // (cohort start, offset) -> (signups, conversions)
    let mut outcomes: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (first, day, s, c) in &rows.outcomes {
        let start = metrics::period_start(*first, g);
        let e = outcomes
            .entry((start, metrics::periods_between(start, *day, g)))
            .or_default();
        e.0 += s;
        e.1 += c;
    }
    let last = metrics::period_start(w.to_day, g);
    let cohorts = sizes
        .into_iter()
        .map(|(start, n)| {
            let suppressed = metrics::suppressed(n);
            let mut periods = Vec::new();
            if !suppressed {
                let (mut s, mut c) = (0, 0);
                for offset in 0..=metrics::periods_between(start, last, g) {
                    // A period with no outcome row had none: zero signups and conversions.
                    let (ds, dc) = outcomes.get(&(start, offset)).copied().unwrap_or_default();
                    s += ds;
                    c += dc;
                    periods.push(CohortPeriod {
                        offset: offset as i32,
                        cumulative_signups: s,
                        cumulative_conversions: c,
                    });
                }
            }
            Cohort {
                period_start: Some(to_ts_day(start)),
                referrers: if suppressed { 0 } else { n },
                suppressed,
                periods,
            }
        })
        .collect();
    Ok(Cohorts { cohorts })
}
