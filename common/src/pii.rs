//! Personal data at rest: names, email addresses, phone numbers, IPs, user agents and device
//! ids are sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`: a 24-byte random
//! nonce per value, so no nonce bookkeeping) under a key from configuration that carries a key
//! id, and found again by a keyed hash (HMAC-SHA256), never by the value itself.
//!
//! `PII_KEYS=kid2:secret,kid1:old` seals with the first key and opens with any of them, so a
//! rotation is: put the new key first, restart, run `reencrypt` (rows sealed under an older key
//! are sealed again under the first). `PII_LOOKUP_KEY` keys the lookup hashes and pseudonyms; it
//! is not rotated in place (every stored lookup would change), which is why it is separate.
//!
//! One key per deployment, not one per person: erasure overwrites a person's fields with
//! [`TOMBSTONE`] in place (the rows the books need stay, under a [`PiiKeys::pseudonym`]), which
//! needs no key table to keep consistent across four databases and their backups; a per-person
//! key would only add crypto-shredding of old backups, and backups are retained for a bounded
//! time anyway (see README, "Privacy").
//!
//! Stored form: `pii1.{kid}.{base64url(nonce || ciphertext)}`. A value without the prefix is a
//! row written before encryption (or a tombstone): [`PiiKeys::open`] returns it as it is and
//! [`PiiKeys::needs_reseal`] says `reencrypt` should seal it.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, OsRng},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{ConfigError, Secret};

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "pii1";
const NONCE_BYTES: usize = 24;
const MIN_SECRET_LEN: usize = 32;
const MAX_KID_LEN: usize = 16;
/// Hex characters kept of a lookup hash: 128 bits, ample for equality among people.
const LOOKUP_HEX_LEN: usize = 32;

/// What an erased personal field holds from then on.
pub const TOMBSTONE: &str = "erased";

/// Flags and environment of the keys, flattened into every service's configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct PiiArgs {
    /// Keys that seal personal data at rest, `kid:secret[,kid:secret...]` (secrets of at
    /// least 32 characters); the first seals, all open.
    #[arg(
        long = "pii-keys",
        env = "PII_KEYS",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub pii_keys: Secret,
    /// Secret (at least 32 characters) of the keyed hashes personal data is looked up by.
    #[arg(
        long = "pii-lookup-key",
        env = "PII_LOOKUP_KEY",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub pii_lookup_key: Secret,
}

impl PiiArgs {
    pub fn keys(&self) -> Result<PiiKeys, ConfigError> {
        PiiKeys::parse(&self.pii_keys, &self.pii_lookup_key)
    }
}

/// A sealed value that cannot be opened: corrupt, or sealed under a key no longer configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    #[error("sealed personal data is malformed")]
    Malformed,
    #[error("personal data sealed under key {0:?}, which is not configured (PII_KEYS)")]
    UnknownKey(String),
    #[error("sealed personal data failed authentication")]
    Tampered,
}

#[derive(Clone)]
pub struct PiiKeys {
    /// The first seals.
    keys: Vec<(String, XChaCha20Poly1305)>,
    lookup: HmacSha256,
}

impl std::fmt::Debug for PiiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiKeys")
            .field("sealing_kid", &self.sealing_kid())
            .finish_non_exhaustive()
    }
}

fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A 256-bit key from a configured secret of any length (HMAC as the extractor, one label per
/// use so the sealing and lookup keys never coincide even if configured alike).
fn derive(secret: &str, label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(label.as_bytes()).expect("HMAC takes any key");
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

impl PiiKeys {
    /// Parses `PII_KEYS` and `PII_LOOKUP_KEY`; either missing or malformed is an error naming it.
    pub fn parse(keys: &Secret, lookup: &Secret) -> Result<Self, ConfigError> {
        let mut parsed: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for (i, item) in keys.expose().split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let Some((kid, secret)) = item.split_once(':') else {
                return Err(ConfigError::new(
                    "PII_KEYS",
                    format!("entry {} is not kid:secret", i + 1),
                ));
            };
            let kid = kid.trim();
            if !valid_kid(kid) {
                return Err(ConfigError::new(
                    "PII_KEYS",
                    format!(
                        "entry {}: the key id must be 1-{MAX_KID_LEN} letters, digits, _ or -",
                        i + 1
                    ),
                ));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(ConfigError::new(
                    "PII_KEYS",
                    format!("key {kid:?}: the secret must be at least {MIN_SECRET_LEN} characters"),
                ));
            }
            if parsed.iter().any(|(k, _)| k == kid) {
                return Err(ConfigError::new(
                    "PII_KEYS",
                    format!("key id {kid:?} appears twice"),
                ));
            }
            let key = derive(secret, "referral-mesh/pii/seal/v1");
            parsed.push((kid.to_string(), XChaCha20Poly1305::new(&key.into())));
        }
        if parsed.is_empty() {
            return Err(ConfigError::new(
                "PII_KEYS",
                "is required: kid:secret (at least 32 characters), the first one seals",
            ));
        }
        if lookup.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(
                "PII_LOOKUP_KEY",
                format!("is required: a secret of at least {MIN_SECRET_LEN} characters"),
            ));
        }
        let lookup_key = derive(lookup.expose(), "referral-mesh/pii/lookup/v1");
        Ok(Self {
            keys: parsed,
            lookup: <HmacSha256 as Mac>::new_from_slice(&lookup_key).expect("HMAC takes any key"),
        })
    }

    /// Fixed keys for tests (never for a deployment: they are in the source).
    pub fn for_tests() -> Self {
        Self::parse(
            &Secret::new("t1:referral-mesh-test-pii-key-0123456789abcdef"),
            &Secret::new("referral-mesh-test-pii-lookup-key-0123456789"),
        )
        .expect("test keys parse")
    }

    /// The id of the key that seals.
    pub fn sealing_kid(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `plain`; the empty string stays empty (an absent field is not personal data).
    pub fn seal(&self, plain: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let (kid, cipher) = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, plain.as_bytes())
            .expect("XChaCha20-Poly1305 seals any length we store");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}.{kid}.{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The plain value of a stored one: sealed values are opened (and authenticated); an
    /// unsealed one (empty, a tombstone, a row from before encryption) is returned as it is.
    pub fn open(&self, stored: &str) -> Result<String, PiiError> {
        let Some(rest) = stored.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('.')) else {
            return Ok(stored.to_string());
        };
        let (kid, body) = rest.split_once('.').ok_or(PiiError::Malformed)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or_else(|| PiiError::UnknownKey(kid.chars().take(MAX_KID_LEN).collect()))?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| PiiError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(PiiError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| PiiError::Malformed)?;
        let plain = cipher
            .decrypt(&XNonce::from(nonce), sealed)
            .map_err(|_| PiiError::Tampered)?;
        String::from_utf8(plain).map_err(|_| PiiError::Malformed)
    }

    /// Whether `reencrypt` should seal `stored` again: plaintext from before encryption, or
    /// sealed under a key other than the first. Tombstones and empty values stay.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        if stored.is_empty() || stored == TOMBSTONE {
            return false;
        }
        match stored.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('.')) {
            Some(rest) => !rest.starts_with(&format!("{}.", self.sealing_kid())),
            None => true,
        }
    }

    /// `stored` sealed under the first key (opened first); `None` when it needs nothing.
    pub fn reseal(&self, stored: &str) -> Result<Option<String>, PiiError> {
        if !self.needs_reseal(stored) {
            return Ok(None);
        }
        Ok(Some(self.seal(&self.open(stored)?)))
    }

    /// The keyed hash a value of `kind` (e.g. "email", "phone", "ip", "device") is looked up
    /// by; `value` must already be in canonical form (normalised email, E.164 phone...). The
    /// empty value hashes to the empty string, so "absent" never matches "absent".
    pub fn lookup(&self, kind: &str, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        let mut mac = self.lookup.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let mut hex = hex::encode(mac.finalize().into_bytes());
        hex.truncate(LOOKUP_HEX_LEN);
        hex
    }

    /// The stable pseudonym that replaces an erased person's id where a row must stay (ledger
    /// entries, aggregates): the same person always maps to the same pseudonym, so counts of
    /// distinct people stay right, and nobody without the lookup key can map it back.
    pub fn pseudonym(&self, person_id: &str) -> String {
        format!("anon-{}", &self.lookup("person", person_id)[..24])
    }
}

/// What one table went through in a service's `reencrypt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableResealed {
    pub table: &'static str,
    /// Rows read.
    pub examined: u64,
    /// Rows rewritten (sealed under the first key, or a lookup column hashed).
    pub changed: u64,
}

/// What a service's `reencrypt` did, printed by the command (counts only, never values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencryptReport {
    pub service: &'static str,
    pub tables: Vec<TableResealed>,
}

impl std::fmt::Display for ReencryptReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: re-encrypted", self.service)?;
        for t in &self.tables {
            write!(f, "; {} {} of {} rows", t.table, t.changed, t.examined)?;
        }
        Ok(())
    }
}

