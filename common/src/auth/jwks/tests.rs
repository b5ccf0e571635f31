//! Web tokens against a JWKS, with real keys (`testkeys`): each algorithm, `kid` rotation
//! from a file and a URL, failed refreshes, and the tokens that must never pass.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::{Jwks, JwksOptions, Source, testkeys};
use crate::{
    auth::{JwtKeys, Role, TokenError, TokenPolicy, Verifier, tokens::ServiceKeys},
    config::Secret,
};

const SECRET: &str = "web-secret-of-enough-length-0123456789";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn member_claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub, "role": "member", "kind": "COUPLE", "exp": now() + 600, "iat": now()})
}

fn fast() -> JwksOptions {
    JwksOptions {
        refresh: Duration::from_secs(3600),
        min_refetch: Duration::from_secs(3600),
        file_poll: Duration::from_millis(50),
    }
}

struct JwksFile {
    _dir: tempdir::Dir,
    path: std::path::PathBuf,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl JwksFile {
    fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("jwks-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, text).unwrap();
        Self {
            _dir: tempdir::Dir(dir),
            path,
        }
    }

    /// Replaced as a Secret volume does it (a new file renamed over), so a reader never sees
    /// it half-written.
    fn replace(&self, text: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

async fn file_keys(file: &JwksFile, with_secret: bool, options: JwksOptions) -> JwtKeys {
    let jwks = Jwks::load(Source::File(file.path.clone()), options)
        .await
        .unwrap();
    let secret = Secret::new(SECRET);
    JwtKeys::from_sources(with_secret.then_some(&secret), Some(jwks), TokenPolicy::default())
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..100 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 2s");
}

#[tokio::test]
async fn tokens_of_each_algorithm_verify_with_the_key_their_kid_names() {
    let file = JwksFile::new(&testkeys::set(&["rsa-a", "p256", "ed25519"]));
    let keys = file_keys(&file, false, fast()).await;
    for name in ["rsa-a", "p256", "ed25519"] {
        let t = testkeys::sign(name, Some(name), &member_claims(name));
        let c = keys.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role), (name, Role::Member), "{name}");
    }
    // A key's token under another key's kid: refused.
    let t = testkeys::sign("rsa-b", Some("rsa-a"), &member_claims("x"));
    assert_eq!(keys.verify(&t).unwrap_err(), TokenError::WrongKey);
    // A key not in the set: refused.
    let t = testkeys::sign("rsa-b", Some("rsa-b"), &member_claims("x"));
    assert!(matches!(keys.verify(&t), Err(TokenError::Invalid(_))));
    // Without JWT_SECRET, HS256 tokens have no key at all, and nothing is minted.
    let hs = JwtKeys::new(&Secret::new(SECRET)).mint("u", Role::Admin, None, Duration::from_secs(60));
    assert_eq!(keys.verify(&hs).unwrap_err(), TokenError::WrongKey);
    assert_eq!(keys.mint("u", Role::Admin, None, Duration::from_secs(60)), "");
}

#[tokio::test]
async fn the_same_policy_applies_to_jwks_tokens() {
    let file = JwksFile::new(&testkeys::set(&["ed25519"]));
    let jwks = Jwks::load(Source::File(file.path.clone()), fast()).await.unwrap();
    let policy = TokenPolicy {
        max_lifetime: Duration::from_secs(600),
        issuer: Some("https://id.example".into()),
        audience: Some("referral-mesh".into()),
    };
    let keys = JwtKeys::from_sources(None, Some(jwks), policy);
    let n = now();
    let signed = |c: serde_json::Value| testkeys::sign("ed25519", Some("ed25519"), &c);
    let good = serde_json::json!({"sub": "u", "role": "member", "kind": "SUPPLIER", "exp": n + 300, "iat": n,
        "iss": "https://id.example", "aud": "referral-mesh"});
    assert!(keys.verify(&signed(good.clone())).is_ok());
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        signed(c)
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        signed(c)
    };
    for (what, token) in [
        ("expired", with("exp", (n - 3600).into())),
        ("too long", with("exp", (n + 3600).into())),
        ("not yet", with("nbf", (n + 300).into())),
        ("issuer", with("iss", "https://evil.example".into())),
        ("audience", with("aud", "other".into())),
        ("kind", with("kind", "VENDOR".into())),
        ("service role", with("role", "service".into())),
        ("subject", with("sub", "a\u{202E}b".into())),
        ("no exp", without("exp")),
        ("no kind", without("kind")),
        ("no iss", without("iss")),
        ("no aud", without("aud")),
    ] {
        assert!(keys.verify(&token).is_err(), "{what}");
    }
}

