//! Signed click ids: what attribution needs, carried by the id itself.
//!
//! `/r/{code}` mints `c1.{kid}.{CODE}.{unix ms}.{nonce}.{mac}`: the code clicked, when, a
//! random nonce (two clicks in one millisecond are two clicks) and a truncated
//! HMAC-SHA256 over everything before it, under the key named `kid`. A signup can then be
//! attributed from the id alone — at once, on any replica, before the click's row has been
//! written — because only the gateway's keys can produce a valid one. Keys rotate by id:
//! `CLICK_SIGNING_KEYS=kid1:secret,kid0:old` signs with the first and verifies with all;
//! removing a key retires every id it signed.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::config::{ConfigError, Secret};

/// The format's version tag: an id not starting with it is not a signed click id.
pub const PREFIX: &str = "c1";
/// Longest id this module mints or reads (kid 16 + code 64 + fixed parts), so callers can
/// bound the input before any work is done.
pub const MAX_LEN: usize = 160;
/// 128 bits of HMAC-SHA256: plenty against forgery (each guess needs a request), and it
/// keeps the id short enough for a cookie and a URL.
const MAC_BYTES: usize = 16;
const NONCE_BYTES: usize = 9;
const MAX_KID_LEN: usize = 16;
const MAX_CODE_LEN: usize = 64;
/// A key shorter than this is refused at start-up.
pub const MIN_SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// What a verified id says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedClick {
    /// The code as clicked (callers normalise it before looking it up).
    pub code: String,
    /// When the gateway saw the click, to the millisecond.
    pub at: DateTime<Utc>,
    /// The key that signed it.
    pub kid: String,
}

/// Why an id attributes to no one. The names are the API's `rejectedClick` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not of the signed format at all (or an unreadable part).
    Malformed,
    /// Signed with a key this deployment does not (or no longer) hold.
    UnknownKey,
    /// The MAC does not match: altered or forged.
    BadSignature,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "MALFORMED",
            Self::UnknownKey => "UNKNOWN_KEY",
            Self::BadSignature => "BAD_SIGNATURE",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signing keys, the first one signing.
#[derive(Clone)]
pub struct ClickKeys {
    /// Key id and the HMAC keyed with its secret (cloned per use: keyed once, at start-up).
    keys: Vec<(String, HmacSha256)>,
}

impl fmt::Debug for ClickKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids are not secret; the keys are.
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "ClickKeys({kids:?}, <redacted>)")
    }
}

impl ClickKeys {
    /// Parses `kid:secret[,kid:secret...]` (setting `setting`, named in every error): key
    /// ids of 1-16 letters, digits, `_` or `-`, unique; secrets of at least 32 characters.
    pub fn parse(setting: &'static str, raw: &Secret) -> Result<Self, ConfigError> {
        let mut keys: Vec<(String, HmacSha256)> = Vec::new();
        for (i, item) in raw.expose().split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let Some((kid, secret)) = item.split_once(':') else {
                return Err(ConfigError::new(
                    setting,
                    format!("entry {} is not kid:secret", i + 1),
                ));
            };
            let kid = kid.trim();
            if !valid_kid(kid) {
                return Err(ConfigError::new(
                    setting,
                    format!(
                        "entry {}: the key id must be 1-{MAX_KID_LEN} letters, digits, _ or -",
                        i + 1
                    ),
                ));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(ConfigError::new(
                    setting,
                    format!("key {kid:?}: the secret must be at least {MIN_SECRET_LEN} characters"),
                ));
            }
            if keys.iter().any(|(k, _)| k == kid) {
                return Err(ConfigError::new(setting, format!("key id {kid:?} appears twice")));
            }
            let keyed = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
                .map_err(|_| ConfigError::new(setting, format!("key {kid:?} is not usable for HMAC")))?;
            keys.push((kid.to_string(), keyed));
        }
        if keys.is_empty() {
            return Err(ConfigError::new(
                setting,
                "is required: kid:secret (at least 32 characters), the first one signs",
            ));
        }
        Ok(Self { keys })
    }

    /// The id of the key that signs.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].0
    }

    /// A fresh id for a click on `code` at `at` (kept to the millisecond). `code` must be
    /// code-shaped (letters, digits, `-`, `_`; at most 64): the redirect checks that before.
    pub fn sign(&self, code: &str, at: DateTime<Utc>) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let (kid, secret) = &self.keys[0];
        let body = format!(
            "{PREFIX}.{kid}.{code}.{}.{}",
            at.timestamp_millis(),
            URL_SAFE_NO_PAD.encode(nonce)
        );
        let tag = mac(secret, &body).finalize().into_bytes();
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES]))
    }

    /// Checks an id: its shape, its key, its MAC (in constant time). Age is the caller's to
    /// judge against its window.
    pub fn verify(&self, id: &str) -> Result<SignedClick, Rejection> {
        if id.len() > MAX_LEN || !id.is_ascii() {
            return Err(Rejection::Malformed);
        }
        let (body, tag) = id.rsplit_once('.').ok_or(Rejection::Malformed)?;
        let parts: Vec<&str> = body.split('.').collect();
        let [prefix, kid, code, millis, nonce] = parts[..] else {
            return Err(Rejection::Malformed);
        };
        let shape_ok = prefix == PREFIX
            && valid_kid(kid)
            && valid_code(code)
            && (1..=15).contains(&millis.len())
            && millis.bytes().all(|b| b.is_ascii_digit())
            && URL_SAFE_NO_PAD
                .decode(nonce)
                .is_ok_and(|n| n.len() == NONCE_BYTES);
        if !shape_ok {
            return Err(Rejection::Malformed);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .ok()
            .filter(|t| t.len() == MAC_BYTES)
            .ok_or(Rejection::Malformed)?;
        let (_, secret) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or(Rejection::UnknownKey)?;
        mac(secret, body)
            .verify_truncated_left(&tag)
            .map_err(|_| Rejection::BadSignature)?;
        let at = millis
            .parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or(Rejection::Malformed)?;
        Ok(SignedClick {
            code: code.to_string(),
            at,
            kid: kid.to_string(),
        })
    }
}