/// Whether an id is one [`PiiKeys::pseudonym`] made.
pub fn is_pseudonym(id: &str) -> bool {
    id.strip_prefix("anon-")
        .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An IP with its host part dropped, kept where a network (not a person) is the fact: IPv4 to
/// its /24, IPv6 to its /48. Anything unparseable becomes empty.
pub fn truncate_ip(ip: &str) -> String {
    match ip.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0")
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(raw: &str) -> PiiKeys {
        PiiKeys::parse(
            &Secret::new(raw),
            &Secret::new("lookup-secret-0123456789abcdef0123"),
        )
        .unwrap()
    }

    #[test]
    fn sealed_values_open_and_never_show_the_plaintext() {
        let k = PiiKeys::for_tests();
        let sealed = k.seal("anna@example.com");
        assert!(sealed.starts_with("pii1.t1."), "{sealed}");
        assert!(!sealed.contains("anna"));
        assert_ne!(sealed, k.seal("anna@example.com"), "a fresh nonce per value");
        assert_eq!(k.open(&sealed).unwrap(), "anna@example.com");
        assert_eq!(k.seal(""), "");
        assert_eq!(k.open("").unwrap(), "");
        assert_eq!(k.open(TOMBSTONE).unwrap(), TOMBSTONE);
    }

    #[test]
    fn rotation_opens_old_rows_and_reseals_them_under_the_new_key() {
        let old = keys("k1:old-secret-0123456789abcdef0123456789");
        let both = keys("k2:new-secret-0123456789abcdef0123456789,k1:old-secret-0123456789abcdef0123456789");
        let sealed_old = old.seal("+447700900123");
        assert_eq!(both.open(&sealed_old).unwrap(), "+447700900123");
        assert!(both.needs_reseal(&sealed_old));
        let resealed = both.reseal(&sealed_old).unwrap().unwrap();
        assert!(resealed.starts_with("pii1.k2."));
        assert!(!both.needs_reseal(&resealed));
        assert_eq!(both.reseal(&resealed).unwrap(), None);
        assert!(
            both.needs_reseal("legacy@example.com"),
            "plaintext from before encryption"
        );
        assert!(!both.needs_reseal(TOMBSTONE));
        assert_eq!(
            keys("k3:other-secret-0123456789abcdef0123456789").open(&sealed_old),
            Err(PiiError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn altered_or_malformed_values_are_refused() {
        let k = PiiKeys::for_tests();
        let sealed = k.seal("anna@example.com");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.open(&String::from_utf8(bytes).unwrap()),
            Err(PiiError::Tampered)
        );
        assert_eq!(k.open("pii1.t1"), Err(PiiError::Malformed));
        assert_eq!(k.open("pii1.t1.!!!"), Err(PiiError::Malformed));
        assert_eq!(k.open("pii1.t1.AAAA"), Err(PiiError::Malformed));
    }

    #[test]
    fn lookups_are_keyed_stable_and_separate_per_kind() {
        let k = PiiKeys::for_tests();
        let a = k.lookup("email", "anna@example.com");
        assert_eq!(a.len(), LOOKUP_HEX_LEN);
        assert_eq!(a, k.lookup("email", "anna@example.com"));
        assert_ne!(a, k.lookup("phone", "anna@example.com"));
        let other = PiiKeys::parse(
            &Secret::new("t1:referral-mesh-test-pii-key-0123456789abcdef"),
            &Secret::new("another-lookup-secret-0123456789abcdef"),
        )
        .unwrap();
        assert_ne!(a, other.lookup("email", "anna@example.com"));
        assert_eq!(k.lookup("email", ""), "");
        let p = k.pseudonym("couple-1");
        assert!(is_pseudonym(&p), "{p}");
        assert_eq!(p, k.pseudonym("couple-1"));
        assert!(!is_pseudonym("couple-1"));
    }

    #[test]
    fn configuration_errors_name_the_setting() {
        let lookup = Secret::new("lookup-secret-0123456789abcdef0123");
        for (raw, needle) in [
            ("", "is required"),
            ("nokid", "not kid:secret"),
            ("k1:short", "at least 32"),
            ("bad kid:0123456789abcdef0123456789abcdef", "key id"),
            (
                "k1:0123456789abcdef0123456789abcdef,k1:0123456789abcdef0123456789abcdef",
                "twice",
            ),
        ] {
            let e = PiiKeys::parse(&Secret::new(raw), &lookup).unwrap_err();
            assert_eq!(e.name, "PII_KEYS");
            assert!(e.problem.contains(needle), "{raw}: {}", e.problem);
        }
        let e = PiiKeys::parse(
            &Secret::new("k1:0123456789abcdef0123456789abcdef"),
            &Secret::new("short"),
        )
        .unwrap_err();
        assert_eq!(e.name, "PII_LOOKUP_KEY");
    }

    #[test]
    fn ips_keep_only_their_network() {
        assert_eq!(truncate_ip("203.0.113.77"), "203.0.113.0");
        assert_eq!(truncate_ip("2001:db8:abcd:12::1"), "2001:db8:abcd::");
        assert_eq!(truncate_ip("not an ip"), "");
        assert_eq!(truncate_ip(""), "");
    }
}
