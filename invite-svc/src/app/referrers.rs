//! A referrer's standing: its tier (set by an admin, audited) and its counts.

use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    input,
};
use referral_proto::invite::v1::{self as pb, SetReferrerTierRequest};

use super::App;
use crate::store::{ReferrerRow, Store};

impl<S: Store> App<S> {
    /// An admin moves a referrer to another tier (its quota follows); audited.
    pub async fn set_referrer_tier(
        &self,
        actor: &Actor,
        body: SetReferrerTierRequest,
    ) -> ApiResult<ReferrerRow> {
        let mut v = Violations::default();
        input::id(&mut v, &body.referrer_id, "referrerId");
        let tier = match pb::ReferrerTier::try_from(body.tier) {
            Ok(pb::ReferrerTier::Unspecified) | Err(_) => {
                v.add("tier", "is required: REGULAR, PREMIUM or SUPER_CONNECTOR");
                None
            }
            Ok(t) => Some(t.as_str_name()),
        };
        v.into_result()?;
        let row = self
            .store
            .set_tier(
                &body.referrer_id,
                tier.unwrap_or("REGULAR"),
                &AuditEntry::new(actor, action::REFERRER_TIER_SET, "referrer", &body.referrer_id),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(row)
    }

    /// A member's own referrer record (any for admins and services).
    pub async fn get_referrer(&self, p: &Principal, referrer_id: &str) -> ApiResult<ReferrerRow> {
        let mut v = Violations::default();
        input::id(&mut v, referrer_id, "referrerId");
        v.into_result()?;
        p.require_self(referrer_id, "referrerId")?;
        let row = self
            .store
            .get_referrer(referrer_id)
            .await
            .map_err(ApiError::from)?;
        Ok(row)
    }
}
