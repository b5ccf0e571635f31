//! Authenticating a presented API key (the gateway asks on every request): its id and
//! scopes, or why not; its use recorded at most every few minutes.

use referral_common::{
    ApiError,
    auth::{Scopes, api_key},
    ids,
};

use crate::{domain::api_keys as rules, store::api_keys::ApiKeyStore};

/// A working key: its id and the names of its scopes.
pub struct AuthenticatedKey {
    pub id: String,
    pub scopes: Vec<String>,
}

/// Why a key was not authenticated.
pub enum KeyRefused {
    /// Not a working key, and why (the caller learns no more than that).
    Refused(&'static str),
    /// The store failed.
    Failed(ApiError),
}

/// The key's id and scopes, or why not.
pub async fn authenticate_api_key<S: ApiKeyStore>(
    store: &S,
    secret: &str,
) -> Result<AuthenticatedKey, KeyRefused> {
    if !api_key::is_key_shaped(secret) {
        return Err(KeyRefused::Refused("not an API key"));
    }
    let found = store
        .api_key_by_hash(&api_key::hash(secret))
        .await
        .map_err(|e| KeyRefused::Failed(ApiError::from(e)))?;
    let Some(key) = found.filter(|k| api_key::matches(&k.secret_hash, secret)) else {
        return Err(KeyRefused::Refused("unknown, rotated or revoked key"));
    };
    if key.revoked_at.is_some() {
        return Err(KeyRefused::Refused("unknown, rotated or revoked key"));
    }
    // A stored list that no longer reads is no list of rights: refuse, never widen.
    let scopes = Scopes::from_wire(&key.scopes).map_err(|_| KeyRefused::Refused("unreadable scopes"))?;
    let now = ids::now().timestamp_micros();
    if rules::use_is_news(key.last_used_at, now) {
        let stale_before = now.saturating_sub(rules::LAST_USED_EVERY_MICROS);
        // Best effort: a missed "last used" must not turn a good key away.
        if let Err(e) = store.touch_api_key(&key.id, now, stale_before).await {
            tracing::warn!(error = %e, key = %key.id, "could not record an API key's use");
        }
    }
    Ok(AuthenticatedKey {
        id: key.id,
        scopes: scopes.names().into_iter().map(str::to_string).collect(),
    })
}
