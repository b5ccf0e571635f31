//! The ApiKeyService: admins create, list, rotate and revoke API keys (each change audited
//! in its transaction); the gateway authenticates a presented key on every request, so a
//! rotation or revocation takes effect at once on every replica.

use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::{Principal, Role, Scopes, api_key},
    ids, input, paging,
};
use referral_proto::invite::v1::{
    ApiKey, AuthenticateApiKeyRequest, AuthenticatedApiKey, CreateApiKeyRequest, ListApiKeysRequest,
    ListApiKeysResponse, RevokeApiKeyRequest, RotateApiKeyRequest, api_key_service_server::ApiKeyService,
};
use tonic::{Request, Response, Status};

use crate::{
    domain::api_keys as rules,
    store::api_keys::{ApiKeyRow, ApiKeyStore, KeyChange, instant},
};

const SUBJECT_KIND: &str = "api_key";

pub struct ApiKeysApi<S> {
    store: S,
}

impl<S: ApiKeyStore> ApiKeysApi<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    async fn create(&self, actor: &Actor, req: CreateApiKeyRequest) -> ApiResult<ApiKey> {
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
        self.store.insert_api_key(&row, &key.hash, &audit).await?;
        Ok(with_secret(view(&row), key.secret))
    }

    async fn rotate(&self, actor: &Actor, id: &str) -> ApiResult<ApiKey> {
        check_id(id)?;
        let key = api_key::generate();
        let audit = AuditEntry::new(actor, action::API_KEY_ROTATE, SUBJECT_KIND, id);
        match self
            .store
            .rotate_api_key(id, &key.hash, &key.prefix, &audit)
            .await?
        {
            KeyChange::Changed(row) => Ok(with_secret(view(&row), key.secret)),
            KeyChange::Revoked(_) => Err(ApiError::FailedPrecondition {
                message: format!("API key {id} is revoked; create a new one"),
                reason: "API_KEY_REVOKED",
            }),
            KeyChange::NotFound => Err(ApiError::not_found("API key", id)),
        }
    }

    async fn revoke(&self, actor: &Actor, id: &str) -> ApiResult<ApiKey> {
        check_id(id)?;
        let audit = AuditEntry::new(actor, action::API_KEY_REVOKE, SUBJECT_KIND, id);
        match self
            .store
            .revoke_api_key(id, ids::now().timestamp_micros(), &audit)
            .await?
        {
            // Revoking twice is the same revocation: answered again, audited once.
            KeyChange::Changed(row) | KeyChange::Revoked(row) => Ok(view(&row)),
            KeyChange::NotFound => Err(ApiError::not_found("API key", id)),
        }
    }

    async fn list(&self, req: ListApiKeysRequest) -> ApiResult<ListApiKeysResponse> {
        let size = paging::page_size(req.page_size)?;
        let after = paging::decode_token(&req.page_token)?;
        let mut rows = self
            .store
            .list_api_keys(after.as_deref(), i64::from(size) + 1)
            .await?;
        let next = if rows.len() > size as usize {
            rows.truncate(size as usize);
            rows.last()
                .map(|r| paging::encode_token(&r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ListApiKeysResponse {
            api_keys: rows.iter().map(view).collect(),
            next_page_token: next,
        })
    }

    /// The key's id and scopes, or why not (always UNAUTHENTICATED: the caller learns no
    /// more than "this is not a working key").
    async fn authenticate(&self, secret: &str) -> Result<AuthenticatedApiKey, Status> {
        let refused = |why: &str| Status::unauthenticated(format!("API key refused: {why}"));
        if !api_key::is_key_shaped(secret) {
            return Err(refused("not an API key"));
        }
        let found = self
            .store
            .api_key_by_hash(&api_key::hash(secret))
            .await
            .map_err(ApiError::from)?;
        let Some(key) = found.filter(|k| api_key::matches(&k.secret_hash, secret)) else {
            return Err(refused("unknown, rotated or revoked key"));
        };
        if key.revoked_at.is_some() {
            return Err(refused("unknown, rotated or revoked key"));
        }
        // A stored list that no longer reads is no list of rights: refuse, never widen.
        let scopes = Scopes::from_wire(&key.scopes).map_err(|_| refused("unreadable scopes"))?;
        let now = ids::now().timestamp_micros();
        if rules::use_is_news(key.last_used_at, now) {
            let stale_before = now.saturating_sub(rules::LAST_USED_EVERY_MICROS);
            // Best effort: a missed "last used" must not turn a good key away.
            if let Err(e) = self.store.touch_api_key(&key.id, now, stale_before).await {
                tracing::warn!(error = %e, key = %key.id, "could not record an API key's use");
            }
        }
        Ok(AuthenticatedApiKey {
            id: key.id,
            scopes: scopes.names().into_iter().map(str::to_string).collect(),
        })
    }
}

fn check_id(id: &str) -> ApiResult<()> {
    let mut v = Violations::default();
    input::id(&mut v, id, "id");
    v.into_result()
}

/// A key as callers see it: never its secret or hash.
fn view(row: &ApiKeyRow) -> ApiKey {
    ApiKey {
        id: row.id.clone(),
        name: row.name.clone(),
        prefix: row.prefix.clone(),
        scopes: row
            .scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: instant(row.created_at).map(ids::to_ts),
        created_by: row.created_by.clone(),
        last_used_at: row.last_used_at.and_then(instant).map(ids::to_ts),
        revoked_at: row.revoked_at.and_then(instant).map(ids::to_ts),
        key: String::new(),
    }
}

fn with_secret(mut key: ApiKey, secret: String) -> ApiKey {
    key.key = secret;
    key
}

/// Key management is an admin's job; a key can never manage keys.
fn admin<T>(req: &Request<T>) -> Result<Actor, Status> {
    Principal::of(req)?.require_admin()?;
    Actor::of(req)
}

#[tonic::async_trait]
impl<S: ApiKeyStore> ApiKeyService for ApiKeysApi<S> {
    async fn create_api_key(&self, req: Request<CreateApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let actor = admin(&req)?;
        Ok(Response::new(self.create(&actor, req.into_inner()).await?))
    }

    async fn list_api_keys(
        &self,
        req: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        admin(&req)?;
        Ok(Response::new(self.list(req.into_inner()).await?))
    }

    async fn rotate_api_key(&self, req: Request<RotateApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let actor = admin(&req)?;
        Ok(Response::new(self.rotate(&actor, &req.get_ref().id).await?))
    }

    async fn revoke_api_key(&self, req: Request<RevokeApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let actor = admin(&req)?;
        Ok(Response::new(self.revoke(&actor, &req.get_ref().id).await?))
    }

    async fn authenticate_api_key(
        &self,
        req: Request<AuthenticateApiKeyRequest>,
    ) -> Result<Response<AuthenticatedApiKey>, Status> {
        // Only the gateway (a service acting as itself) asks: nobody probes keys with a web
        // token or another key.
        if Principal::of(&req)?.role != Role::Service {
            return Err(ApiError::PermissionDenied("only services authenticate API keys".into()).into());
        }
        Ok(Response::new(self.authenticate(&req.get_ref().key).await?))
    }
}
