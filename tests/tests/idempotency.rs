//! Idempotency-Key on creates (docs/api.md, Conventions "Idempotency").

use referral_tests::{error_info, invitation, spawn_app, unique};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_same_body_replays_and_different_body_is_422() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let key = unique("key");
    let body = invitation(&sue, "EMAIL", "ann@example.com");

    let first = app
        .send(
            Method::POST,
            Some(&token),
            "/v1/invitations",
            Some(&body),
            &[("Idempotency-Key", &key)],
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = app
        .send(
            Method::POST,
            Some(&token),
            "/v1/invitations",
            Some(&body),
            &[("Idempotency-Key", &key)],
        )
        .await;
    assert_eq!(again.status, 200, "a retry is not a duplicate: {}", again.body);
    assert_eq!(again.body["id"], first.body["id"], "same invitation");
    assert_eq!(again.body, first.body, "the first response, replayed");

    // Same key, different body: 422, nothing created.
    let other = invitation(&sue, "EMAIL", "ben@example.com");
    let r = app
        .send(
            Method::POST,
            Some(&token),
            "/v1/invitations",
            Some(&other),
            &[("Idempotency-Key", &key)],
        )
        .await;
    assert_eq!(r.status, 422, "key reused with another body -> {}", r.body);
    assert_eq!(
        error_info(&r.body).map(|i| i["reason"].clone()),
        Some(json!("IDEMPOTENCY_KEY_REUSED")),
        "{}",
        r.body
    );
    let (status, list) = app
        .get(&token, &format!("/v1/invitations?referrerId={sue}"))
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = list["invitations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(
        ids,
        vec![&first.body["id"]],
        "exactly one invitation exists: {list:.400}"
    );

    // Without a key the same body is a genuine duplicate.
    let (status, dup) = app.post(&token, "/v1/invitations", body.clone()).await;
    assert_eq!(status, 409, "{dup}");

    // Keys belong to their caller: another member's identical key is its own.
    let tom = unique("tom");
    let tom_token = app.member(&tom, "SUPPLIER");
    let tom_body = invitation(&tom, "EMAIL", "ann@example.com");
    let r = app
        .send(
            Method::POST,
            Some(&tom_token),
            "/v1/invitations",
            Some(&tom_body),
            &[("Idempotency-Key", &key)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.body["id"], first.body["id"]);

    // Signups and conversions take keys too.
    let ursula = unique("ursula");
    let u_token = app.member(&ursula, "COUPLE");
    let signup = json!({"userId": ursula, "userKind": "COUPLE"});
    let k2 = unique("key");
    let a = app
        .send(
            Method::POST,
            Some(&u_token),
            "/v1/signups",
            Some(&signup),
            &[("Idempotency-Key", &k2)],
        )
        .await;
    let b = app
        .send(
            Method::POST,
            Some(&u_token),
            "/v1/signups",
            Some(&signup),
            &[("Idempotency-Key", &k2)],
        )
        .await;
    assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.body, b.body);
    assert_eq!(a.body, b.body);
    let pay =
        json!({"userId": ursula, "value": {"amountMinor": "1000", "currency": "GBP"}, "plan": "STARTER"});
    let k3 = unique("key");
    // Billing reports conversions with its API key (members and admins cannot).
    let billing = app.billing_key().await;
    let a = app
        .send(
            Method::POST,
            Some(&billing),
            "/v1/conversions",
            Some(&pay),
            &[("Idempotency-Key", &k3)],
        )
        .await;
    let b = app
        .send(
            Method::POST,
            Some(&billing),
            "/v1/conversions",
            Some(&pay),
            &[("Idempotency-Key", &k3)],
        )
        .await;
    assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.body, b.body);
    assert_eq!(
        a.body["conversionId"], b.body["conversionId"],
        "one conversion recorded"
    );
    assert_eq!(b.body["firstPaid"], json!(true), "the replay is the first answer");
    let mut pay2 = pay.clone();
    pay2["value"]["amountMinor"] = json!("2000");
    let c = app
        .send(
            Method::POST,
            Some(&billing),
            "/v1/conversions",
            Some(&pay2),
            &[("Idempotency-Key", &k3)],
        )
        .await;
    assert_eq!(c.status, 422, "{}", c.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_is_replayed_too() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let body = invitation(&sue, "EMAIL", "ann@example.com");
    let original = app.invite_ok(&token, body.clone()).await;
    let key = unique("key");
    let first = app
        .send(
            Method::POST,
            Some(&token),
            "/v1/invitations",
            Some(&body),
            &[("Idempotency-Key", &key)],
        )
        .await;
    assert_eq!(first.status, 409, "{}", first.body);
    // The duplicate is gone now, so the request itself would succeed...
    let (status, cancelled) = app
        .post(
            &token,
            &format!(
                "/v1/invitations/{}:cancel",
                original["id"].as_str().unwrap_or_default()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    // ...but a retry under the same key answers what the first attempt answered.
    let retry = app
        .send(
            Method::POST,
            Some(&token),
            "/v1/invitations",
            Some(&body),
            &[("Idempotency-Key", &key)],
        )
        .await;
    assert_eq!(
        (retry.status, &retry.body),
        (first.status, &first.body),
        "the first response (status and body)"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_a_batch_create_it_once() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let key = unique("key");
    let items: Vec<Value> = (0..40)
        .map(|i| json!({"refereeKind": "COUPLE", "channel": "LINK", "recipient": {"email": format!("c{i}@example.com")}}))
        .collect();
    let body = json!({"referrerId": sue, "referrerKind": "SUPPLIER", "invitations": items});
    let headers = [("Idempotency-Key", key.as_str())];
    let send = || {
        app.send(
            Method::POST,
            Some(&token),
            "/v1/invitations:batchCreate",
            Some(&body),
            &headers,
        )
    };
    let (a, b) = tokio::join!(send(), send());
    let mut ok = Vec::new();
    for r in [&a, &b] {
        match r.status {
            200 => ok.push(r.body.clone()),
            409 => assert_eq!(
                error_info(&r.body).map(|i| i["reason"].clone()),
                Some(json!("IDEMPOTENCY_KEY_IN_USE")),
                "{}",
                r.body
            ),
            other => panic!("concurrent retry -> {other} {:.300}", r.body),
        }
    }
    assert!(!ok.is_empty(), "one of them succeeds");
    if ok.len() == 2 {
        assert_eq!(ok[0], ok[1], "the retry replays the first response");
    }
    assert_eq!(ok[0]["accepted"].as_i64(), Some(40), "{:.300}", ok[0]);
    // After the first finished, a retry replays it.
    let c = send().await;
    assert_eq!(c.status, 200, "{:.300}", c.body);
    assert_eq!(c.body, ok[0]);
    let (status, list) = app
        .get(&token, &format!("/v1/invitations?referrerId={sue}&pageSize=500"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        list["invitations"].as_array().map(Vec::len),
        Some(40),
        "created once"
    );
    app.stop().await;
}
