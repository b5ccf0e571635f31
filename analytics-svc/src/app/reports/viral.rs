//! The viral loop (docs/api.md): K-factor, loop K, cycle and doubling time and the growth
//! status, over the window and per flow; admins (or a reports:read key) only.

use std::collections::BTreeMap;

use referral_common::{
    ApiResult, Violations,
    auth::{Principal, Scope},
    ids,
};
use referral_proto::{
    analytics::v1::{FlowMetrics, GrowthStatus, MetricsFilter, ViralMetrics},
    common::v1::Flow,
};

use super::{FLOWS, counts, referrers, to_ts_day, total, window};
use crate::{
    domain::metrics::{self, Growth},
    store::{Store, StoreResult, Window},
};

pub async fn get<S: Store>(store: &S, p: &Principal, f: &MetricsFilter) -> ApiResult<ViralMetrics> {
    p.authorize(Scope::ReportsRead, Principal::require_admin)?;
    let mut v = Violations::default();
    let w = window(&mut v, Some(f), ids::now());
    v.into_result()?;
    Ok(report(store, &w).await?)
}

fn growth(g: Growth) -> GrowthStatus {
    match g {
        Growth::Viral => GrowthStatus::Viral,
        Growth::NearViral => GrowthStatus::NearViral,
        Growth::SubViral => GrowthStatus::SubViral,
    }
}

pub async fn report<S: Store>(store: &S, w: &Window) -> StoreResult<ViralMetrics> {
    let rows = store.day_sums(w).await?;
    let all = total(&rows);
    let flows: Vec<Flow> = FLOWS
        .into_iter()
        .filter(|f| w.flow.as_deref().is_none_or(|x| x == f.as_str_name()))
        .collect();
    let mut asked: Vec<Option<&str>> = vec![None];
    asked.extend(flows.iter().map(|f| Some(f.as_str_name())));
    let counted = referrers(store, w, &asked).await?;
    let people = counted[0];
    let mut by_flow = Vec::new();
    let mut flow_k = BTreeMap::new();
    let mut flow_cycle = BTreeMap::new();
    for (flow, n) in flows.into_iter().zip(counted[1..].iter().copied()) {
        let name = flow.as_str_name();
        let sums = total(
            &rows
                .iter()
                .filter(|r| r.flow == name)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let v = metrics::viral(counts(n, &sums));
        let cycle = metrics::mean_days(sums.cycle_seconds, sums.cycle_signups);
        flow_k.insert(name, v.k_factor);
        flow_cycle.insert(name, cycle);
        let mut m = FlowMetrics {
            flow: flow as i32,
            suppressed: metrics::suppressed(n),
            ..Default::default()
        };
        if !m.suppressed {
            m.referrers = n;
            m.invitations = sums.invitations;
            m.signups = sums.signups;
            m.conversions = sums.conversions;
            m.invites_per_referrer = v.invites_per_referrer;
            m.conversion_rate = v.conversion_rate;
            m.k_factor = v.k_factor;
            m.cycle_time_days = cycle;
        }
        by_flow.push(m);
    }
    let mut out = ViralMetrics {
        from: Some(to_ts_day(w.from_day)),
        to: Some(to_ts_day(w.to_day + 1)),
        suppressed: metrics::suppressed(people),
        by_flow,
        ..Default::default()
    };
    if out.suppressed {
        return Ok(out);
    }
    let v = metrics::viral(counts(people, &all));
    let s2c = Flow::SupplierToCouple.as_str_name();
    let c2s = Flow::CoupleToSupplier.as_str_name();
    let k = |f| flow_k.get(f).copied().unwrap_or(0.0);
    let cycle = metrics::cycle_time_days(
        flow_cycle.get(s2c).copied().flatten(),
        flow_cycle.get(c2s).copied().flatten(),
    );
    out.referrers = people;
    out.invitations = all.invitations;
    out.signups = all.signups;
    out.conversions = all.conversions;
    out.invites_per_referrer = v.invites_per_referrer;
    out.conversion_rate = v.conversion_rate;
    out.k_factor = v.k_factor;
    out.loop_k = metrics::loop_k(k(s2c), k(c2s));
    out.cycle_time_days = cycle;
    out.doubling_time_days = metrics::doubling_time_days(cycle, v.k_factor);
    out.growth_status = growth(metrics::growth_status(v.k_factor)) as i32;
    Ok(out)
}
