//! Creating up to [`MAX_BATCH`] invitations for one referrer: each item judged alone by
//! [`create_invitation`](super::create_invitation), its refusal reported in its place; only
//! an internal failure stops the batch.

use referral_common::{
    ApiError, ApiResult, Violations,
    auth::{Principal, Scope},
    input,
};
use referral_proto::invite::v1::BatchCreateInvitationsRequest;

use super::{App, ClientContext};
use crate::store::{InvitationRow, Store};

/// Batch creates take at most this many items.
pub const MAX_BATCH: usize = 100;

impl<S: Store> App<S> {
    /// The batch's own fields and the caller's right to invite for its referrer, checked
    /// before any item (and before an Idempotency-Key is claimed).
    pub fn check_batch(&self, p: &Principal, body: &BatchCreateInvitationsRequest) -> ApiResult<()> {
        let mut v = Violations::default();
        input::id(&mut v, &body.referrer_id, "referrerId");
        v.check(
            body.invitations.is_empty(),
            "invitations",
            "must hold at least one invitation",
        );
        v.check(
            body.invitations.len() > MAX_BATCH,
            "invitations",
            format!(
                "must hold at most {MAX_BATCH} invitations (got {})",
                body.invitations.len()
            ),
        );
        v.into_result()?;
        p.authorize(Scope::InvitationsWrite, |p| {
            p.require_self(&body.referrer_id, "referrerId")
        })
    }

    /// Each item's outcome in order (after [`Self::check_batch`]); `Err` only when the store
    /// failed, which fails the whole batch.
    pub async fn batch_create_invitations(
        &self,
        p: &Principal,
        body: &BatchCreateInvitationsRequest,
        client: &ClientContext,
    ) -> ApiResult<Vec<ApiResult<InvitationRow>>> {
        let mut results = Vec::with_capacity(body.invitations.len());
        for (index, mut item) in body.invitations.clone().into_iter().enumerate() {
            let prefix = format!("invitations[{index}]");
            // Items inherit the batch's referrer; naming another one is an error.
            let result = if !item.referrer_id.is_empty() && item.referrer_id != body.referrer_id {
                Err(ApiError::invalid(
                    &format!("{prefix}.referrerId"),
                    "must match the batch's referrerId",
                ))
            } else {
                item.referrer_id = body.referrer_id.clone();
                if item.referrer_kind == 0 {
                    item.referrer_kind = body.referrer_kind;
                }
                if item.vendor_type.is_none() {
                    item.vendor_type = body.vendor_type;
                }
                self.create_invitation(p, item, client)
                    .await
                    .map_err(|e| match e {
                        ApiError::Invalid(v) => ApiError::Invalid(v.prefixed(&prefix)),
                        other => other,
                    })
            };
            match result {
                Err(ApiError::Internal(e)) => return Err(ApiError::Internal(e)),
                other => results.push(other),
            }
        }
        Ok(results)
    }
}
