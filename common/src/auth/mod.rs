//! Who is calling. Web callers carry a JWT signed with the web key or by an identity
//! provider's JWKS (`sub`, `role` member or admin, `kind`, `exp`...; see [`tokens`],
//! [`jwks`], and [`settings`] for the one configuration they share everywhere); services carry a short-lived JWT with role
//! `service` signed with the service key, and say on every call whom they act for (see
//! [`forwarded`]): a service trusts that statement only from a service token, and refuses
//! the call when the statement is missing, partial or unreadable. Server-to-server callers
//! of the gateway present an API key instead ([`api_key`]); they act with its [`Scope`]s.

pub mod api_key;
pub mod forwarded;
pub mod jwks;
pub mod scope;
pub mod settings;
pub mod subject;
pub mod tokens;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tonic::{Request, Status, metadata::MetadataMap};

pub use forwarded::{
    Forwarded, PRINCIPAL_KIND, PRINCIPAL_NONE, PRINCIPAL_ROLE, PRINCIPAL_SCOPES, PRINCIPAL_SUB,
};
pub use scope::{Scope, ScopeError, Scopes};
pub use settings::{WebTokenArgs, WebTokenSettings};
pub use subject::{MAX_SUBJECT_CHARS, SubjectError, valid_subject};
pub use tokens::{
    Claims, DEFAULT_MAX_LIFETIME, JwtKeys, SERVICE_TOKEN_TTL, ServiceKeys, TokenError, TokenPolicy, Verifier,
};

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
    /// A caller holding an API key (subject: the key's id). Never read from a JWT: a token
    /// claiming this role does not even decode.
    #[serde(skip)]
    ApiKey,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Service => "service",
            Role::ApiKey => "apikey",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            "apikey" => Some(Role::ApiKey),
            _ => None,
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
    /// SUPPLIER or COUPLE for members.
    pub kind: Option<String>,
    /// What an API key may do; always empty for every other role.
    pub scopes: Scopes,
}

impl Principal {
    /// A member, admin or service (no scopes).
    pub fn new(sub: impl Into<String>, role: Role, kind: Option<String>) -> Principal {
        Principal {
            sub: sub.into(),
            role,
            kind,
            scopes: Scopes::NONE,
        }
    }

