//! Super-connectors (docs/api.md): referrers ranked by connections, their strength, successes
//! and recency, with a tier and second-order reach; admins only.

use referral_common::{
    ApiResult, Violations,
    auth::{Principal, Scope},
    ids,
};
use referral_proto::analytics::v1::{SuperConnector, SuperConnectors, SuperConnectorsRequest};

use super::{kind_of, limit};
use crate::{
    domain::{day_of, metrics},
    store::{Store, StoreResult},
};

pub async fn get<S: Store>(
    store: &S,
    p: &Principal,
    r: &SuperConnectorsRequest,
) -> ApiResult<SuperConnectors> {
    p.authorize(Scope::ReportsRead, Principal::require_admin)?;
    let mut v = Violations::default();
    let n = limit(&mut v, r.limit);
    v.into_result()?;
    Ok(report(store, day_of(ids::now()), n as usize).await?)
}

pub async fn report<S: Store>(store: &S, today: i64, limit: usize) -> StoreResult<SuperConnectors> {
    let mut connectors: Vec<SuperConnector> = store
        .connectors(metrics::MIN_CONNECTIONS)
        .await?
        .into_iter()
        .map(|r| {
            let (mean_strength, recency_boost, score) = metrics::connector_score(&metrics::Connector {
                connections: r.invitations,
                stage_sum: r.stage_sum,
                successes: r.conversions,
                days_since_active: today - r.last_day,
            });
            SuperConnector {
                referrer_kind: kind_of(&r.referrer_kind) as i32,
                connections: r.invitations,
                mean_strength,
                successes: r.conversions,
                recency_boost,
                score,
                tier: metrics::connector_tier(score).into(),
                second_order_reach: r.second_order_reach,
                referrer_id: r.referrer_id,
            }
        })
        .collect();
    connectors.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.referrer_id.cmp(&b.referrer_id))
    });
    connectors.truncate(limit);
    Ok(SuperConnectors { connectors })
}
