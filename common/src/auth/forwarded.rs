//! The principal a service caller acts for, as gRPC metadata.
//!
//! A caller holding a service token says, on every call, either who it acts for
//! (`x-principal-sub-bin` — UTF-8 bytes, so any Unicode subject survives — plus
//! `x-principal-role` and, for members, `x-principal-kind`; for an API key, role `apikey`
//! and `x-principal-scopes`, its scope names joined by commas) or that it acts for nobody but
//! itself (`x-principal-none: 1`). Anything else — no statement, a partial one, a duplicate,
//! unreadable bytes, an unknown `x-principal-*` header, both statements at once — is refused,
//! so a forgotten or mangled header can never turn into the service's own authority.

use tonic::{
    Status,
    metadata::{AsciiMetadataValue, BinaryMetadataValue, KeyRef, MetadataMap},
};

use super::{Principal, Role, Scopes, subject::valid_subject, tokens::KINDS};

pub const PRINCIPAL_SUB: &str = "x-principal-sub-bin";
pub const PRINCIPAL_ROLE: &str = "x-principal-role";
pub const PRINCIPAL_KIND: &str = "x-principal-kind";
pub const PRINCIPAL_SCOPES: &str = "x-principal-scopes";
pub const PRINCIPAL_NONE: &str = "x-principal-none";
const PREFIX: &str = "x-principal-";
const KNOWN: [&str; 5] = [
    PRINCIPAL_SUB,
    PRINCIPAL_ROLE,
    PRINCIPAL_KIND,
    PRINCIPAL_SCOPES,
    PRINCIPAL_NONE,
];

/// What a service caller said about whom it acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// Nobody: the caller acts as itself (`x-principal-none`).
    Nobody,
    /// A web caller (member or admin) or an API key.
    Caller(Principal),
}

/// States that the call acts for `p`, replacing any earlier statement.
pub fn write(md: &mut MetadataMap, p: &Principal) {
    clear(md);
    md.insert_bin(PRINCIPAL_SUB, BinaryMetadataValue::from_bytes(p.sub.as_bytes()));
    md.insert(PRINCIPAL_ROLE, AsciiMetadataValue::from_static(p.role.as_str()));
    // Only the known kinds travel; a member without one is refused by the service.
    if let Some(kind) = p
        .kind
        .as_deref()
        .and_then(|k| KINDS.iter().find(|known| **known == k))
    {
        md.insert(PRINCIPAL_KIND, AsciiMetadataValue::from_static(kind));
    }
    // Scope names are ASCII; a key without scopes states none and is refused by the service.
    if p.role == Role::ApiKey
        && !p.scopes.is_empty()
        && let Ok(scopes) = AsciiMetadataValue::try_from(p.scopes.to_wire())
    {
        md.insert(PRINCIPAL_SCOPES, scopes);
    }
}

/// States that the call acts for nobody but the caller itself.
pub fn write_none(md: &mut MetadataMap) {
    clear(md);
    md.insert(PRINCIPAL_NONE, AsciiMetadataValue::from_static("1"));
}

fn clear(md: &mut MetadataMap) {
    md.remove_bin(PRINCIPAL_SUB);
    for key in [PRINCIPAL_ROLE, PRINCIPAL_KIND, PRINCIPAL_SCOPES, PRINCIPAL_NONE] {
        md.remove(key);
    }
}

fn refuse(why: &str) -> Status {
    Status::unauthenticated(format!("forwarded principal refused: {why}"))
}

/// The one ASCII value under `key`, if any; duplicated or unreadable is refused.
fn one_ascii<'a>(md: &'a MetadataMap, key: &str) -> Result<Option<&'a str>, Status> {
    let mut values = md.get_all(key).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(refuse(&format!("{key} is duplicated")));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| refuse(&format!("{key} is unreadable")))
}

/// The one UTF-8 value under the binary `key`, if any; duplicated, bad base64 or bad
/// UTF-8 is refused (never repaired).
fn one_utf8(md: &MetadataMap, key: &str) -> Result<Option<String>, Status> {
    let mut values = md.get_all_bin(key).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(refuse(&format!("{key} is duplicated")));
    }
    let bytes = first
        .to_bytes()
        .map_err(|_| refuse(&format!("{key} is not base64")))?;
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| refuse(&format!("{key} is not UTF-8")))
}

/// Reads the statement of a service caller (see the module documentation).
pub fn read(md: &MetadataMap) -> Result<Forwarded, Status> {
    for key in md.keys() {
        let name = match key {
            KeyRef::Ascii(k) => k.as_str(),
            KeyRef::Binary(k) => k.as_str(),
        };
        if name.starts_with(PREFIX) && !KNOWN.contains(&name) {
            return Err(refuse(&format!("unknown header {name}")));
        }
    }
    let none = one_ascii(md, PRINCIPAL_NONE)?;
    let sub = one_utf8(md, PRINCIPAL_SUB)?;
    let role = one_ascii(md, PRINCIPAL_ROLE)?;
    let kind = one_ascii(md, PRINCIPAL_KIND)?;
    let scopes = one_ascii(md, PRINCIPAL_SCOPES)?;
    let details = kind.is_none() && scopes.is_none();
    match (none, sub, role) {
        (Some("1"), None, None) if details => Ok(Forwarded::Nobody),
        (Some(_), None, None) if details => Err(refuse("x-principal-none must be 1")),
        (Some(_), _, _) => Err(refuse("both a principal and x-principal-none")),
        (None, None, None) if details => Err(refuse(
            "a service call must name its principal or send x-principal-none",
        )),
        (None, Some(sub), Some(role)) => caller(sub, role, kind, scopes).map(Forwarded::Caller),
        (None, _, _) => Err(refuse("incomplete: subject, role and kind travel together")),
    }
}

fn caller(sub: String, role: &str, kind: Option<&str>, scopes: Option<&str>) -> Result<Principal, Status> {
    valid_subject(&sub).map_err(|e| refuse(&e.to_string()))?;
    let role = match Role::parse(role) {
        Some(r @ (Role::Member | Role::Admin | Role::ApiKey)) => r,
        Some(Role::Service) => return Err(refuse("a service cannot be forwarded")),
        None => return Err(refuse("unknown role")),
    };
    if role == Role::ApiKey {
        // A key has scopes and no kind; its scope list is read as strictly as it is written.
        return match (kind, scopes) {
            (None, Some(list)) => Scopes::from_wire(list)
                .map(|scopes| Principal::api_key(sub, scopes))
                .map_err(|e| refuse(&format!("x-principal-scopes {e}"))),
            (Some(_), _) => Err(refuse("an API key has no kind")),
            (None, None) => Err(refuse("an API key must name its scopes")),
        };
    }
    match (role, kind) {
        _ if scopes.is_some() => Err(refuse("only an API key has scopes")),
        (_, Some(k)) if !KINDS.contains(&k) => Err(refuse("unknown kind")),
        (Role::Member, None) => Err(refuse("a member must name its kind")),
        (_, kind) => Ok(Principal::new(sub, role, kind.map(str::to_string))),
    }
}
