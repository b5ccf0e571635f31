//! Bearer JWTs, two kinds with two keys so neither can stand in for the other:
//! - web tokens: members and admins, signed with the `JWT_SECRET` HS256 key and/or by an
//!   identity provider's keys (a JWKS, see [`super::jwks`]: RS256, ES256, EdDSA), checked
//!   the same way whichever signed them (`exp` required and bounded by a maximum lifetime,
//!   `nbf`, `iss`/`aud` when configured, a valid subject, a kind for members);
//! - service tokens (`SERVICE_JWT_SECRET`): role `service` only, minutes long, minted and
//!   renewed in process by [`super::ServiceCredentials`].

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::{
    Role,
    jwks::{Jwks, NoKey},
    subject::valid_subject,
};
use crate::config::Secret;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;
/// Default longest life of a web token (`JWT_MAX_LIFETIME`).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Life of a service token; [`super::ServiceCredentials`] renews it well before.
pub const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);
/// Longest service token accepted (a little over the TTL, for skew).
const SERVICE_TOKEN_MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Party kinds a member token may name.
pub const KINDS: [&str; 2] = ["SUPPLIER", "COUPLE"];

/// JWT claims as issued and accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Written when minting; on reading, jsonwebtoken checks it (string or list) itself.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    /// Signed with another key (a service token where a web token is expected, or the
    /// other way round, or a forgery).
    #[error("invalid token signature")]
    WrongKey,
    /// Not a well-formed JWT of our claims (an unreadable header, `alg: none`...).
    #[error("malformed token")]
    Malformed,
    /// Well-formed and signed, but against the rules (lifetime, role, kind, subject...).
    #[error("invalid token: {0}")]
    Invalid(String),
}

fn invalid(why: impl Into<String>) -> TokenError {
    TokenError::Invalid(why.into())
}

fn decode_error(e: &jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        // An algorithm other than the key's: another key's token, or an attempt at confusion.
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::WrongKey,
        ErrorKind::InvalidIssuer => invalid("wrong issuer"),
        ErrorKind::InvalidAudience => invalid("wrong audience"),
        ErrorKind::MissingRequiredClaim(c) => invalid(format!("missing claim {c}")),
        ErrorKind::InvalidClaimFormat(c) => invalid(format!("claim {c} is malformed")),
        _ => TokenError::Malformed,
    }
}

/// What a web token must satisfy beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `exp - iat` (or `exp - now` without `iat`) above this is refused.
    pub max_lifetime: Duration,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            max_lifetime: DEFAULT_MAX_LIFETIME,
            issuer: None,
            audience: None,
        }
    }
}

/// Checks for a token verified with a key of `alg` (the key's algorithm, never the token's).
fn validation(alg: Algorithm, required: &[&str]) -> Validation {
    let mut v = Validation::new(alg);
    v.set_required_spec_claims(required);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    // jsonwebtoken refuses any `aud` when none is expected; audience is checked only when
    // configured (see `TokenPolicy::audience`).
    v.validate_aud = false;
    v
}

/// `exp` bounded: a token valid for years is a leaked credential waiting to happen.
fn check_lifetime(claims: &Claims, max: Duration) -> Result<(), TokenError> {
    let now = chrono::Utc::now().timestamp();
    let leeway = LEEWAY_SECS as i64;
    let start = match claims.iat {
        Some(iat) if iat > now.saturating_add(leeway) => return Err(invalid("issued in the future")),
        Some(iat) => iat,
        None => now,
    };
    let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
    if claims.exp.saturating_sub(start) > max.saturating_add(leeway) {
        return Err(invalid("lifetime above the configured maximum"));
    }
    Ok(())
}

fn now_plus(ttl: Duration) -> (i64, i64) {
    let now = chrono::Utc::now().timestamp();
    (
        now,
        now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
    )
}

fn encode(claims: &Claims, key: &EncodingKey) -> String {
    // Encoding HS256 claims made of strings and integers cannot fail; were it to, the empty
    // token is refused by every verifier (fails closed).
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key).unwrap_or_default()
}