#[tokio::test]
async fn hs256_with_the_public_key_and_alg_none_are_refused() {
    let file = JwksFile::new(&testkeys::set(&["rsa-a", "ed25519"]));
    let keys = file_keys(&file, true, fast()).await;
    let claims = member_claims("mallory");
    // HS256 "signed" with the RSA public key as published (n, as text and as bytes), under
    // the RSA key's kid: the HS256 path uses JWT_SECRET only, the JWKS path RS256 only.
    let jwk = testkeys::jwk("rsa-a");
    let n = jwk["n"].as_str().unwrap().to_string();
    let n_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&n)
        .unwrap();
    let rsa_der = testkeys::der("rsa-a");
    for secret in [n.as_bytes(), &n_bytes[..], rsa_der, jwk.to_string().as_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut h = Header::new(alg);
            h.kid = Some("rsa-a".into());
            let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret)).unwrap();
            assert_eq!(keys.verify(&t).unwrap_err(), TokenError::WrongKey, "{alg:?}");
        }
    }
    // alg none (and variants), with and without a signature.
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let body = b64(claims.clone());
    for alg in ["none", "None", "NONE", ""] {
        let head = b64(serde_json::json!({"alg": alg, "typ": "JWT", "kid": "rsa-a"}));
        for t in [format!("{head}.{body}."), format!("{head}.{body}.AAAA")] {
            assert_eq!(keys.verify(&t).unwrap_err(), TokenError::Malformed, "{alg:?}");
        }
    }
    // An EdDSA token claiming RS256 under the EdDSA key's kid, and the other way round.
    let ed = testkeys::sign("ed25519", Some("ed25519"), &claims);
    let (_, rest) = ed.split_once('.').unwrap();
    let forged = format!(
        "{}.{rest}",
        b64(serde_json::json!({"alg": "RS256", "kid": "ed25519"}))
    );
    assert_eq!(keys.verify(&forged).unwrap_err(), TokenError::WrongKey);
    // Unparsable headers.
    for t in ["", "a.b.c", "e30.e30.", "%%%.e30.x"] {
        assert_eq!(keys.verify(t).unwrap_err(), TokenError::Malformed, "{t:?}");
    }
    // The HS256 secret still works next to the JWKS.
    let hs = JwtKeys::new(&Secret::new(SECRET)).mint("u", Role::Admin, None, Duration::from_secs(60));
    assert_eq!(keys.verify(&hs).unwrap().role, Role::Admin);
}

#[tokio::test]
async fn a_token_without_kid_needs_exactly_one_key_of_its_algorithm() {
    let file = JwksFile::new(&testkeys::set(&["rsa-a", "rsa-b", "ed25519"]));
    let keys = file_keys(&file, false, fast()).await;
    let ed = testkeys::sign("ed25519", None, &member_claims("u"));
    assert!(keys.verify(&ed).is_ok());
    let rsa = testkeys::sign("rsa-a", None, &member_claims("u"));
    assert!(matches!(keys.verify(&rsa), Err(TokenError::Invalid(_))));
    let es = testkeys::sign("p256", None, &member_claims("u"));
    assert_eq!(keys.verify(&es).unwrap_err(), TokenError::WrongKey);
}

#[tokio::test]
async fn a_changed_file_rotates_keys_and_a_broken_one_keeps_the_last_good_set() {
    let file = JwksFile::new(&testkeys::set(&["rsa-a"]));
    let keys = file_keys(&file, false, fast()).await;
    let a = testkeys::sign("rsa-a", Some("rsa-a"), &member_claims("u"));
    let b = testkeys::sign("rsa-b", Some("rsa-b"), &member_claims("u"));
    assert!(keys.verify(&a).is_ok());
    assert!(keys.verify(&b).is_err());
    // Rotation: b published, a removed.
    file.replace(&testkeys::set(&["rsa-b"]));
    eventually("rotation", || keys.verify(&b).is_ok()).await;
    assert!(keys.verify(&a).is_err());
    // A broken file (not a set; a set without usable keys; gone): b stays in force.
    for broken in [
        "{not json",
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}"#,
    ] {
        file.replace(broken);
        let jwks = keys.jwks().unwrap().clone();
        assert!(jwks.refresh().await.is_err());
        assert!(keys.verify(&b).is_ok(), "{broken}");
    }
    std::fs::remove_file(&file.path).unwrap();
    assert!(keys.jwks().unwrap().refresh().await.is_err());
    assert!(keys.verify(&b).is_ok());
    // Fixed again: read at once.
    file.replace(&testkeys::set(&["rsa-a", "rsa-b"]));
    eventually("recovery", || keys.verify(&a).is_ok()).await;
}

