//! Malformed requests and authentication at the gateway (docs/api.md, Conventions).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use referral_tests::{SECRET, assert_error, invitation, spawn_app, unique, violated_fields};
use serde_json::{Value, json};

fn jwt(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_naming_the_field() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");

    // Not JSON at all, cut short, or followed by junk.
    for raw in ["{\"referrerId\": ", "not json", "{} {}", ""] {
        let r = app.post_raw(&token, "/v1/invitations", raw.to_string()).await;
        assert_eq!(r.status, 400, "body {raw:?} -> {} {}", r.status, r.body);
        assert_error(&r.body, 3);
    }

    // Each case: the body, and the field the answer must name.
    let good = invitation(&sue, "EMAIL", "ann@example.com");
    let with = |path: &[&str], value: Value| {
        let mut b = good.clone();
        let mut at = &mut b;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&["colour"], json!("red")), "colour"),
        (with(&["recipient", "emial"], json!("a@b.c")), "recipient.emial"),
        (with(&["channel"], json!(99)), "channel"),
        (with(&["channel"], json!(true)), "channel"),
        (with(&["channel"], json!("CARRIER_PIGEON")), "channel"),
        (with(&["referrerKind"], json!("ALIEN")), "referrerKind"),
        (with(&["recipient"], json!("ann@example.com")), "recipient"),
        (with(&["recipient", "email"], json!(5)), "recipient.email"),
        (with(&["sendAt"], json!("next tuesday")), "sendAt"),
        (with(&["weddingDate"], json!("12/06/2027")), "weddingDate"),
        (
            with(&["recipient", "email"], json!("not-an-email")),
            "recipient.email",
        ),
        (
            with(&["recipient", "timezone"], json!("Mars/Olympus_Mons")),
            "recipient.timezone",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post(&token, "/v1/invitations", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_error(&answer, 3);
        let fields = violated_fields(&answer);
        assert!(
            fields.iter().any(|f| f == field),
            "{body} -> {answer}: should name {field}"
        );
        assert!(
            answer["message"].as_str().unwrap_or_default().contains(field),
            "message names {field}: {answer}"
        );
    }

    // Inside a batch the path says which item.
    let (status, answer) = app
        .post(
            &token,
            "/v1/invitations:batchCreate",
            json!({"referrerId": sue, "referrerKind": "SUPPLIER", "invitations": [
                {"refereeKind": "COUPLE", "channel": "LINK"}, {"refereeKind": "COUPLE", "channel": "LINK"},
                {"refereeKind": "COUPLE", "channel": "PIGEON"}
            ]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        violated_fields(&answer).contains(&"invitations[2].channel".to_string()),
        "{answer}"
    );

    // Missing required fields: every one is named.
    let (status, answer) = app.post(&token, "/v1/invitations", json!({})).await;
    assert_eq!(status, 400, "{answer}");
    let fields = violated_fields(&answer);
    for field in ["referrerId", "referrerKind", "refereeKind", "channel"] {
        assert!(
            fields.iter().any(|f| f == field),
            "{{}} should name {field}: {answer}"
        );
    }
    let mut no_email = good.clone();
    no_email["recipient"] = json!({"name": "Ann"});
    let (status, answer) = app.post(&token, "/v1/invitations", no_email).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        violated_fields(&answer).contains(&"recipient.email".to_string()),
        "EMAIL needs an address: {answer}"
    );
    let (status, answer) = app
        .post(&token, "/v1/signups", json!({"userKind": "COUPLE"}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        violated_fields(&answer).contains(&"userId".to_string()),
        "{answer}"
    );
    let (status, answer) = app
        .post(
            &app.billing_key().await,
            "/v1/conversions",
            json!({"userId": sue, "plan": "PRO"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(violated_fields(&answer).contains(&"plan".to_string()), "{answer}");

    // Nothing was created by any of this.
    let (status, list) = app
        .get(&token, &format!("/v1/invitations?referrerId={sue}"))
        .await;
    assert_eq!(status, 200);
    assert!(
        list["invitations"].as_array().is_none_or(Vec::is_empty),
        "{list:.300}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let mut body = invitation(&sue, "EMAIL", "big@example.com");
    body["message"] = json!("x".repeat(2 * 1024 * 1024));
    let r = app
        .post_raw(
            &token,
            "/v1/invitations",
            serde_json::to_vec(&body).expect("json"),
        )
        .await;
    assert_eq!(r.status, 413, "a 2 MiB body -> {} {:.300}", r.status, r.body);
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:.300}",
        r.body
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bad_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let body = invitation(&sue, "EMAIL", "ann@example.com");
    let now = chrono::Utc::now().timestamp();
    let expired = jwt(
        &json!({"sub": sue, "role": "member", "kind": "SUPPLIER", "exp": now - 3600, "iat": now - 7200}),
        SECRET,
    );
    let forged = jwt(
        &json!({"sub": sue, "role": "admin", "exp": now + 3600}),
        "some-other-secret-0123456789-abcdefgh",
    );
    let no_exp = jwt(&json!({"sub": sue, "role": "member", "kind": "SUPPLIER"}), SECRET);
    let valid = app.member(&sue, "SUPPLIER");
    let tampered = {
        // The signature of the valid token over a payload that claims admin.
        let parts: Vec<&str> = valid.split('.').collect();
        let admin = jwt(
            &json!({"sub": sue, "role": "admin", "exp": now + 3600}),
            "x-secret-of-no-importance-0123456789",
        );
        let admin_payload = admin.split('.').nth(1).unwrap_or_default().to_string();
        format!("{}.{}.{}", parts[0], admin_payload, parts[2])
    };
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": sue, "role": "admin", "exp": now + 3600}))
    );

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        ("expired", Some(format!("Bearer {expired}"))),
        ("signed with another secret", Some(format!("Bearer {forged}"))),
        ("tampered payload", Some(format!("Bearer {tampered}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        ("without exp", Some(format!("Bearer {no_exp}"))),
        ("garbage", Some("Bearer not.a.jwt".into())),
        ("not bearer", Some(format!("Basic {}", b64(&json!("sue:pw"))))),
    ];
    for (what, auth) in &cases {
        for (method, path, send_body) in [
            (reqwest::Method::POST, "/v1/invitations".to_string(), true),
            (
                reqwest::Method::GET,
                format!("/v1/invitations?referrerId={sue}"),
                false,
            ),
            (reqwest::Method::POST, "/v1/referral-codes".to_string(), true),
        ] {
            let mut rb = app.http.request(method.clone(), app.url(&path));
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            if send_body {
                rb = rb.json(&body);
            }
            let r = referral_tests::TestApp::reply(rb.send().await.expect("request")).await;
            assert_eq!(
                r.status, 401,
                "{what}: {method} {path} -> {} {}",
                r.status, r.body
            );
            assert_error(&r.body, 16);
        }
    }
    // The valid token works, so the 401s above were about the token.
    let (status, answer) = app.post(&valid, "/v1/invitations", body).await;
    assert_eq!(status, 200, "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_endpoints_need_no_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = app.send(reqwest::Method::GET, None, path, None, &[]).await;
        assert_eq!(
            r.status, 200,
            "GET {path} without a token -> {} {:.200}",
            r.status, r.body
        );
    }
    let r = app
        .send(reqwest::Method::GET, None, "/openapi.json", None, &[])
        .await;
    let paths = r.body["paths"].as_object().cloned().unwrap_or_default();
    for route in [
        "/v1/referral-codes",
        "/v1/referral-codes/{code}",
        "/r/{code}",
        "/v1/invitations",
        "/v1/invitations/{id}",
        "/v1/referrers/{id}/tier",
        "/v1/clicks",
        "/v1/signups",
        "/v1/conversions",
    ] {
        assert!(
            paths.contains_key(route),
            "openapi.json documents {route}: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    app.stop().await;
}

/// An app with low limits, counted in memory: with TEST_REDIS_URL every app of the run
/// shares the 127.0.0.1 counters. It cannot become ready if /readyz itself is limited and
/// its budget is gone.
async fn limited_app(api: u32, redirect: u32) -> referral_tests::TestApp {
    let args = vec![
        "--api-rate-limit-per-minute".to_string(),
        api.to_string(),
        "--redirect-rate-limit-per-minute".to_string(),
        redirect.to_string(),
    ];
    match referral_tests::try_spawn_app_redis(args, vec![], false).await {
        Ok(app) => app,
        Err(e) => panic!(
            "a gateway limited to {api} requests a minute never became ready ({e:#}): \
             /readyz shares the anonymous per-IP budget of the API"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_and_ratelimit_headers() {
    let app = limited_app(5, 3).await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let path = format!("/v1/invitations?referrerId={sue}");
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let r = app
            .send(reqwest::Method::GET, Some(&token), &path, None, &[])
            .await;
        assert!(
            r.header("ratelimit-policy").is_some(),
            "RateLimit-Policy on every answer: {:?}",
            r.headers
        );
        assert!(
            r.header("ratelimit").is_some(),
            "RateLimit on every answer: {:?}",
            r.headers
        );
        statuses.push(r.status);
        if r.status == 429 {
            limited = Some(r);
        }
    }
    assert_eq!(
        statuses,
        vec![200, 200, 200, 200, 200, 429],
        "5 a minute per subject"
    );
    let r = limited.expect("a 429");
    assert_error(&r.body, 8);
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Another subject has its own budget.
    let other = unique("other");
    let (status, _) = app
        .get(
            &app.member(&other, "SUPPLIER"),
            &format!("/v1/invitations?referrerId={other}"),
        )
        .await;
    assert_eq!(status, 200, "limits are per subject");

    // The redirect is limited per client IP: 3 a minute here.
    let code = app
        .code_ok(
            &app.member(&other, "SUPPLIER"),
            json!({"referrerId": other, "referrerKind": "SUPPLIER"}),
        )
        .await;
    let path = format!("/r/{}", code["code"].as_str().unwrap_or_default());
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let r = app.send(reqwest::Method::GET, None, &path, None, &[]).await;
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(statuses, vec![302, 302, 302, 429], "3 redirects a minute per IP");
    let r = last.expect("an answer");
    assert!(
        r.header("retry-after").is_some(),
        "Retry-After on a limited redirect: {:?}",
        r.headers
    );
    app.stop().await;
}

/// Probes and scrapes must not be refused because anonymous API callers from the same
/// address (a load balancer, a node) used up a budget: a 429 on /readyz takes the pod out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_not_rate_limited() {
    let app = limited_app(20, 20).await;
    for round in 0..30 {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let r = app.send(reqwest::Method::GET, None, path, None, &[]).await;
            assert_eq!(
                r.status, 200,
                "anonymous GET {path} #{round} at 20 requests a minute -> {} {:.200}",
                r.status, r.body
            );
        }
    }
    app.stop().await;
}