/// The `JWT_SECRET` key: signs (the mesh's dev tokens, tests) and verifies HS256.
struct Hs256 {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Verifies web tokens (members and admins): HS256 ones with the `JWT_SECRET` key, any
/// other algorithm with the JWKS key the token's header names (its algorithm taken from the
/// key). Signs HS256 tokens when it has the secret.
#[derive(Clone)]
pub struct JwtKeys {
    hs256: Option<Arc<Hs256>>,
    jwks: Option<Jwks>,
    policy: Arc<TokenPolicy>,
}

impl JwtKeys {
    /// With the default policy (24 h maximum lifetime, no issuer or audience).
    pub fn new(secret: &Secret) -> Self {
        Self::with_policy(secret, TokenPolicy::default())
    }

    pub fn with_policy(secret: &Secret, policy: TokenPolicy) -> Self {
        Self::from_sources(Some(secret), None, policy)
    }

    /// From an HS256 secret, a JWKS, or both (see [`super::WebTokenArgs`]).
    pub fn from_sources(secret: Option<&Secret>, jwks: Option<Jwks>, policy: TokenPolicy) -> Self {
        let hs256 = secret.map(|s| {
            let bytes = s.expose().as_bytes();
            Arc::new(Hs256 {
                encoding: EncodingKey::from_secret(bytes),
                decoding: DecodingKey::from_secret(bytes),
            })
        });
        Self {
            hs256,
            jwks,
            policy: Arc::new(policy),
        }
    }

    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_ref()
    }

    /// Before [`JwtKeys::verify`] where waiting is fine (the gateway): a token naming a
    /// `kid` the JWKS lacks gets one (rate-limited) refresh first, so a provider's new key
    /// works from its first token.
    pub async fn refresh_for(&self, token: &str) {
        let Some(jwks) = &self.jwks else { return };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return;
        };
        match header.kid {
            Some(kid) if header.alg != Algorithm::HS256 && !jwks.current().contains_kid(&kid) => {
                jwks.refresh_for_kid(&kid).await;
            }
            _ => {}
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// A web token (carrying the configured issuer and audience). Whether it will be
    /// accepted is [`JwtKeys::verify`]'s call: a service role or a TTL above the maximum
    /// lifetime mint tokens that are refused. Without `JWT_SECRET` (a JWKS only: the
    /// provider mints) the result is empty, which no one accepts.
    pub fn mint(&self, sub: &str, role: Role, kind: Option<&str>, ttl: Duration) -> String {
        let Some(hs256) = &self.hs256 else {
            return String::new();
        };
        let (now, exp) = now_plus(ttl);
        let claims = Claims {
            sub: sub.to_string(),
            role,
            kind: kind.map(str::to_string),
            exp,
            iat: Some(now),
            nbf: None,
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
        };
        encode(&claims, &hs256.encoding)
    }

    /// A member or admin token, fully checked.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        // `alg: none` and unknown algorithms fail here already.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let set;
        let (key, alg) = match (header.alg, &self.hs256, &self.jwks) {
            (Algorithm::HS256, Some(hs), _) => (&hs.decoding, Algorithm::HS256),
            // Asymmetric algorithms only from the JWKS, checked with the key's algorithm.
            (alg, _, Some(jwks)) if alg != Algorithm::HS256 => {
                set = jwks.current();
                match set.select(&header) {
                    Ok(k) => (&k.key, k.alg),
                    Err(NoKey::UnknownKid) => {
                        jwks.nudge();
                        return Err(invalid("signed by an unknown key (kid)"));
                    }
                    Err(NoKey::Ambiguous) => {
                        return Err(invalid("no kid, and more than one key of its algorithm"));
                    }
                    Err(NoKey::WrongAlgorithm) => return Err(TokenError::WrongKey),
                }
            }
            _ => return Err(TokenError::WrongKey),
        };
        let mut required = vec!["exp", "sub"];
        let mut v = validation(alg, &[]);
        if let Some(iss) = &self.policy.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &self.policy.audience {
            v.set_audience(&[aud]);
            v.validate_aud = true;
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| decode_error(&e))?
            .claims;
        check_lifetime(&claims, self.policy.max_lifetime)?;
        match claims.role {
            Role::Member => match claims.kind.as_deref() {
                Some(k) if KINDS.contains(&k) => {}
                Some(_) => return Err(invalid("kind must be SUPPLIER or COUPLE")),
                None => return Err(invalid("a member token must name its kind")),
            },
            Role::Admin => {
                if claims.kind.as_deref().is_some_and(|k| !KINDS.contains(&k)) {
                    return Err(invalid("kind must be SUPPLIER or COUPLE"));
                }
            }
            _ => return Err(invalid("role must be member or admin")),
        }
        valid_subject(&claims.sub).map_err(|e| invalid(e.to_string()))?;
        Ok(claims)
    }
}

