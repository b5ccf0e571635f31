//! Creating an API key: its name and scopes checked, a secret generated (only its hash is
//! stored), audited with the insert. The secret is answered once, here.

use referral_common::{
    ApiError, ApiResult,
    audit::{Actor, AuditEntry, action},
    auth::api_key,
    ids,
};
use referral_proto::invite::v1::CreateApiKeyRequest;

use super::SUBJECT_KIND;
use crate::{
    domain::api_keys as rules,
    store::api_keys::{ApiKeyRow, ApiKeyStore},
};

/// The new key's row and its secret.
pub async fn create_api_key<S: ApiKeyStore>(
    store: &S,
    actor: &Actor,
    req: CreateApiKeyRequest,
) -> ApiResult<(ApiKeyRow, String)> {
    let (name, scopes) = rules::definition(&req.name, &req.scopes).map_err(ApiError::Invalid)?;
    let key = api_key::generate();
    let row = ApiKeyRow {
        id: ids::new_id(),
        name,
        prefix: key.prefix.clone(),
        scopes: scopes.to_wire(),
        created_at: ids::now().timestamp_micros(),
        created_by: actor.subject.clone(),
        last_used_at: None,
        revoked_at: None,
    };
    let audit = AuditEntry::new(actor, action::API_KEY_CREATE, SUBJECT_KIND, &row.id);
    store.insert_api_key(&row, &key.hash, &audit).await?;
    Ok((row, key.secret))
}
