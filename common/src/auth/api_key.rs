//! The shape of an API key: `rmk_` and 43 random base62 characters (256 bits). Only the
//! key's SHA-256 is stored; a key is found by that hash (one indexed lookup), and a key of
//! the wrong shape is refused before anything is looked up.
//!
//! A plain hash (no salt, no slow KDF) is enough here: the secret is 256 random bits, so
//! there is nothing to guess from the hash, and the lookup stays one index probe.

use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every key starts with, so a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "rmk_";
/// Random characters after the prefix: 43 base62 characters carry 256 bits.
pub const SECRET_CHARS: usize = 43;
/// Characters of the secret shown in listings, to tell keys apart (never enough to use).
const SHOWN_CHARS: usize = 8;

/// A freshly generated key: the secret (shown once), its hash and its recognisable prefix.
#[derive(Clone)]
pub struct NewKey {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A new random key from the thread's CSPRNG (ChaCha, seeded by the OS).
pub fn generate() -> NewKey {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(SECRET_CHARS)
        .map(char::from)
        .collect();
    let secret = format!("{KEY_PREFIX}{random}");
    NewKey {
        hash: hash(&secret),
        prefix: shown_prefix(&secret),
        secret,
    }
}

/// True when `token` has a key's exact shape: the prefix, then 43 ASCII letters or digits.
/// Anything else (empty, longer, non-ASCII, control characters) is not a key.
pub fn is_key_shaped(token: &str) -> bool {
    token.len() == KEY_PREFIX.len() + SECRET_CHARS
        && token
            .strip_prefix(KEY_PREFIX)
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// True when `token` claims to be an API key (so it must be judged as one, never as a JWT).
pub fn claims_to_be_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

/// The stored form of a key: lower-case hex SHA-256.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether a stored hash is that of `secret`, compared in constant time.
pub fn matches(stored_hash: &str, secret: &str) -> bool {
    bool::from(stored_hash.as_bytes().ct_eq(hash(secret).as_bytes()))
}

/// `rmk_` and the first characters of the secret, for recognising a key in a listing.
pub fn shown_prefix(secret: &str) -> String {
    secret.chars().take(KEY_PREFIX.len() + SHOWN_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_shape_and_differ() {
        let a = generate();
        let b = generate();
        assert!(is_key_shaped(&a.secret), "{}", a.secret);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(a.secret.starts_with(&a.prefix) && a.prefix.len() == 12);
        assert!(matches(&a.hash, &a.secret));
        assert!(!matches(&a.hash, &b.secret));
        assert!(
            !format!("{a:?}").contains(&a.secret),
            "Debug never prints the secret"
        );
    }

    #[test]
    fn only_the_exact_shape_is_a_key() {
        let good = format!("rmk_{}", "A".repeat(SECRET_CHARS));
        assert!(is_key_shaped(&good));
        for bad in [
            String::new(),
            "rmk_".into(),
            format!("rmk_{}", "A".repeat(SECRET_CHARS - 1)),
            format!("rmk_{}", "A".repeat(SECRET_CHARS + 1)),
            format!("rmk_{}", "A".repeat(10_000)),
            format!("rmk_{}é", "A".repeat(SECRET_CHARS - 2)),
            format!("rmk_{}\n", "A".repeat(SECRET_CHARS - 1)),
            format!("rmk_{}-", "A".repeat(SECRET_CHARS - 1)),
            format!("RMK_{}", "A".repeat(SECRET_CHARS)),
        ] {
            assert!(!is_key_shaped(&bad), "{bad:?}");
        }
        assert!(claims_to_be_key("rmk_") && !claims_to_be_key("eyJhbGciOi"));
    }
}