/// Signs and verifies service tokens with the `SERVICE_JWT_SECRET` HS256 key.
#[derive(Clone)]
pub struct ServiceKeys {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
}

impl ServiceKeys {
    pub fn new(secret: &Secret) -> Self {
        let bytes = secret.expose().as_bytes();
        Self {
            encoding: Arc::new(EncodingKey::from_secret(bytes)),
            decoding: Arc::new(DecodingKey::from_secret(bytes)),
        }
    }

    /// A service token for `name`, valid for [`SERVICE_TOKEN_TTL`].
    pub fn mint(&self, name: &str) -> String {
        let (now, exp) = now_plus(SERVICE_TOKEN_TTL);
        let claims = Claims {
            sub: name.to_string(),
            role: Role::Service,
            kind: None,
            exp,
            iat: Some(now),
            nbf: None,
            iss: None,
            aud: None,
        };
        encode(&claims, &self.encoding)
    }

    /// A service token: this key's signature, role `service`, short-lived.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let v = validation(Algorithm::HS256, &["exp", "sub", "iat"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| decode_error(&e))?
            .claims;
        if claims.role != Role::Service {
            return Err(invalid("a service key signs service tokens only"));
        }
        check_lifetime(&claims, SERVICE_TOKEN_MAX_LIFETIME)?;
        valid_subject(&claims.sub).map_err(|e| invalid(e.to_string()))?;
        Ok(claims)
    }
}

/// What a service accepts: service tokens by the service key only, web tokens by the web
/// key only.
#[derive(Clone)]
pub struct Verifier {
    pub web: JwtKeys,
    pub service: ServiceKeys,
}

