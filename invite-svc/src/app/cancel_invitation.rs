//! Cancelling an invitation before it is sent: by its referrer (ordinary use) or by an
//! admin on the referrer's behalf (audited with the change).

use referral_common::{
    ApiError, ApiResult,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids,
};

use super::App;
use crate::store::{InvitationRow, Store, TransitionOutcome};

impl<S: Store> App<S> {
    /// The invitation after the cancellation (as it was, when it was cancelled already); a
    /// sent one cannot be cancelled.
    pub async fn cancel_invitation(
        &self,
        p: &Principal,
        actor: &Actor,
        id: &str,
    ) -> ApiResult<InvitationRow> {
        let row = self.get_owned_invitation(p, id).await?;
        let reason = format!("cancelled by {}", p.sub);
        // A referrer cancelling its own invitation is ordinary use; anyone else doing it on
        // the referrer's behalf is an admin action, audited with the change.
        let audit = (p.sub != row.referrer_id)
            .then(|| AuditEntry::new(actor, action::INVITATION_CANCEL, "invitation", &row.id));
        match self
            .store
            .cancel(&row.id, &reason, ids::now(), audit.as_ref())
            .await
            .map_err(ApiError::from)?
        {
            TransitionOutcome::Applied(r) | TransitionOutcome::Ignored(r) => Ok(*r),
            TransitionOutcome::Rejected { reason, .. } => Err(ApiError::FailedPrecondition {
                message: reason,
                reason: "INVITATION_ALREADY_SENT",
            }),
            TransitionOutcome::NotFound => Err(ApiError::not_found("invitation", &row.id)),
        }
    }
}