/// Whether an id claims the signed format (as opposed to an older or imported plain id).
pub fn is_signed_format(id: &str) -> bool {
    id.starts_with(PREFIX) && id.as_bytes().get(PREFIX.len()) == Some(&b'.')
}

fn mac(keyed: &HmacSha256, body: &str) -> HmacSha256 {
    let mut m = keyed.clone();
    m.update(body.as_bytes());
    m
}

fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_code(code: &str) -> bool {
    (1..=MAX_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(raw: &str) -> ClickKeys {
        ClickKeys::parse("CLICK_SIGNING_KEYS", &Secret::new(raw)).unwrap()
    }

    const A: &str = "k1:0123456789abcdef0123456789abcdef";
    const B: &str = "k0:fedcba9876543210fedcba9876543210";

    fn at() -> DateTime<Utc> {
        "2026-06-01T10:00:00.123Z".parse().unwrap()
    }

    #[test]
    fn a_signed_id_round_trips_to_the_millisecond() {
        let k = keys(A);
        let id = k.sign("LOVE-7KQ2MX", at());
        assert!(id.starts_with("c1.k1.LOVE-7KQ2MX."), "{id}");
        assert!(id.len() <= MAX_LEN);
        assert!(is_signed_format(&id));
        let click = k.verify(&id).unwrap();
        assert_eq!(click.code, "LOVE-7KQ2MX");
        assert_eq!(click.at, at());
        assert_eq!(click.kid, "k1");
        // Two clicks in one instant are two clicks.
        assert_ne!(id, k.sign("LOVE-7KQ2MX", at()));
    }

    #[test]
    fn every_single_character_edit_is_refused() {
        let k = keys(A);
        let id = k.sign("LOVE-7KQ2MX", at());
        let alphabet = b"abcXYZ019-_.";
        for i in 0..id.len() {
            for &c in alphabet {
                let mut bytes = id.clone().into_bytes();
                if bytes[i] == c {
                    continue;
                }
                bytes[i] = c;
                let edited = String::from_utf8(bytes).unwrap();
                assert!(k.verify(&edited).is_err(), "accepted {edited}");
            }
        }
    }

    #[test]
    fn another_deployments_key_is_a_forgery_and_a_retired_key_is_unknown() {
        let ours = keys(A);
        let theirs = keys("k1:a-different-secret-of-enough-length!!");
        let forged = theirs.sign("LOVE-7KQ2MX", at());
        assert_eq!(ours.verify(&forged), Err(Rejection::BadSignature));

        // Rotation: the new key signs, the old still verifies until it is removed.
        let old = keys(B);
        let old_id = old.sign("WED-ABCDEF", at());
        let rotated = keys(&format!("k2:{},{B}", "n".repeat(32)));
        assert_eq!(rotated.signing_kid(), "k2");
        assert_eq!(rotated.verify(&old_id).unwrap().code, "WED-ABCDEF");
        assert!(rotated.sign("WED-ABCDEF", at()).starts_with("c1.k2."));
        let retired = keys(&format!("k2:{}", "n".repeat(32)));
        assert_eq!(retired.verify(&old_id), Err(Rejection::UnknownKey));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let k = keys(A);
        for id in [
            "",
            ".",
            "c1",
            "c1.....",
            "0190-uuid-like",
            "c1.k1.LOVE.123.AAAAAAAAAAAA",
            "c1.k1.LOVE.99999999999999999.AAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
            "c1.k1.LO VE.1.AAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
            "c1.k1.LOVE.1.AAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.extra",
            "c1.k1.LÖVE.1.AAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
            &"c1.".repeat(100),
        ] {
            assert!(k.verify(id).is_err(), "accepted {id:?}");
        }
        // A well-shaped id under an unknown key is refused before any MAC work.
        assert_eq!(
            k.verify("c1.zz.LOVE.1.AAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA"),
            Err(Rejection::UnknownKey)
        );
    }

    #[test]
    fn bad_settings_are_named() {
        for raw in [
            "",
            " , ",
            "k1",
            "k1:short",
            "bad kid:0123456789abcdef0123456789abcdef",
            "k1:0123456789abcdef0123456789abcdef,k1:fedcba9876543210fedcba9876543210",
        ] {
            let e = ClickKeys::parse("CLICK_SIGNING_KEYS", &Secret::new(raw)).unwrap_err();
            assert!(e.to_string().contains("CLICK_SIGNING_KEYS"), "{e}");
            assert!(
                !e.to_string().contains("0123456789abcdef"),
                "a secret leaked: {e}"
            );
        }
        assert!(!format!("{:?}", keys(A)).contains("0123456789abcdef"));
    }
}
