//! Web callers' bearer JWTs, and server-to-server callers' API keys (`Bearer rmk_...`,
//! checked by invite-svc on every request: see [`super::api_keys`]). The middleware only
//! works out who is calling (the rate limiter keys on it); each route then demands a
//! principal or not. Ownership rules ("a member acts only as itself") are the services' job,
//! from the `x-principal-*` metadata we pass on. Only web tokens (members, admins) and API
//! keys are accepted here: a service token — whatever key signed it — is never a credential
//! from the public edge.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use referral_common::auth::{JwtKeys, Principal, TokenError, api_key, bearer};
use referral_proto::invite::v1::api_key_service_client::ApiKeyServiceClient;

use super::{api_keys, caller::Caller};
use crate::clients::Authed;

/// What the middleware checks credentials with.
pub struct Authenticator {
    /// Web tokens' keys (a JWKS refreshed on an unknown `kid`).
    pub keys: JwtKeys,
    /// invite-svc, asked about every API key.
    pub api_keys: ApiKeyServiceClient<Authed>,
    /// How long invite-svc gets to answer.
    pub timeout: Duration,
}

pub fn identify(keys: &JwtKeys, authorization: Option<&str>) -> Caller {
    let Some(value) = authorization else {
        return Caller::Anonymous;
    };
    let Some(token) = bearer(value) else {
        // Basic credentials (Postmark's webhooks) are not ours to judge.
        return if value.trim_start().to_ascii_lowercase().starts_with("bearer") {
            Caller::Rejected("empty bearer token".into())
        } else {
            Caller::Anonymous
        };
    };
    match keys.verify(token) {
        Ok(claims) => Caller::Authenticated(Principal::new(claims.sub, claims.role, claims.kind)),
        Err(TokenError::Expired) => Caller::Rejected("bearer token expired".into()),
        Err(TokenError::NotYetValid) => Caller::Rejected("bearer token not valid yet".into()),
        Err(TokenError::WrongKey | TokenError::Malformed) => Caller::Rejected("invalid bearer token".into()),
        Err(TokenError::Invalid(why)) => Caller::Rejected(format!("invalid bearer token: {why}")),
    }
}

pub async fn middleware(State(auth): State<Arc<Authenticator>>, mut req: Request, next: Next) -> Response {
    let caller = match req.headers().get(header::AUTHORIZATION).map(|v| v.to_str()) {
        // Bytes that are not visible ASCII are no credential we issued (nor a Basic one).
        Some(Err(_)) => Caller::Rejected("unreadable authorization header".into()),
        Some(Ok(value)) => match bearer(value) {
            Some(key) if api_key::claims_to_be_key(key) => {
                api_keys::authenticate(&auth.api_keys, auth.timeout, key, req.extensions()).await
            }
            token => {
                // A provider's new key (an unknown `kid`) is fetched before the token is judged.
                if let Some(token) = token {
                    auth.keys.refresh_for(token).await;
                }
                identify(&auth.keys, Some(value))
            }
        },
        None => Caller::Anonymous,
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use referral_common::{auth::Role, config::Secret};

    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("0123456789abcdef0123456789abcdef"))
    }

    #[test]
    fn tokens_identify_their_caller() {
        let k = keys();
        let t = k.mint("u1", Role::Member, Some("COUPLE"), Duration::from_secs(60));
        let c = identify(&k, Some(&format!("Bearer {t}")));
        let p = c.require().unwrap();
        assert_eq!(
            (p.sub.as_str(), p.role, p.kind.as_deref()),
            ("u1", Role::Member, Some("COUPLE"))
        );
    }

    #[test]
    fn missing_bad_and_expired_tokens_are_refused() {
        let k = keys();
        assert_eq!(identify(&k, None), Caller::Anonymous);
        assert_eq!(identify(&k, Some("Basic dXNlcjpwdw==")), Caller::Anonymous);
        assert!(matches!(identify(&k, Some("Bearer nope")), Caller::Rejected(_)));
        assert!(matches!(identify(&k, Some("Bearer ")), Caller::Rejected(_)));
        let other = JwtKeys::new(&Secret::new("another-secret-that-is-long-enough-00"));
        let t = other.mint("u1", Role::Admin, None, Duration::from_secs(60));
        assert_eq!(
            identify(&k, Some(&format!("Bearer {t}"))),
            Caller::Rejected("invalid bearer token".into())
        );
        // Service tokens, members without a kind, unusable subjects: refused at the edge.
        for t in [
            k.mint("gateway", Role::Service, None, Duration::from_secs(60)),
            k.mint("u1", Role::Member, None, Duration::from_secs(60)),
            k.mint(
                "a\u{202E}b",
                Role::Member,
                Some("COUPLE"),
                Duration::from_secs(60),
            ),
            k.mint("", Role::Admin, None, Duration::from_secs(60)),
            k.mint("u1", Role::Admin, None, Duration::from_secs(48 * 3600)),
        ] {
            assert!(matches!(
                identify(&k, Some(&format!("Bearer {t}"))),
                Caller::Rejected(_)
            ));
        }
        let svc =
            referral_common::auth::ServiceKeys::new(&Secret::new("service-secret-long-enough-0123456789"));
        assert!(matches!(
            identify(&k, Some(&format!("Bearer {}", svc.mint("gateway")))),
            Caller::Rejected(_)
        ));
        for c in [Caller::Anonymous, Caller::Rejected("x".into())] {
            let e = c.require().unwrap_err();
            assert_eq!(e.status.as_u16(), 401);
            assert_eq!(e.body()["code"], 16);
        }
        let e = Caller::Unverified("invite-svc is unavailable".into())
            .require()
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 503);
    }
}