impl Verifier {
    pub fn new(web: JwtKeys, service: ServiceKeys) -> Self {
        Self { web, service }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match self.service.verify(token) {
            // Not signed by the service key: it can only be a web token (which refuses the
            // service role, so a web-key service token fails here).
            Err(TokenError::WrongKey) => self.web.verify(token),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "test-secret-of-enough-length-0123456789";
    const SVC: &str = "service-secret-of-enough-length-987654";

    fn web() -> JwtKeys {
        JwtKeys::new(&Secret::new(WEB))
    }

    fn svc() -> ServiceKeys {
        ServiceKeys::new(&Secret::new(SVC))
    }

    fn raw(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn minted_tokens_verify() {
        let t = web().mint("u1", Role::Member, Some("SUPPLIER"), Duration::from_secs(60));
        let c = web().verify(&t).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role, c.kind.as_deref()),
            ("u1", Role::Member, Some("SUPPLIER"))
        );
        let s = svc().verify(&svc().mint("gateway")).unwrap();
        assert_eq!((s.sub.as_str(), s.role), ("gateway", Role::Service));
    }

    #[test]
    fn other_secret_and_expired_tokens_fail() {
        let other = JwtKeys::new(&Secret::new("another-secret-0123456789-abcdefgh"));
        let t = other.mint("u1", Role::Admin, None, Duration::from_secs(60));
        assert_eq!(web().verify(&t).unwrap_err(), TokenError::WrongKey);
        let old = raw(
            serde_json::json!({"sub": "u", "role": "member", "kind": "COUPLE", "exp": 1000}),
            WEB,
        );
        assert_eq!(web().verify(&old).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn exp_is_required_and_bounded() {
        let n = now();
        let no_exp = raw(serde_json::json!({"sub": "u", "role": "admin"}), WEB);
        assert!(web().verify(&no_exp).is_err());
        let forever = raw(
            serde_json::json!({"sub": "u", "role": "admin", "exp": 1_i64 << 62, "iat": n}),
            WEB,
        );
        assert!(matches!(web().verify(&forever), Err(TokenError::Invalid(_))));
        let forever_no_iat = raw(
            serde_json::json!({"sub": "u", "role": "admin", "exp": 1_i64 << 62}),
            WEB,
        );
        assert!(matches!(
            web().verify(&forever_no_iat),
            Err(TokenError::Invalid(_))
        ));
        let day = raw(
            serde_json::json!({"sub": "u", "role": "admin", "exp": n + 24 * 3600, "iat": n}),
            WEB,
        );
        assert!(web().verify(&day).is_ok());
        let future_iat = raw(
            serde_json::json!({"sub": "u", "role": "admin", "exp": n + 7200, "iat": n + 3600}),
            WEB,
        );
        assert!(matches!(web().verify(&future_iat), Err(TokenError::Invalid(_))));
        let short = JwtKeys::with_policy(
            &Secret::new(WEB),
            TokenPolicy {
                max_lifetime: Duration::from_secs(600),
                ..TokenPolicy::default()
            },
        );
        let hour = short.mint("u", Role::Admin, None, Duration::from_secs(3600));
        assert!(matches!(short.verify(&hour), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn nbf_is_honoured() {
        let n = now();
        let later = raw(
            serde_json::json!({"sub": "u", "role": "admin", "exp": n + 600, "iat": n, "nbf": n + 300}),
            WEB,
        );
        assert_eq!(web().verify(&later).unwrap_err(), TokenError::NotYetValid);
        let now_ok = raw(
            serde_json::json!({"sub": "u", "role": "admin", "exp": n + 600, "iat": n, "nbf": n}),
            WEB,
        );
        assert!(web().verify(&now_ok).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let policy = TokenPolicy {
            issuer: Some("https://id.example".into()),
            audience: Some("referral-mesh".into()),
            ..TokenPolicy::default()
        };
        let keys = JwtKeys::with_policy(&Secret::new(WEB), policy);
        let minted = keys.mint("u", Role::Admin, None, Duration::from_secs(60));
        assert!(keys.verify(&minted).is_ok());
        let n = now();
        let base = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "u", "role": "admin", "exp": n + 60, "iat": n});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            raw(c, WEB)
        };
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"iss": "https://id.example"}),
            serde_json::json!({"aud": "referral-mesh"}),
            serde_json::json!({"iss": "https://evil.example", "aud": "referral-mesh"}),
            serde_json::json!({"iss": "https://id.example", "aud": "other"}),
        ] {
            assert!(keys.verify(&base(bad.clone())).is_err(), "{bad}");
        }
        let list = base(serde_json::json!({"iss": "https://id.example", "aud": ["other", "referral-mesh"]}));
        assert!(keys.verify(&list).is_ok());
        // Without configuration, iss and aud are not required (nor refused).
        assert!(
            web()
                .verify(&base(serde_json::json!({"aud": "x", "iss": "y"})))
                .is_ok()
        );
    }

    #[test]
    fn members_need_a_kind_and_roles_are_web_roles() {
        let k = web();
        for (role, kind) in [
            (Role::Member, None),
            (Role::Member, Some("VENDOR")),
            (Role::Admin, Some("x")),
            (Role::Service, None),
        ] {
            let t = k.mint("u", role, kind, Duration::from_secs(60));
            assert!(
                matches!(k.verify(&t), Err(TokenError::Invalid(_))),
                "{role:?} {kind:?}"
            );
        }
        let unknown = raw(
            serde_json::json!({"sub": "u", "role": "root", "exp": now() + 60}),
            WEB,
        );
        assert_eq!(k.verify(&unknown).unwrap_err(), TokenError::Malformed);
        assert_eq!(k.verify("not.a.jwt").unwrap_err(), TokenError::Malformed);
        let bad_sub = k.mint("a\u{202E}b", Role::Admin, None, Duration::from_secs(60));
        assert!(matches!(k.verify(&bad_sub), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn each_key_signs_only_its_own_kind_of_token() {
        let v = Verifier::new(web(), svc());
        // Service key, service role: yes. Web key, service role: no.
        assert_eq!(v.verify(&svc().mint("invite-svc")).unwrap().role, Role::Service);
        let web_service = web().mint("invite-svc", Role::Service, None, Duration::from_secs(60));
        assert!(v.verify(&web_service).is_err());
        // Service key, member role: no. Web key, member role: yes.
        let svc_member = raw(
            serde_json::json!({"sub": "u", "role": "member", "kind": "COUPLE", "exp": now() + 60, "iat": now()}),
            SVC,
        );
        assert!(v.verify(&svc_member).is_err());
        let member = web().mint("u", Role::Member, Some("COUPLE"), Duration::from_secs(60));
        assert_eq!(v.verify(&member).unwrap().role, Role::Member);
        // A long-lived service token is refused even with the right key.
        let long = raw(
            serde_json::json!({"sub": "gateway", "role": "service", "exp": now() + 365 * 86400, "iat": now()}),
            SVC,
        );
        assert!(v.verify(&long).is_err());
    }
}
