//! An admin resolves an open case as APPROVE or REJECT: one `FraudResolved` event and one
//! audit row, in the case's transaction. A resolved case stays as it was.

use referral_common::{
    ApiError, ApiResult,
    audit::{Actor, AuditEntry, action},
    ids,
};

use crate::{
    app::review_cases::{CASE_MEMBERS, CaseView, case_view},
    store::{ResolveOutcome, Store},
};

/// `decision` is APPROVE or REJECT; `note` is already validated.
pub async fn resolve_case<S: Store>(
    store: &S,
    actor: &Actor,
    id: &str,
    decision: &'static str,
    note: &str,
) -> ApiResult<CaseView> {
    let audit = AuditEntry::new(actor, action::FRAUD_CASE_RESOLVE, "fraud_case", id);
    match store.resolve_case(id, decision, note, &audit, ids::now()).await? {
        ResolveOutcome::NotFound => Err(ApiError::not_found("case", id)),
        ResolveOutcome::AlreadyResolved(row) => Err(ApiError::FailedPrecondition {
            message: format!("case {} was already resolved as {}", row.id, row.decision),
            reason: "CASE_ALREADY_RESOLVED",
        }),
        ResolveOutcome::Resolved(row) => {
            metrics::counter!("fraud_cases_resolved_total", "decision" => decision).increment(1);
            case_view(store, *row, CASE_MEMBERS).await
        }
    }
}
