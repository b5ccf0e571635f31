//! Web tokens from an identity provider through the real gateway: the mesh verifies tokens
//! against a JWKS served on loopback (RS256 and EdDSA keys), picks up a newly published
//! key on its first token, and answers 401 to a key it does not know, a key under another
//! key's `kid`, an HS256 token "signed" with the public key and `alg: none`.

use std::sync::{Arc, Mutex};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use referral_tests::{invitation, spawn_app_with, unique};
use serde_json::json;

/// The fixed throwaway keys of `common/testdata/jwks`.
fn key(name: &str) -> (EncodingKey, Algorithm) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../common/testdata/jwks");
    let der = std::fs::read(format!("{dir}/{name}.der")).expect("test key");
    match name {
        "ed25519" => (EncodingKey::from_ed_der(&der), Algorithm::EdDSA),
        "p256" => (EncodingKey::from_ec_der(&der), Algorithm::ES256),
        _ => (EncodingKey::from_rsa_der(&der), Algorithm::RS256),
    }
}

fn jwk(name: &str) -> serde_json::Value {
    let (k, alg) = key(name);
    let mut jwk = Jwk::from_encoding_key(&k, alg).unwrap();
    jwk.common.key_id = Some(name.to_string());
    serde_json::to_value(jwk).unwrap()
}

fn set(names: &[&str]) -> String {
    json!({ "keys": names.iter().map(|n| jwk(n)).collect::<Vec<_>>() }).to_string()
}

fn member(sub: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "role": "member", "kind": "SUPPLIER", "exp": now + 600, "iat": now})
}

fn sign(name: &str, kid: &str, claims: &serde_json::Value) -> String {
    let (k, alg) = key(name);
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &k).unwrap()
}

/// The provider's JWKS endpoint, on 127.0.0.1, serving what the test last published.
async fn provider(initial: String) -> (String, Arc<Mutex<String>>) {
    let published = Arc::new(Mutex::new(initial));
    let p = published.clone();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let p = p.clone();
            async move { p.lock().unwrap().clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, published)
}

#[tokio::test]
async fn provider_tokens_work_through_the_gateway_and_strangers_get_401() {
    let (url, published) = provider(set(&["rsa-a", "ed25519"])).await;
    let app = spawn_app_with(vec!["--jwt-jwks-url".into(), url]).await;

    // RS256 and EdDSA members act as exactly themselves.
    for name in ["rsa-a", "ed25519"] {
        let sub = unique(name);
        let token = sign(name, name, &member(&sub));
        let email = format!("{}@example.com", unique("guest"));
        let (status, created) = app
            .post(&token, "/v1/invitations", invitation(&sub, "LINK", &email))
            .await;
        assert_eq!(status, 200, "{name}: {created}");
        assert_eq!(created["referrerId"], sub.as_str());
        let id = created["id"].as_str().unwrap();
        let (status, _) = app.get(&token, &format!("/v1/invitations/{id}")).await;
        assert_eq!(status, 200, "{name}");
        // Someone else's id is still refused: the token's subject is the member.
        let (status, _) = app
            .post(
                &token,
                "/v1/invitations",
                invitation("someone-else", "LINK", &email),
            )
            .await;
        assert_eq!(status, 403, "{name}");
    }

    // The provider rotates in a new key: its first token fetches the set again.
    *published.lock().unwrap() = set(&["rsa-a", "ed25519", "rsa-b"]);
    let sub = unique("rotated");
    let token = sign("rsa-b", "rsa-b", &member(&sub));
    let email = format!("{}@example.com", unique("guest"));
    let (status, body) = app
        .post(&token, "/v1/invitations", invitation(&sub, "LINK", &email))
        .await;
    assert_eq!(status, 200, "{body}");

    // The mesh's own HS256 tokens keep working next to the JWKS.
    let sub = unique("hs");
    let (status, body) = app
        .post(
            &app.member(&sub, "SUPPLIER"),
            "/v1/invitations",
            invitation(&sub, "LINK", &format!("{}@example.com", unique("g"))),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Refused: an unpublished key, a key under another's kid, a member without a kind,
    // HS256 keyed with the RSA public key, alg none.
    let n = jwk("rsa-a")["n"].as_str().unwrap().to_string();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-a".into());
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut no_kind = member("kindless");
    no_kind.as_object_mut().unwrap().remove("kind");
    let refused = [
        ("unknown key", sign("p256", "p256", &member("mallory"))),
        ("other key's kid", sign("rsa-b", "rsa-a", &member("mallory"))),
        ("no kind", sign("rsa-a", "rsa-a", &no_kind)),
        (
            "HS256 with the public key",
            jsonwebtoken::encode(
                &hs_header,
                &member("mallory"),
                &EncodingKey::from_secret(n.as_bytes()),
            )
            .unwrap(),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "kid": "rsa-a"})),
                b64(member("mallory"))
            ),
        ),
    ];
    for (what, token) in refused {
        let (status, body) = app
            .post(
                &token,
                "/v1/invitations",
                invitation("mallory", "LINK", "m@example.com"),
            )
            .await;
        assert_eq!(status, 401, "{what}: {body}");
        let (status, _) = app.get(&token, "/v1/fraud/cases").await;
        assert_eq!(status, 401, "{what}");
    }
}
