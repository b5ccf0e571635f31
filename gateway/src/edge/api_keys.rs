//! `Authorization: Bearer rmk_...`: the gateway asks invite-svc about the key on every
//! request (one indexed lookup there), so a rotation or revocation is in force at once on
//! every replica — no cache to go stale. The answer becomes an API-key principal carrying
//! the key's id and scopes; anything short of a clear yes is no principal at all.

use axum::http::Extensions;
use referral_common::auth::{Principal, REQUEST_ID, Scopes, api_key, forwarded, valid_subject};
use std::time::Duration;

use referral_proto::invite::v1::{AuthenticateApiKeyRequest, api_key_service_client::ApiKeyServiceClient};
use tonic::Code;

use super::{caller::Caller, request_id::RequestId};
use crate::clients::Authed;

/// The caller behind `secret` (which claims to be a key: it starts with `rmk_`), as
/// invite-svc (`client`) answers within `timeout`.
pub async fn authenticate(
    client: &ApiKeyServiceClient<Authed>,
    timeout: Duration,
    secret: &str,
    extensions: &Extensions,
) -> Caller {
    // A value of the wrong shape is refused here, without a lookup: empty, huge, non-ASCII
    // or control characters never leave the gateway.
    if !api_key::is_key_shaped(secret) {
        return Caller::Rejected("invalid API key".into());
    }
    let mut req = tonic::Request::new(AuthenticateApiKeyRequest {
        key: secret.to_string(),
    });
    req.set_timeout(timeout);
    // The gateway asks as itself: no web caller is behind this call.
    forwarded::write_none(req.metadata_mut());
    if let Some(id) = extensions.get::<RequestId>()
        && let Ok(value) = id.0.parse()
    {
        req.metadata_mut().insert(REQUEST_ID, value);
    }
    match client.clone().authenticate_api_key(req).await {
        Ok(answer) => principal(answer.into_inner())
            .map(Caller::Authenticated)
            .unwrap_or_else(|| Caller::Rejected("invalid API key".into())),
        Err(status) if status.code() == Code::Unauthenticated => {
            Caller::Rejected("invalid API key: unknown, rotated or revoked".into())
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "API key check failed");
            Caller::Unverified("the API key could not be checked (invite-svc did not answer); retry".into())
        }
    }
}

/// The principal of invite-svc's answer; `None` when any part of it does not read.
fn principal(answer: referral_proto::invite::v1::AuthenticatedApiKey) -> Option<Principal> {
    valid_subject(&answer.id).ok()?;
    let scopes = Scopes::parse_list(&answer.scopes).ok()?;
    Some(Principal::api_key(answer.id, scopes))
}

#[cfg(test)]
mod tests {
    use referral_common::auth::{Role, Scope};
    use referral_proto::invite::v1::AuthenticatedApiKey;

    use super::*;

    fn answer(id: &str, scopes: &[&str]) -> AuthenticatedApiKey {
        AuthenticatedApiKey {
            id: id.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn only_a_complete_answer_makes_a_principal() {
        let p = principal(answer("key-1", &["conversions:write"])).unwrap();
        assert_eq!((p.sub.as_str(), p.role), ("key-1", Role::ApiKey));
        assert!(p.scopes.contains(Scope::ConversionsWrite));
        assert!(!p.scopes.contains(Scope::ReportsRead));
        for bad in [
            answer("", &["conversions:write"]),
            answer("key\n1", &["conversions:write"]),
            answer("key-1", &[]),
            answer("key-1", &["admin"]),
            answer("key-1", &["reports:read", "reports:read"]),
        ] {
            assert_eq!(principal(bad.clone()), None, "{bad:?}");
        }
    }
}
