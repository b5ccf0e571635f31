//! Rotating an API key: a new secret for the same id and scopes; the old one stops working
//! at once. A revoked key cannot be rotated.

use referral_common::{
    ApiError, ApiResult,
    audit::{Actor, AuditEntry, action},
    auth::api_key,
};

use super::{SUBJECT_KIND, check_id};
use crate::store::api_keys::{ApiKeyRow, ApiKeyStore, KeyChange};

/// The key's row and its new secret.
pub async fn rotate_api_key<S: ApiKeyStore>(
    store: &S,
    actor: &Actor,
    id: &str,
) -> ApiResult<(ApiKeyRow, String)> {
    check_id(id)?;
    let key = api_key::generate();
    let audit = AuditEntry::new(actor, action::API_KEY_ROTATE, SUBJECT_KIND, id);
    match store.rotate_api_key(id, &key.hash, &key.prefix, &audit).await? {
        KeyChange::Changed(row) => Ok((row, key.secret)),
        KeyChange::Revoked(_) => Err(ApiError::FailedPrecondition {
            message: format!("API key {id} is revoked; create a new one"),
            reason: "API_KEY_REVOKED",
        }),
        KeyChange::NotFound => Err(ApiError::not_found("API key", id)),
    }
}
