//! Invitation sends parked after panicking `PARK_AFTER` times: listed for an operator, and
//! released (audited) to be tried again.

use referral_common::{audit::AuditEntry, parked::ParkedSend};

use crate::store::{Store, StoreResult};

/// A page of parked sends after `before` (an invitation id; "" for the first page).
pub async fn parked_sends<S: Store>(store: &S, before: &str, limit: i64) -> StoreResult<Vec<ParkedSend>> {
    store.parked_sends(before, limit).await
}

/// Puts a parked send back in the queue; `false` when it was not parked.
pub async fn release_parked_send<S: Store>(
    store: &S,
    invitation_id: &str,
    entry: &AuditEntry,
) -> StoreResult<bool> {
    store.release_parked_send(invitation_id, entry).await
}
