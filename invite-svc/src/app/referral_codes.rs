//! Reading referral codes: a member's own code, and the landing a code resolves to (the
//! gateway's `/r/{code}` redirect).

use referral_common::{ApiError, ApiResult, auth::Principal};

use super::App;
use crate::{
    domain::codes,
    store::{CodeRow, Store},
};

impl<S: Store> App<S> {
    /// The stored code `raw` names (normalised first), or 404.
    pub async fn find_code(&self, raw: &str) -> ApiResult<CodeRow> {
        let code = codes::normalize_code(raw).map_err(|e| ApiError::invalid("code", e.to_string()))?;
        self.store
            .get_code(&code)
            .await?
            .ok_or_else(|| ApiError::not_found("referral code", &code))
    }

    /// A member's own code; another member's is "not found" (existence is not revealed).
    pub async fn get_referral_code(&self, p: &Principal, raw: &str) -> ApiResult<CodeRow> {
        let row = self.find_code(raw).await?;
        if !p.may_act_as(&row.referrer_id) {
            // Another member's code is "not found": existence is not revealed.
            return Err(ApiError::not_found("referral code", &row.code));
        }
        Ok(row)
    }

    /// The code and where it sends a visitor: its own landing URL, else the default one.
    pub async fn resolve_referral_code(&self, raw: &str) -> ApiResult<(CodeRow, String)> {
        let row = self.find_code(raw).await?;
        let landing = if row.landing_url.is_empty() {
            self.config.default_landing_url.clone()
        } else {
            row.landing_url.clone()
        };
        Ok((row, landing))
    }
}
