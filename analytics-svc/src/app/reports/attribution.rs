//! Attribution (docs/api.md): revenue and conversions credited to referrers and channels
//! under a model (FIRST_TOUCH, LAST_TOUCH, LINEAR, TIME_DECAY, POSITION_BASED); admins only.

use referral_common::{
    ApiError, ApiResult, Violations,
    auth::{Principal, Scope},
    ids,
};
use referral_proto::{
    analytics::v1::{AttributionReport, AttributionRequest, CreditedChannel, CreditedReferrer},
    common::v1::{AttributionModel, Money},
};

use super::window;
use crate::{
    domain::{attribution::Model, metrics},
    store::{CreditKey, Store, StoreResult, Window},
};

pub async fn get<S: Store>(store: &S, p: &Principal, r: &AttributionRequest) -> ApiResult<AttributionReport> {
    p.authorize(Scope::ReportsRead, Principal::require_admin)?;
    let mut v = Violations::default();
    let w = window(&mut v, r.filter.as_ref(), ids::now());
    // LAST_TOUCH when none is named.
    let api = match AttributionModel::try_from(r.model) {
        Ok(AttributionModel::Unspecified) => AttributionModel::LastTouch,
        Ok(m) => m,
        Err(_) => {
            v.add(
                "model",
                "must be FIRST_TOUCH, LAST_TOUCH, LINEAR, TIME_DECAY or POSITION_BASED",
            );
            AttributionModel::LastTouch
        }
    };
    v.into_result()?;
    let model =
        Model::parse(api.as_str_name()).ok_or_else(|| ApiError::invalid("model", "is not supported"))?;
    Ok(report(store, &w, model, api).await?)
}

pub async fn report<S: Store>(
    store: &S,
    w: &Window,
    model: Model,
    api: AttributionModel,
) -> StoreResult<AttributionReport> {
    let by_referrer = store.credits(model.as_str(), CreditKey::Referrer, w).await?;
    let people = by_referrer
        .iter()
        .map(|c| &c.key)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as i64;
    let mut out = AttributionReport {
        model: api as i32,
        suppressed: metrics::suppressed(people),
        ..Default::default()
    };
    if out.suppressed {
        return Ok(out);
    }
    let money = |minor: i64, currency: &str| Money {
        amount_minor: minor,
        currency: currency.into(),
    };
    out.by_referrer = by_referrer
        .iter()
        .map(|c| CreditedReferrer {
            referrer_id: c.key.clone(),
            revenue: Some(money(c.revenue_minor, &c.currency)),
            conversions: c.conversions,
        })
        .collect();
    out.by_channel = store
        .credits(model.as_str(), CreditKey::Channel, w)
        .await?
        .into_iter()
        .map(|c| CreditedChannel {
            channel: c.key,
            revenue: Some(money(c.revenue_minor, &c.currency)),
            conversions: c.conversions,
        })
        .collect();
    Ok(out)
}
