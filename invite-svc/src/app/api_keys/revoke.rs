//! Revoking an API key: it stops working at once; revoking twice is the same revocation.

use referral_common::{
    ApiError, ApiResult,
    audit::{Actor, AuditEntry, action},
    ids,
};

use super::{SUBJECT_KIND, check_id};
use crate::store::api_keys::{ApiKeyRow, ApiKeyStore, KeyChange};

pub async fn revoke_api_key<S: ApiKeyStore>(store: &S, actor: &Actor, id: &str) -> ApiResult<ApiKeyRow> {
    check_id(id)?;
    let audit = AuditEntry::new(actor, action::API_KEY_REVOKE, SUBJECT_KIND, id);
    match store
        .revoke_api_key(id, ids::now().timestamp_micros(), &audit)
        .await?
    {
        // Revoking twice is the same revocation: answered again, audited once.
        KeyChange::Changed(row) | KeyChange::Revoked(row) => Ok(row),
        KeyChange::NotFound => Err(ApiError::not_found("API key", id)),
    }
}
