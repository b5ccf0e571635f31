//! Reading invitations: one of the caller's own, or a page of a referrer's.

use referral_common::{ApiError, ApiResult, Violations, auth::Principal, input, paging};
use referral_proto::invite::v1::{self as pb, ListInvitationsRequest};

use super::{App, next_page};
use crate::store::{InvitationRow, Store};

impl<S: Store> App<S> {
    /// A member's own invitation (any for admins and services), or 404.
    pub async fn get_owned_invitation(&self, p: &Principal, id: &str) -> ApiResult<InvitationRow> {
        let mut v = Violations::default();
        input::id(&mut v, id, "id");
        v.into_result()?;
        let row = self.store.get_invitation(id).await?;
        // Another member's invitation is "not found": existence is not revealed.
        row.filter(|r| p.may_act_as(&r.referrer_id))
            .ok_or_else(|| ApiError::not_found("invitation", id))
    }

    /// A page of a referrer's invitations (the caller's own when it names none), newest
    /// first, with the token of the next page ("" on the last).
    pub async fn list_invitations(
        &self,
        p: &Principal,
        body: ListInvitationsRequest,
    ) -> ApiResult<(Vec<InvitationRow>, String)> {
        let referrer = if body.referrer_id.is_empty() && !p.is_privileged() {
            p.sub.clone()
        } else {
            body.referrer_id.clone()
        };
        let mut v = Violations::default();
        input::id(&mut v, &referrer, "referrerId");
        let status = match body.status {
            None => None,
            Some(s) => match pb::InvitationStatus::try_from(s) {
                Ok(pb::InvitationStatus::Unspecified) | Err(_) => {
                    v.add("status", "is not an invitation status");
                    None
                }
                Ok(s) => Some(s.as_str_name().to_string()),
            },
        };
        v.into_result()?;
        p.require_self(&referrer, "referrerId")?;
        let size = paging::page_size(body.page_size)?;
        let after = paging::decode_token(&body.page_token)?;
        let mut rows = self
            .store
            .list_invitations(
                &referrer,
                status.as_deref(),
                after.as_deref(),
                i64::from(size) + 1,
            )
            .await
            .map_err(ApiError::from)?;
        let next = next_page(&mut rows, size, |r| &r.id);
        Ok((rows, next))
    }
}