    /// The caller holding API key `key_id` with `scopes`.
    pub fn api_key(key_id: impl Into<String>, scopes: Scopes) -> Principal {
        Principal {
            sub: key_id.into(),
            role: Role::ApiKey,
            kind: None,
            scopes,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admins and services act for anyone; a member only as itself; an API key only
    /// through [`Principal::authorize`].
    pub fn is_privileged(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Service)
    }

    /// An API key is nobody's owner: it never "is" the referrer or user an id names.
    pub fn may_act_as(&self, id: &str) -> bool {
        self.is_privileged() || (self.role != Role::ApiKey && self.sub == id)
    }

    /// The one rule for "may this caller do what `scope` names": a service may; an API key
    /// may iff it holds `scope`; members and admins are judged by `by_role`, the route's own
    /// rule for people (e.g. `|p| p.require_self(id, "referrerId")`, or a flat refusal where
    /// only billing may act).
    pub fn authorize(
        &self,
        scope: Scope,
        by_role: impl FnOnce(&Principal) -> Result<(), crate::ApiError>,
    ) -> Result<(), crate::ApiError> {
        match self.role {
            Role::Service => Ok(()),
            Role::ApiKey if self.scopes.contains(scope) => Ok(()),
            Role::ApiKey => Err(crate::ApiError::PermissionDenied(format!(
                "this API key lacks the {scope} scope"
            ))),
            Role::Member | Role::Admin => by_role(self),
        }
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

/// Bearer token from an `authorization` value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Verifies the caller's JWT on every gRPC call of a service (health and reflection are
/// not wrapped) and records the [`Principal`] in the request's extensions.
#[derive(Clone)]
pub struct AuthInterceptor {
    verifier: Verifier,
}

impl AuthInterceptor {
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }

    fn principal(&self, md: &MetadataMap) -> Result<Principal, Status> {
        let mut values = md.get_all("authorization").iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Status::unauthenticated("expected exactly one bearer token"));
        };
        let header = value
            .to_str()
            .map_err(|_| Status::unauthenticated("unreadable authorization header"))?;
        let token = bearer(header).ok_or_else(|| Status::unauthenticated("expected a bearer token"))?;
        let claims = self
            .verifier
            .verify(token)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let direct = Principal::new(claims.sub, claims.role, claims.kind);
        if direct.role != Role::Service {
            // A web caller speaks for itself; principal headers mean nothing from it.
            return Ok(direct);
        }
        match forwarded::read(md)? {
            Forwarded::Nobody => Ok(direct),
            Forwarded::Caller(p) => Ok(p),
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

/// Adds a service token to outgoing calls, minted in process and renewed at half its life,
/// so a service never restarts to stay authenticated.
#[derive(Clone)]
pub struct ServiceCredentials {
    keys: ServiceKeys,
    name: Arc<str>,
    /// Calls made for nobody but the service itself get `x-principal-none`; a forwarding
    /// caller (the gateway) states the principal per request instead.
    acts_as_itself: bool,
    renew_every: Duration,
    current: Arc<Mutex<Option<(tonic::metadata::AsciiMetadataValue, Instant)>>>,
}

impl ServiceCredentials {
    /// For a service calling as itself (internal calls, event-log consumers).
    pub fn new(keys: &ServiceKeys, name: &str) -> Self {
        Self {
            keys: keys.clone(),
            name: Arc::from(name),
            acts_as_itself: true,
            renew_every: SERVICE_TOKEN_TTL / 2,
            current: Arc::new(Mutex::new(None)),
        }
    }

    /// For a caller that states on each request whom it acts for ([`forwarded::write`] or
    /// [`forwarded::write_none`]); a request without a statement is refused by the service.
    pub fn forwarding(keys: &ServiceKeys, name: &str) -> Self {
        Self {
            acts_as_itself: false,
            ..Self::new(keys, name)
        }
    }

    #[cfg(test)]
    fn renewing_every(mut self, every: Duration) -> Self {
        self.renew_every = every;
        self
    }

    /// The current `Bearer` value, minted again once it is half way through its life.
    fn authorization(&self) -> Result<tonic::metadata::AsciiMetadataValue, Status> {
        let mut slot = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((value, minted)) = slot.as_ref()
            && minted.elapsed() < self.renew_every
        {
            return Ok(value.clone());
        }
        let value: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", self.keys.mint(&self.name))
            .parse()
            .map_err(|_| Status::internal("could not mint a service token"))?;
        *slot = Some((value.clone(), Instant::now()));
        Ok(value)
    }
}

impl tonic::service::Interceptor for ServiceCredentials {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let value = self.authorization()?;
        req.metadata_mut().insert("authorization", value);
        if self.acts_as_itself {
            forwarded::write_none(req.metadata_mut());
        }
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
    use tonic::{
        metadata::{AsciiMetadataValue, BinaryMetadataValue},
        service::Interceptor,
    };

    use super::*;
    use crate::config::Secret;

    fn web() -> JwtKeys {
        JwtKeys::new(&Secret::new("test-secret-of-enough-length-0123456789"))
    }

    fn svc() -> ServiceKeys {
        ServiceKeys::new(&Secret::new("service-secret-of-enough-length-987654"))
    }

    fn interceptor() -> AuthInterceptor {
        AuthInterceptor::new(Verifier::new(web(), svc()))
    }

    fn bearer_value(token: &str) -> AsciiMetadataValue {
        format!("Bearer {token}").parse().unwrap()
    }

    /// A call with the gateway's service token plus whatever `extra` adds.
    fn service_call(extra: impl FnOnce(&mut MetadataMap)) -> Result<Principal, Status> {
        let mut md = MetadataMap::new();
        md.insert("authorization", bearer_value(&svc().mint("gateway")));
        extra(&mut md);
        interceptor().principal(&md)
    }

    fn member(sub: &str) -> Principal {
        Principal::new(sub, Role::Member, Some("COUPLE".into()))
    }

    fn refused(r: Result<Principal, Status>) -> bool {
        matches!(r, Err(s) if s.code() == tonic::Code::Unauthenticated)
    }

    #[test]
    fn any_unicode_subject_travels_and_comes_back_exactly() {
        for sub in ["josé", "名前", "invite-svc", "gateway", "u1", &"é".repeat(128)] {
            let p = member(sub);
            assert_eq!(service_call(|md| forwarded::write(md, &p)).unwrap(), p, "{sub:?}");
        }
        let admin = Principal::new("ops", Role::Admin, None);
        assert_eq!(service_call(|md| forwarded::write(md, &admin)).unwrap(), admin);
        let key = Principal::api_key(
            "0193a1b2-key",
            Scopes::parse_list(&["conversions:write", "reports:read"]).unwrap(),
        );
        assert_eq!(service_call(|md| forwarded::write(md, &key)).unwrap(), key);
    }

    #[test]
    fn service_token_with_none_is_the_service() {
        let p = service_call(forwarded::write_none).unwrap();
        assert_eq!((p.sub.as_str(), p.role), ("gateway", Role::Service));
    }

    #[test]
    fn service_token_without_a_statement_is_refused() {
        assert!(refused(service_call(|_| {})));
    }

    #[test]
    fn partial_principal_headers_are_refused() {
        let sub = || BinaryMetadataValue::from_bytes("josé".as_bytes());
        type Edit = Box<dyn Fn(&mut MetadataMap)>;
        let cases: Vec<Edit> = vec![
            // subject without role
            Box::new(move |md| {
                md.insert_bin(PRINCIPAL_SUB, sub());
            }),
            // role without subject
            Box::new(|md| {
                md.insert(PRINCIPAL_ROLE, AsciiMetadataValue::from_static("admin"));
            }),
            // kind alone
            Box::new(|md| {
                md.insert(PRINCIPAL_KIND, AsciiMetadataValue::from_static("COUPLE"));
            }),
            // member without kind
            Box::new(move |md| {
                md.insert_bin(PRINCIPAL_SUB, sub());
                md.insert(PRINCIPAL_ROLE, AsciiMetadataValue::from_static("member"));
            }),
        ];
        for (i, case) in cases.iter().enumerate() {
            assert!(refused(service_call(case)), "case {i}");
        }
    }

    #[test]
    fn unreadable_unknown_and_duplicated_headers_are_refused() {
        let with = |edit: &dyn Fn(&mut MetadataMap)| {
            service_call(|md| {
                forwarded::write(md, &member("josé"));
                edit(md);
            })
        };
        // Unknown role, unknown kind, a forwarded service.
        for role in ["root", "service", "apikey", ""] {
            assert!(
                refused(with(&|md| {
                    md.insert(PRINCIPAL_ROLE, role.parse().unwrap());
                })),
                "{role:?}"
            );
        }
        assert!(refused(with(&|md| {
            md.insert(PRINCIPAL_KIND, AsciiMetadataValue::from_static("VENDOR"));
        })));
        // Subject that is not UTF-8, or breaks the subject rule.
        assert!(refused(with(&|md| {
            md.insert_bin(PRINCIPAL_SUB, BinaryMetadataValue::from_bytes(b"jos\xe9"));
        })));
        for bad in ["", "a\u{85}b", "a\u{202E}b", &"x".repeat(129)] {
            assert!(
                refused(with(&|md| {
                    md.insert_bin(PRINCIPAL_SUB, BinaryMetadataValue::from_bytes(bad.as_bytes()));
                })),
                "{bad:?}"
            );
        }
        // Duplicates of every header.
        assert!(refused(with(&|md| {
            md.append_bin(PRINCIPAL_SUB, BinaryMetadataValue::from_bytes(b"other"));
        })));
        assert!(refused(with(&|md| {
            md.append(PRINCIPAL_ROLE, AsciiMetadataValue::from_static("member"));
        })));
        assert!(refused(with(&|md| {
            md.append(PRINCIPAL_KIND, AsciiMetadataValue::from_static("COUPLE"));
        })));
        // Obs-text in an ASCII header (what tonic parses but cannot read back).
        assert!(refused(with(&|md| {
            md.insert(
                PRINCIPAL_KIND,
                AsciiMetadataValue::try_from(&b"COUPL\xc9"[..]).unwrap(),
            );
        })));
        // The retired ASCII subject header, or any other x-principal-* header.
        assert!(refused(with(&|md| {
            md.insert("x-principal-sub", AsciiMetadataValue::from_static("admin"));
        })));
        assert!(refused(with(&|md| {
            md.insert("x-principal-scopes", AsciiMetadataValue::from_static("all"));
        })));
        // A principal and "none" at once, and a "none" that is not 1.
        assert!(refused(with(&|md| {
            md.insert(PRINCIPAL_NONE, AsciiMetadataValue::from_static("1"));
        })));
        assert!(refused(service_call(|md| {
            md.insert(PRINCIPAL_NONE, AsciiMetadataValue::from_static("yes"));
        })));
        assert!(refused(service_call(|md| {
            forwarded::write_none(md);
            md.append(PRINCIPAL_NONE, AsciiMetadataValue::from_static("1"));
        })));
    }

    #[test]
    fn api_key_statements_are_read_strictly() {
        let key = Principal::api_key("key-1", Scopes::NONE.with(Scope::ConversionsWrite));
        let with = |edit: &dyn Fn(&mut MetadataMap)| {
            service_call(|md| {
                forwarded::write(md, &key);
                edit(md);
            })
        };
        assert_eq!(with(&|_| {}).unwrap(), key);
        let ascii = |v: &str| AsciiMetadataValue::try_from(v).unwrap();
        // Unknown, empty, repeated, padded or upper-cased scope lists.
        for bad in [
            "",
            "admin",
            "conversions:write,",
            "conversions:write,conversions:write",
            "conversions:write, reports:read",
            "CONVERSIONS:WRITE",
            "*",
        ] {
            assert!(
                refused(with(&|md| {
                    md.insert(PRINCIPAL_SCOPES, ascii(bad));
                })),
                "{bad:?}"
            );
        }
        // Scopes missing, duplicated, or beside a kind.
        assert!(refused(with(&|md| {
            md.remove(PRINCIPAL_SCOPES);
        })));
        assert!(refused(with(&|md| {
            md.append(PRINCIPAL_SCOPES, ascii("reports:read"));
        })));
        assert!(refused(with(&|md| {
            md.insert(PRINCIPAL_KIND, ascii("COUPLE"));
        })));
        // Scopes on a member or an admin, or alone, or with "none".
        for p in [member("josé"), Principal::new("ops", Role::Admin, None)] {
            assert!(refused(service_call(|md| {
                forwarded::write(md, &p);
                md.insert(PRINCIPAL_SCOPES, ascii("conversions:write"));
            })));
        }
        assert!(refused(service_call(|md| {
            md.insert(PRINCIPAL_SCOPES, ascii("conversions:write"));
        })));
        assert!(refused(service_call(|md| {
            forwarded::write_none(md);
            md.insert(PRINCIPAL_SCOPES, ascii("conversions:write"));
        })));
        // A key without scopes states none, which the service refuses.
        assert!(refused(service_call(|md| {
            forwarded::write(md, &Principal::api_key("key-2", Scopes::NONE));
        })));
    }

    #[test]
    fn no_token_claims_the_api_key_role() {
        // A web-key JWT saying role "apikey" does not even decode into claims.
        let claims = serde_json::json!({
            "sub": "key-1", "role": "apikey", "exp": chrono::Utc::now().timestamp() + 60,
            "iat": chrono::Utc::now().timestamp(),
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"test-secret-of-enough-length-0123456789"),
        )
        .unwrap();
        let mut md = MetadataMap::new();
        md.insert("authorization", bearer_value(&token));
        assert!(refused(interceptor().principal(&md)));
        assert!(web().verify(&token).is_err());
    }

    #[test]
    fn member_tokens_ignore_principal_headers() {
        let mut md = MetadataMap::new();
        let token = web().mint("josé", Role::Member, Some("SUPPLIER"), Duration::from_secs(60));
        md.insert("authorization", bearer_value(&token));
        forwarded::write(&mut md, &Principal::new("ops", Role::Admin, None));
        let p = interceptor().principal(&md).unwrap();
        assert_eq!((p.sub.as_str(), p.role), ("josé", Role::Member));
        // Even "none" does not make a member anything else.
        forwarded::write_none(&mut md);
        assert_eq!(interceptor().principal(&md).unwrap().role, Role::Member);
    }

    #[test]
    fn tokens_are_required_once_and_from_the_right_key() {
        let mut md = MetadataMap::new();
        assert!(refused(interceptor().principal(&md)));
        // A web-key token with role service is not a service.
        let forged = web().mint("gateway", Role::Service, None, Duration::from_secs(60));
        md.insert("authorization", bearer_value(&forged));
        forwarded::write_none(&mut md);
        assert!(refused(interceptor().principal(&md)));
        // Two authorization values.
        let mut md = MetadataMap::new();
        md.insert("authorization", bearer_value(&svc().mint("gateway")));
        md.append("authorization", bearer_value(&svc().mint("other")));
        forwarded::write_none(&mut md);
        assert!(refused(interceptor().principal(&md)));
    }

    #[test]
    fn own_credentials_say_none_and_renew_in_process() {
        let mut creds = ServiceCredentials::new(&svc(), "invite-svc").renewing_every(Duration::ZERO);
        let first = creds.call(Request::new(())).unwrap();
        assert_eq!(first.metadata().get(PRINCIPAL_NONE).unwrap(), "1");
        let p = interceptor().principal(first.metadata()).unwrap();
        assert_eq!((p.sub.as_str(), p.role), ("invite-svc", Role::Service));
        // A fresh token once the renewal time has passed (iat has one-second resolution).
        std::thread::sleep(Duration::from_millis(1100));
        let second = creds.call(Request::new(())).unwrap();
        assert_ne!(
            first.metadata().get("authorization"),
            second.metadata().get("authorization")
        );
        // Before renewal time, the same token is reused.
        let mut steady = ServiceCredentials::new(&svc(), "invite-svc");
        let a = steady.call(Request::new(())).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let b = steady.call(Request::new(())).unwrap();
        assert_eq!(
            a.metadata().get("authorization"),
            b.metadata().get("authorization")
        );
        // A forwarding caller adds no statement of its own.
        let mut fwd = ServiceCredentials::forwarding(&svc(), "gateway");
        let r = fwd.call(Request::new(())).unwrap();
        assert!(r.metadata().get(PRINCIPAL_NONE).is_none());
        assert!(refused(interceptor().principal(r.metadata())));
    }

    #[test]
    fn members_act_only_as_themselves() {
        let p = member("a");
        assert!(p.require_self("a", "referrerId").is_ok());
        let e = p.require_self("b", "referrerId").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(Principal::new("x", Role::Admin, None).may_act_as("b"));
    }

    #[test]
    fn api_keys_may_exactly_what_their_scopes_say() {
        let deny = |_: &Principal| -> Result<(), crate::ApiError> {
            Err(crate::ApiError::PermissionDenied("people may not".into()))
        };
        let allow = |_: &Principal| -> Result<(), crate::ApiError> { Ok(()) };
        let key = Principal::api_key("k1", Scopes::NONE.with(Scope::ConversionsWrite));
        assert!(key.authorize(Scope::ConversionsWrite, deny).is_ok());
        // Another scope is refused, even where people would be allowed.
        let e = key.authorize(Scope::ReportsRead, allow).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.to_string().contains("reports:read"), "{e}");
        // A service may; members and admins get the route's own rule.
        let service = Principal::new("billing", Role::Service, None);
        assert!(service.authorize(Scope::ConversionsWrite, deny).is_ok());
        for p in [member("u1"), Principal::new("ops", Role::Admin, None)] {
            assert!(p.authorize(Scope::ConversionsWrite, deny).is_err());
            assert!(p.authorize(Scope::ConversionsWrite, allow).is_ok());
        }
        // Keys never pass the people rules: not admin, nobody's owner, not even their own id.
        assert!(key.require_admin().is_err());
        assert!(!key.may_act_as("k1") && !key.may_act_as("u1"));
        assert!(key.require_self("k1", "referrerId").is_err());
    }
}
