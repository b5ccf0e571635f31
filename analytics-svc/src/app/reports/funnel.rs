//! The funnel (docs/api.md): SENT to RETAINED with step rates, the bottleneck and churn,
//! overall (admins) or of one referrer (itself).

use referral_common::{
    ApiResult, Violations,
    auth::{Principal, Scope},
    ids, input,
};
use referral_proto::analytics::v1::{Funnel, FunnelRequest, FunnelStage};

use super::{MAX_ID_LEN, referrers, total, window};
use crate::{
    domain::metrics,
    store::{Store, StoreResult, Window},
};

pub async fn get<S: Store>(store: &S, p: &Principal, r: &FunnelRequest) -> ApiResult<Funnel> {
    let mut v = Violations::default();
    input::line(&mut v, &r.referrer_id, MAX_ID_LEN, "referrerId");
    let w = window(&mut v, r.filter.as_ref(), ids::now());
    v.into_result()?;
    if r.referrer_id.is_empty() {
        p.authorize(Scope::ReportsRead, Principal::require_admin)?;
    } else {
        p.authorize(Scope::ReportsRead, |p| {
            p.require_self(&r.referrer_id, "referrerId")
        })?;
    }
    Ok(report(store, &w, &r.referrer_id).await?)
}

pub async fn report<S: Store>(store: &S, w: &Window, referrer_id: &str) -> StoreResult<Funnel> {
    let (rows, people) = if referrer_id.is_empty() {
        (store.day_sums(w).await?, None)
    } else {
        (store.referrer_day_sums(referrer_id, w).await?, Some(()))
    };
    let all = total(&rows);
    let people = match people {
        // A referrer's own funnel is over the people it invited.
        Some(()) => all.invitations,
        None => referrers(store, w, &[None]).await?[0],
    };
    if metrics::suppressed(people) {
        return Ok(Funnel {
            suppressed: true,
            ..Default::default()
        });
    }
    // RETAINED: ACTIVATED less those whose referee churned by the window's last day.
    let churned = store
        .churned((!referrer_id.is_empty()).then_some(referrer_id), w)
        .await?;
    let [sent, delivered, opened, clicked, signed_up, converted, activated] = all.stages();
    let retained = (activated - churned).max(0);
    let (stages, bottleneck) = metrics::funnel([
        sent, delivered, opened, clicked, signed_up, converted, activated, retained,
    ]);
    Ok(Funnel {
        suppressed: false,
        churned,
        churn_rate: metrics::ratio(churned as f64, activated as f64),
        stages: stages
            .into_iter()
            .map(|s| FunnelStage {
                stage: s.stage.into(),
                count: s.count,
                step_rate: s.step_rate,
            })
            .collect(),
        // No stage loses anyone: no bottleneck is named.
        bottleneck: bottleneck.unwrap_or_default().into(),
    })
}
