//! Who is calling. Web callers carry a JWT (HS256: `sub`, `role`, `kind`, `exp`); services
//! carry a JWT with role `service`, and the gateway, acting for a web caller, adds the
//! caller's identity as `x-principal-*` metadata that services trust only from a service.

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status, metadata::MetadataMap};

use crate::config::Secret;

pub const PRINCIPAL_SUB: &str = "x-principal-sub";
pub const PRINCIPAL_ROLE: &str = "x-principal-role";
pub const PRINCIPAL_KIND: &str = "x-principal-kind";
pub const REQUEST_ID: &str = "x-request-id";
pub const CLIENT_IP: &str = "x-client-ip";
pub const DEVICE_ID: &str = "x-device-id";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            _ => None,
        }
    }
}

/// JWT claims as issued and accepted everywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
    /// SUPPLIER or COUPLE for members.
    pub kind: Option<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admins and services act for anyone; a member only as itself.
    pub fn is_privileged(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Service)
    }

    pub fn may_act_as(&self, id: &str) -> bool {
        self.is_privileged() || self.sub == id
    }

    /// The rule "a member acts only as itself", as a `Status` naming the field.
    pub fn require_self(&self, id: &str, field: &str) -> Result<(), crate::ApiError> {
        if self.may_act_as(id) {
            Ok(())
        } else {
            Err(crate::ApiError::PermissionDenied(format!(
                "{field} must be your own id ({})",
                self.sub
            )))
        }
    }

    /// A member whose token names its kind (SUPPLIER or COUPLE) acts only as that kind.
    pub fn require_kind(&self, kind: &str, field: &str) -> Result<(), crate::ApiError> {
        match &self.kind {
            Some(own) if !self.is_privileged() && own != kind => Err(crate::ApiError::PermissionDenied(
                format!("{field} must be your own kind ({own})"),
            )),
            _ => Ok(()),
        }
    }

    pub fn require_admin(&self) -> Result<(), crate::ApiError> {
        if self.is_privileged() {
            Ok(())
        } else {
            Err(crate::ApiError::PermissionDenied("admin role required".into()))
        }
    }

    /// The principal a request was authenticated as (set by [`AuthInterceptor`]).
    pub fn of<T>(req: &Request<T>) -> Result<Principal, Status> {
        req.extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no credentials"))
    }
}

/// Signs and verifies tokens with the shared HS256 secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl JwtKeys {
    pub fn new(secret: &Secret) -> Self {
        let bytes = secret.expose().as_bytes();
        Self {
            encoding: Arc::new(EncodingKey::from_secret(bytes)),
            decoding: Arc::new(DecodingKey::from_secret(bytes)),
        }
    }

    pub fn mint(&self, sub: &str, role: Role, kind: Option<&str>, ttl: Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            role,
            kind: kind.map(str::to_string),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: now,
        };
        // Encoding HS256 claims made of strings and integers cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                other => TokenError::Invalid(format!("{other:?}")),
            })
    }
}

/// Bearer token from an `authorization` value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Verifies the caller's JWT on every gRPC call of a service (health and reflection are
/// not wrapped) and records the [`Principal`] in the request's extensions.
#[derive(Clone)]
pub struct AuthInterceptor {
    keys: JwtKeys,
}

impl AuthInterceptor {
    pub fn new(keys: JwtKeys) -> Self {
        Self { keys }
    }

    fn principal(&self, md: &MetadataMap) -> Result<Principal, Status> {
        let header = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let token = bearer(header).ok_or_else(|| Status::unauthenticated("expected a bearer token"))?;
        let claims = self
            .keys
            .verify(token)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let direct = Principal {
            sub: claims.sub,
            role: claims.role,
            kind: claims.kind,
        };
        if direct.role != Role::Service {
            return Ok(direct);
        }
        // A service acting for a web caller names that caller.
        let text = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        match (
            text(PRINCIPAL_SUB),
            text(PRINCIPAL_ROLE).as_deref().and_then(Role::parse),
        ) {
            (Some(sub), Some(role)) => Ok(Principal {
                sub,
                role,
                kind: text(PRINCIPAL_KIND),
            }),
            _ => Ok(direct),
        }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.principal(req.metadata())?;
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// Adds a service token (and, when acting for a web caller, that caller) to outgoing calls.
#[derive(Clone)]
pub struct ServiceCredentials {
    token: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl ServiceCredentials {
    /// A service token for `name`, valid for a year (rotated by restarting with a new secret).
    pub fn new(keys: &JwtKeys, name: &str) -> Self {
        let token = keys.mint(name, Role::Service, None, Duration::from_secs(365 * 24 * 3600));
        let value = format!("Bearer {token}")
            .parse()
            .unwrap_or_else(|_| tonic::metadata::MetadataValue::from_static(""));
        Self { token: value }
    }
}

impl tonic::service::Interceptor for ServiceCredentials {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.token.clone());
        Ok(req)
    }
}

/// Text of one metadata entry, if present and ASCII.
pub fn metadata_text(md: &MetadataMap, key: &str) -> Option<String> {
    md.get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("test-secret-of-enough-length-0123456789"))
    }

    #[test]
    fn minted_tokens_verify() {
        let k = keys();
        let t = k.mint("u1", Role::Member, Some("SUPPLIER"), Duration::from_secs(60));
        let c = k.verify(&t).unwrap();
        assert_eq!(c.sub, "u1");
        assert_eq!(c.role, Role::Member);
        assert_eq!(c.kind.as_deref(), Some("SUPPLIER"));
    }

    #[test]
    fn other_secret_and_expired_tokens_fail() {
        let other = JwtKeys::new(&Secret::new("another-secret-0123456789-abcdefgh"));
        let t = other.mint("u1", Role::Admin, None, Duration::from_secs(60));
        assert!(matches!(keys().verify(&t), Err(TokenError::Invalid(_))));
        let claims = Claims {
            sub: "u".into(),
            role: Role::Member,
            kind: None,
            exp: 1000,
            iat: 0,
        };
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"test-secret-of-enough-length-0123456789"),
        )
        .unwrap();
        assert!(matches!(keys().verify(&old), Err(TokenError::Expired)));
    }

    #[test]
    fn members_act_only_as_themselves() {
        let p = Principal {
            sub: "a".into(),
            role: Role::Member,
            kind: None,
        };
        assert!(p.require_self("a", "referrerId").is_ok());
        let e = p.require_self("b", "referrerId").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            Principal {
                sub: "x".into(),
                role: Role::Admin,
                kind: None
            }
            .may_act_as("b")
        );
    }
}
