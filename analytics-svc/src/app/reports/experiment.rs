//! An experiment's results (docs/api.md): each variant of a template's signup rate, lift
//! over the control and p-value; admins only.

use referral_common::{
    ApiResult, Violations,
    auth::{Principal, Scope},
    ids, input,
};
use referral_proto::analytics::v1::{ExperimentRequest, ExperimentResults, VariantResult};

use super::{MAX_ID_LEN, window};
use crate::{
    domain::metrics,
    store::{Store, StoreResult, Window},
};

pub async fn get<S: Store>(store: &S, p: &Principal, r: &ExperimentRequest) -> ApiResult<ExperimentResults> {
    p.authorize(Scope::ReportsRead, Principal::require_admin)?;
    let mut v = Violations::default();
    v.require(&r.template_id, "templateId");
    input::line(&mut v, &r.template_id, MAX_ID_LEN, "templateId");
    let w = window(&mut v, r.filter.as_ref(), ids::now());
    v.into_result()?;
    Ok(report(store, &r.template_id, &w).await?)
}

/// The control variant's name when a template has one; otherwise the first variant is.
pub const CONTROL: &str = "control";

pub async fn report<S: Store>(store: &S, template_id: &str, w: &Window) -> StoreResult<ExperimentResults> {
    let rows = store.experiment(template_id, w).await?;
    let control = rows
        .iter()
        .position(|(v, _, _)| v.eq_ignore_ascii_case(CONTROL))
        .unwrap_or(0);
    // No variant sent at all: the control sent nothing and had no signups.
    let (c_sent, c_signups) = rows.get(control).map(|r| (r.1, r.2)).unwrap_or_default();
    let variants = rows
        .iter()
        .enumerate()
        .map(|(i, (variant, sent, signups))| {
            let suppressed = metrics::suppressed(*sent);
            let mut r = VariantResult {
                variant: variant.clone(),
                control: i == control,
                suppressed,
                p_value: 1.0,
                ..Default::default()
            };
            if !suppressed {
                let (rate, lift, p) = if i == control || metrics::suppressed(c_sent) {
                    (metrics::ratio(*signups as f64, *sent as f64), 0.0, 1.0)
                } else {
                    metrics::experiment(*sent, *signups, c_sent, c_signups)
                };
                r.sent = *sent;
                r.signups = *signups;
                r.rate = rate;
                r.lift = lift;
                r.p_value = p;
            }
            r
        })
        .collect();
    Ok(ExperimentResults {
        template_id: template_id.into(),
        variants,
    })
}
