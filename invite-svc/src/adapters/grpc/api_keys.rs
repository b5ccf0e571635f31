//! The ApiKeyService: admin-only key management and the gateway's authentication of a
//! presented key, translated to and from the use cases in `app::api_keys`.

use referral_common::{
    ApiError,
    audit::Actor,
    auth::{Principal, Role},
    ids,
};
use referral_proto::invite::v1::{
    ApiKey, AuthenticateApiKeyRequest, AuthenticatedApiKey, CreateApiKeyRequest, ListApiKeysRequest,
    ListApiKeysResponse, RevokeApiKeyRequest, RotateApiKeyRequest, api_key_service_server::ApiKeyService,
};
use tonic::{Request, Response, Status};

use crate::{
    app::api_keys::{self, KeyRefused},
    store::api_keys::{ApiKeyRow, ApiKeyStore, instant},
};

pub struct ApiKeysApi<S> {
    store: S,
}

impl<S: ApiKeyStore> ApiKeysApi<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }
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
        let (row, secret) = api_keys::create_api_key(&self.store, &actor, req.into_inner()).await?;
        Ok(Response::new(with_secret(view(&row), secret)))
    }

    async fn list_api_keys(
        &self,
        req: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        admin(&req)?;
        let (rows, next) = api_keys::list_api_keys(&self.store, req.into_inner()).await?;
        Ok(Response::new(ListApiKeysResponse {
            api_keys: rows.iter().map(view).collect(),
            next_page_token: next,
        }))
    }

    async fn rotate_api_key(&self, req: Request<RotateApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let actor = admin(&req)?;
        let (row, secret) = api_keys::rotate_api_key(&self.store, &actor, &req.get_ref().id).await?;
        Ok(Response::new(with_secret(view(&row), secret)))
    }

    async fn revoke_api_key(&self, req: Request<RevokeApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let actor = admin(&req)?;
        let row = api_keys::revoke_api_key(&self.store, &actor, &req.get_ref().id).await?;
        Ok(Response::new(view(&row)))
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
        // Always UNAUTHENTICATED when refused: the caller learns no more than "this is not a
        // working key".
        match api_keys::authenticate_api_key(&self.store, &req.get_ref().key).await {
            Ok(key) => Ok(Response::new(AuthenticatedApiKey {
                id: key.id,
                scopes: key.scopes,
            })),
            Err(KeyRefused::Refused(why)) => Err(Status::unauthenticated(format!("API key refused: {why}"))),
            Err(KeyRefused::Failed(e)) => Err(e.into()),
        }
    }
}
