//! Fixed throwaway keys (`common/testdata/jwks`) for the JWKS tests: each signs tokens and
//! is published as a JWK under its own name as `kid`.

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};

pub fn der(name: &str) -> &'static [u8] {
    match name {
        "rsa-a" => include_bytes!("../../../testdata/jwks/rsa-a.der"),
        "rsa-b" => include_bytes!("../../../testdata/jwks/rsa-b.der"),
        "p256" => include_bytes!("../../../testdata/jwks/p256.der"),
        "ed25519" => include_bytes!("../../../testdata/jwks/ed25519.der"),
        other => panic!("no test key {other}"),
    }
}

pub fn alg(name: &str) -> Algorithm {
    match name {
        "p256" => Algorithm::ES256,
        "ed25519" => Algorithm::EdDSA,
        _ => Algorithm::RS256,
    }
}

pub fn encoding(name: &str) -> EncodingKey {
    match alg(name) {
        Algorithm::ES256 => EncodingKey::from_ec_der(der(name)),
        Algorithm::EdDSA => EncodingKey::from_ed_der(der(name)),
        _ => EncodingKey::from_rsa_der(der(name)),
    }
}

/// The public JWK of `name`, with `kid` = `name`.
pub fn jwk(name: &str) -> serde_json::Value {
    let mut jwk = Jwk::from_encoding_key(&encoding(name), alg(name)).unwrap();
    jwk.common.key_id = Some(name.to_string());
    serde_json::to_value(jwk).unwrap()
}

/// A JWK Set of these keys, as text.
pub fn set(names: &[&str]) -> String {
    let keys: Vec<_> = names.iter().map(|n| jwk(n)).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// `claims` signed by `name`'s key, with `kid` in the header when given.
pub fn sign(name: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg(name));
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &encoding(name)).unwrap()
}
