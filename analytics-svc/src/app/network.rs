//! A referrer's own referral network (issue #16, `GET /v1/referrers/{id}/network`): the
//! referrer themself or an admin; at most the configured depth; counts per level and the
//! people of level 1 by pseudonym only (`domain::network`).

use referral_common::{ApiResult, Violations, auth::Principal, input, pii::PiiKeys};
use referral_proto::analytics::v1::{ReferrerNetwork, ReferrerNetworkRequest};

use super::reports::MAX_ID_LEN;
use crate::{
    domain::network::{self, FIRST_LEVEL_LIMIT},
    store::Store,
};

pub async fn get<S: Store>(
    store: &S,
    pii: &PiiKeys,
    max_depth: i32,
    p: &Principal,
    r: &ReferrerNetworkRequest,
) -> ApiResult<ReferrerNetwork> {
    let mut v = Violations::default();
    if r.referrer_id.trim().is_empty() {
        v.add("referrerId", "is required");
    } else {
        input::line(&mut v, &r.referrer_id, MAX_ID_LEN, "referrerId");
    }
    let depth = network::depth(r.depth, max_depth).unwrap_or_else(|e| {
        v.add("depth", e);
        0
    });
    v.into_result()?;
    // Members see their own network only; admins (and services) any.
    p.require_self(&r.referrer_id, "referrerId")?;
    // One more than listed tells whether the list was cut.
    let rows = store
        .network(&r.referrer_id, depth, FIRST_LEVEL_LIMIT as i64 + 1)
        .await?;
    let truncated = rows.first_level.len() > FIRST_LEVEL_LIMIT;
    let listed = &rows.first_level[..rows.first_level.len().min(FIRST_LEVEL_LIMIT)];
    Ok(ReferrerNetwork {
        referrer_id: r.referrer_id.clone(),
        depth,
        max_depth,
        levels: network::levels(depth, &rows.levels),
        first_level: network::first_level(pii, listed),
        first_level_truncated: truncated,
    })
}