/// A JWKS endpoint on loopback whose answer the test changes, counting requests.
struct Endpoint {
    url: String,
    body: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

async fn endpoint(text: String) -> Endpoint {
    let body = Arc::new(Mutex::new((200, text)));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (body.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (b, h) = (b.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let (status, text) = b.lock().unwrap().clone();
                (axum::http::StatusCode::from_u16(status).unwrap(), text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Endpoint { url, body, hits }
}

impl Endpoint {
    fn serve(&self, status: u16, text: String) {
        *self.body.lock().unwrap() = (status, text);
    }
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_url_again_at_most_once_per_interval() {
    let ep = endpoint(testkeys::set(&["rsa-a"])).await;
    let jwks = Jwks::load(Source::url(&ep.url).unwrap(), fast()).await.unwrap();
    let keys = JwtKeys::from_sources(None, Some(jwks.clone()), TokenPolicy::default());
    assert_eq!(ep.hits.load(Ordering::SeqCst), 1);
    let b = testkeys::sign("rsa-b", Some("rsa-b"), &member_claims("u"));
    let a = testkeys::sign("rsa-a", Some("rsa-a"), &member_claims("u"));
    // The provider rotates: b added, a removed. The first token by b fetches the new set.
    ep.serve(200, testkeys::set(&["rsa-b"]));
    keys.refresh_for(&b).await;
    assert_eq!(ep.hits.load(Ordering::SeqCst), 2);
    assert!(keys.verify(&b).is_ok());
    assert!(keys.verify(&a).is_err());
    // Known kids, HS256 tokens and garbage fetch nothing; further unknown kids wait for the
    // interval (a is unknown now, and so is any random kid).
    for t in [
        &b,
        &a,
        "garbage",
        &testkeys::sign("p256", Some("random"), &member_claims("u")),
    ] {
        keys.refresh_for(t).await;
        let _ = keys.verify(t);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ep.hits.load(Ordering::SeqCst), 2);
    // A forced refresh that fails (500, not a set) keeps b.
    for (status, text) in [(500, "oops".to_string()), (200, "<html>".to_string())] {
        ep.serve(status, text);
        assert!(jwks.refresh().await.is_err());
        assert!(keys.verify(&b).is_ok());
    }
}

#[tokio::test]
async fn services_refresh_in_the_background_on_an_unknown_kid() {
    let ep = endpoint(testkeys::set(&["ed25519"])).await;
    let options = JwksOptions {
        min_refetch: Duration::ZERO,
        ..fast()
    };
    let jwks = Jwks::load(Source::url(&ep.url).unwrap(), options).await.unwrap();
    let web = JwtKeys::from_sources(Some(&Secret::new(SECRET)), Some(jwks), TokenPolicy::default());
    let verifier = Verifier::new(
        web,
        ServiceKeys::new(&Secret::new("service-secret-of-enough-length-987654")),
    );
    let t = testkeys::sign("p256", Some("p256"), &member_claims("u"));
    ep.serve(200, testkeys::set(&["ed25519", "p256"]));
    // Refused at once (an interceptor cannot wait), accepted once the refresher fetched.
    assert!(verifier.verify(&t).is_err());
    eventually("background refresh", || verifier.verify(&t).is_ok()).await;
}

#[tokio::test]
async fn the_periodic_refresh_picks_up_new_keys() {
    let ep = endpoint(testkeys::set(&["rsa-a"])).await;
    let options = JwksOptions {
        refresh: Duration::from_millis(100),
        ..fast()
    };
    let jwks = Jwks::load(Source::url(&ep.url).unwrap(), options).await.unwrap();
    ep.serve(200, testkeys::set(&["rsa-a", "ed25519"]));
    eventually("periodic refresh", || jwks.current().contains_kid("ed25519")).await;
    // Refreshes keep going while failing, and the set stays.
    ep.serve(503, String::new());
    let before = ep.hits.load(Ordering::SeqCst);
    eventually("more attempts", || ep.hits.load(Ordering::SeqCst) >= before + 2).await;
    assert_eq!(jwks.current().len(), 2);
}
