//! Payouts: a member pays out its whole eligible balance once (audited, PayoutPaid in the
//! outbox), and reads its own payouts.

use referral_common::{
    ApiError, ApiResult,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids,
};
use referral_proto::incentive::v1::{CreatePayoutRequest, GetPayoutRequest, Payout};

use super::own_referrer;
use crate::{
    store::convert,
    store::{PayoutOutcome, Store},
};

pub async fn create<S: Store>(
    store: &S,
    p: &Principal,
    actor: &Actor,
    req: CreatePayoutRequest,
) -> ApiResult<Payout> {
    own_referrer(p, &req.referrer_id)?;
    // The payout's id is the audit subject, filled in by the store once it exists.
    let audit = AuditEntry::new(actor, action::PAYOUT_CREATE, "payout", "");
    match store.create_payout(&req.referrer_id, ids::now(), &audit).await? {
        PayoutOutcome::Paid(view) => {
            metrics::counter!("incentive_payouts_total").increment(1);
            Ok(convert::payout(&view))
        }
        PayoutOutcome::NothingToPay => Err(ApiError::FailedPrecondition {
            message: format!("{} has no eligible balance to pay", req.referrer_id),
            reason: "NOTHING_TO_PAY",
        }),
    }
}

pub async fn get<S: Store>(store: &S, p: &Principal, req: GetPayoutRequest) -> ApiResult<Payout> {
    let view = store.get_payout(&req.id).await?;
    match view {
        // Another member's payout is not found, rather than forbidden: ids do not leak.
        Some(v) if p.may_act_as(&v.payout.referrer_id) => Ok(convert::payout(&v)),
        _ => Err(ApiError::not_found("payout", &req.id)),
    }
}
