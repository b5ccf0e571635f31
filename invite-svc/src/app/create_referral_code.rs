//! Creating a referral code: checked, authorized, then a random code of the referrer's kind
//! inserted (with its event), retried on the rare clash.

use referral_common::{ApiError, ApiResult, Violations, auth::Principal, ids, input};
use referral_proto::invite::v1::CreateReferralCodeRequest;

use super::{
    App, MAX_CODE_ATTEMPTS,
    fields::{party_kind, vendor_type},
};
use crate::{
    domain::codes,
    store::{CodeRow, Store, events},
};

impl<S: Store> App<S> {
    /// A referrer asks for a shareable code of its own (no invitation behind it).
    pub async fn create_referral_code(
        &self,
        p: &Principal,
        req: CreateReferralCodeRequest,
    ) -> ApiResult<CodeRow> {
        let mut v = Violations::default();
        input::id(&mut v, &req.referrer_id, "referrerId");
        let kind = party_kind(&mut v, req.referrer_kind, "referrerKind");
        let vendor = vendor_type(&mut v, req.vendor_type, kind, "vendorType");
        if !req.landing_url.is_empty() {
            self.check_landing_url(&mut v, &req.landing_url, "landingUrl");
        }
        input::line(&mut v, &req.campaign_id, input::ID_MAX, "campaignId");
        v.into_result()?;
        p.require_self(&req.referrer_id, "referrerId")?;
        let kind = kind.ok_or_else(|| ApiError::invalid("referrerKind", "is required"))?;
        p.require_kind(kind.as_str(), "referrerKind")?;
        for _ in 0..MAX_CODE_ATTEMPTS {
            let row = CodeRow {
                code: codes::generate_code(kind, &mut rand::rng()),
                referrer_id: req.referrer_id.clone(),
                referrer_kind: kind.as_str().to_string(),
                vendor_type: vendor.clone(),
                campaign_id: req.campaign_id.clone(),
                landing_url: req.landing_url.clone(),
                invitation_id: None,
                clicks: 0,
                signups: 0,
                conversions: 0,
                created_at: ids::now(),
            };
            if self.store.insert_code(&row, &events::code_created(&row)).await? {
                return Ok(row);
            }
        }
        Err(ApiError::Unavailable(
            "could not find a free referral code; try again".into(),
        ))
    }

    /// A landing URL: bounded, absolute http(s), and on an allowed host (no open redirect).
    fn check_landing_url(&self, v: &mut Violations, value: &str, field: &str) {
        if let Some(url) = input::url(v, value, field)
            && !self.config.landing_hosts.allows(&url)
        {
            v.add(field, "must be on a host listed in LANDING_HOSTS");
        }
    }
}
