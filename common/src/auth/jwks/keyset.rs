//! One JSON Web Key Set as published by an identity provider, reduced to the keys we can use:
//! RSA (RS256), P-256 (ES256) and Ed25519 (EdDSA) signature keys. Each key's algorithm comes
//! from the key itself (its type and curve; a declared `alg` must agree), never from a token,
//! so a token cannot choose how it is checked. Symmetric (`oct`) keys, encryption keys and
//! other curves are skipped; a set with nothing usable is an error.

use jsonwebtoken::{
    Algorithm, DecodingKey, Header,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use serde::Deserialize;

/// Most keys one set may hold (providers publish two or three).
pub const MAX_KEYS: usize = 64;
/// Longest `kid` kept (and looked up).
pub const MAX_KID_CHARS: usize = 256;
/// Weaker RSA keys are skipped.
const MIN_RSA_BITS: usize = 2048;

/// A usable verification key.
pub struct Key {
    pub kid: Option<String>,
    /// Taken from the key, never from a token.
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The usable keys of one set.
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why no key verifies a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoKey {
    /// Its `kid` is not in the set (maybe newer than our copy: worth a refresh).
    UnknownKid,
    /// The key it names is for another algorithm, or no key is of its algorithm.
    WrongAlgorithm,
    /// No `kid`, and more than one key of its algorithm.
    Ambiguous,
}

impl KeySet {
    /// Parses a set (`{"keys": [...]}`). Unusable keys are skipped; a set without any usable
    /// key, with too many keys or with one `kid` twice is refused whole.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("not a JWK Set ({e})"))?;
        if raw.keys.len() > MAX_KEYS {
            return Err(format!("more than {MAX_KEYS} keys"));
        }
        let mut keys: Vec<Key> = Vec::new();
        for value in raw.keys {
            // One key we cannot read must not take the provider's other keys down with it.
            let Some(key) = serde_json::from_value::<Jwk>(value).ok().and_then(|j| usable(&j)) else {
                continue;
            };
            if let Some(kid) = &key.kid
                && keys.iter().any(|k| k.kid.as_ref() == Some(kid))
            {
                return Err(format!("kid {kid:?} appears twice"));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no usable signature key (RS256, ES256 or EdDSA)".into());
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key that must have signed a token with this header: the one its `kid` names, of
    /// the algorithm the header claims. Without a `kid`, the only key of that algorithm.
    pub fn select(&self, header: &Header) -> Result<&Key, NoKey> {
        match &header.kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_ref() == Some(kid)) {
                Some(k) if k.alg == header.alg => Ok(k),
                Some(_) => Err(NoKey::WrongAlgorithm),
                None => Err(NoKey::UnknownKid),
            },
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.alg == header.alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(NoKey::WrongAlgorithm),
                    (Some(_), Some(_)) => Err(NoKey::Ambiguous),
                }
            }
        }
    }
}

/// The key as we will use it, or `None` when it is not a signature key of ours.
fn usable(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let (alg, declared_ok) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let bits = base64_len(&p.n) * 8;
            if bits < MIN_RSA_BITS {
                return None;
            }
            (
                Algorithm::RS256,
                matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256)),
            )
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => (
            Algorithm::ES256,
            matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::ES256)),
        ),
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => (
            Algorithm::EdDSA,
            matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::EdDSA)),
        ),
        // `oct` (a shared secret has no place in a public set), other curves, other types.
        _ => return None,
    };
    let kid = jwk.common.key_id.clone();
    if !declared_ok
        || kid
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.chars().count() > MAX_KID_CHARS)
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { kid, alg, key })
}

/// Bytes encoded by unpadded base64url text of this length (leading zeros included, which a
/// JWK modulus has none of).
fn base64_len(text: &str) -> usize {
    text.trim_end_matches('=').len() * 3 / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwks::testkeys;

    fn header(alg: Algorithm, kid: Option<&str>) -> Header {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        h
    }

    #[test]
    fn each_supported_key_type_gets_its_algorithm_from_the_key() {
        let set = KeySet::parse(testkeys::set(&["rsa-a", "p256", "ed25519"]).as_bytes()).unwrap();
        assert_eq!(set.len(), 3);
        for (kid, alg) in [
            ("rsa-a", Algorithm::RS256),
            ("p256", Algorithm::ES256),
            ("ed25519", Algorithm::EdDSA),
        ] {
            assert_eq!(set.select(&header(alg, Some(kid))).unwrap().alg, alg);
        }
        // The header claiming another algorithm for a key does not change the key's.
        assert_eq!(
            set.select(&header(Algorithm::HS256, Some("rsa-a"))).err(),
            Some(NoKey::WrongAlgorithm)
        );
        assert_eq!(
            set.select(&header(Algorithm::ES256, Some("ed25519"))).err(),
            Some(NoKey::WrongAlgorithm)
        );
        assert_eq!(
            set.select(&header(Algorithm::RS256, Some("rsa-b"))).err(),
            Some(NoKey::UnknownKid)
        );
    }

    #[test]
    fn without_kid_only_a_single_key_of_the_algorithm_is_chosen() {
        let set = KeySet::parse(testkeys::set(&["rsa-a", "rsa-b", "ed25519"]).as_bytes()).unwrap();
        assert_eq!(
            set.select(&header(Algorithm::EdDSA, None)).unwrap().alg,
            Algorithm::EdDSA
        );
        assert_eq!(
            set.select(&header(Algorithm::RS256, None)).err(),
            Some(NoKey::Ambiguous)
        );
        assert_eq!(
            set.select(&header(Algorithm::ES256, None)).err(),
            Some(NoKey::WrongAlgorithm)
        );
    }

    #[test]
    fn unusable_keys_are_skipped_and_empty_or_odd_sets_refused() {
        let ed = testkeys::jwk("ed25519");
        let mut declared_rs = ed.clone();
        declared_rs["alg"] = "RS256".into();
        declared_rs["kid"] = "liar".into();
        let mut enc = ed.clone();
        enc["use"] = "enc".into();
        enc["kid"] = "enc".into();
        let oct =
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "hmac"});
        let unknown = serde_json::json!({"kty": "XYZ", "kid": "odd"});
        let small_rsa = serde_json::json!({"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"});
        let set = serde_json::json!({"keys": [ed, declared_rs, enc, oct, unknown, small_rsa]});
        let set = KeySet::parse(set.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.contains_kid("ed25519"));
        for kid in ["liar", "enc", "hmac", "odd", "small"] {
            assert!(!set.contains_kid(kid), "{kid}");
        }

        for bad in [
            "".to_string(),
            "[]".into(),
            r#"{"keys": []}"#.into(),
            serde_json::json!({"keys": [oct_only()]}).to_string(),
            serde_json::json!({"keys": [testkeys::jwk("rsa-a"), testkeys::jwk("rsa-a")]}).to_string(),
            serde_json::json!({"keys": vec![testkeys::jwk("ed25519"); MAX_KEYS + 1]}).to_string(),
        ] {
            assert!(KeySet::parse(bad.as_bytes()).is_err(), "{bad:.80}");
        }
    }

    fn oct_only() -> serde_json::Value {
        serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "k"})
    }
}
