//! Provider delivery webhooks (docs/api.md, invite-svc `POST /v1/webhooks/email/{provider}`):
//! each provider verified by its own scheme before anything is read, events matched back by
//! the invitation id in the provider's metadata, forward-only statuses, replays ignored.
//!
//! The secrets come from the environment, so this binary holds a single test that sets
//! them before anything else runs.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use referral_tests::{TestApp, invitation, spawn_app, unique};
use serde_json::{Value, json};
use sha2::Sha256;

const RESEND_KEY: &[u8] = b"resend-test-signing-key-0123456789";
const MAILGUN_KEY: &str = "mailgun-test-signing-key-0123456789";
const POSTMARK_USER: &str = "pm-user";
const POSTMARK_PASSWORD: &str = "pm-password-0123";

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Svix / Standard Webhooks headers for `body` sent `age_secs` ago.
fn resend_headers(id: &str, body: &str, age_secs: i64) -> Vec<(String, String)> {
    let ts = (chrono::Utc::now().timestamp() - age_secs).to_string();
    let sig = STANDARD.encode(hmac_sha256(RESEND_KEY, format!("{id}.{ts}.{body}").as_bytes()));
    vec![
        ("svix-id".into(), id.into()),
        ("svix-timestamp".into(), ts),
        ("svix-signature".into(), format!("v1,{sig}")),
    ]
}

fn resend_event(kind: &str, invitation_id: &str) -> String {
    json!({
        "type": kind,
        "created_at": chrono::Utc::now().to_rfc3339(),
        "data": {
            "email_id": unique("email"),
            "to": ["guest@example.com"],
            "tags": [{"name": "invitation_id", "value": invitation_id}],
        },
    })
    .to_string()
}

fn mailgun_event(event: &str, invitation_id: &str, key: &str) -> String {
    let ts = chrono::Utc::now().timestamp().to_string();
    let token = unique("tok");
    let sig = hex::encode(hmac_sha256(key.as_bytes(), format!("{ts}{token}").as_bytes()));
    json!({
        "signature": {"timestamp": ts, "token": token, "signature": sig},
        "event-data": {"event": event, "id": unique("mg"), "user-variables": {"invitation_id": invitation_id}},
    })
    .to_string()
}

async fn post(app: &TestApp, provider: &str, body: &str, headers: &[(String, String)]) -> (u16, Value) {
    let mut rb = app
        .http
        .post(app.url(&format!("/v1/webhooks/email/{provider}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    TestApp::read(rb.send().await.expect("request")).await
}

async fn status_of(app: &TestApp, token: &str, id: &str) -> String {
    let (status, inv) = app.get(token, &format!("/v1/invitations/{id}")).await;
    assert_eq!(status, 200, "{inv}");
    inv["status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn email_webhooks_are_verified_matched_and_forward_only() {
    // SAFETY: the only test of this binary, before any runtime or other thread exists.
    unsafe {
        std::env::set_var(
            "RESEND_WEBHOOK_SECRET",
            format!("whsec_{}", STANDARD.encode(RESEND_KEY)),
        );
        std::env::set_var("MAILGUN_WEBHOOK_SIGNING_KEY", MAILGUN_KEY);
        std::env::set_var(
            "POSTMARK_WEBHOOK_CREDENTIALS",
            format!("{POSTMARK_USER}:{POSTMARK_PASSWORD}"),
        );
        std::env::remove_var("SENDGRID_WEBHOOK_PUBLIC_KEY");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario());
}

async fn scenario() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let mut ids = Vec::new();
    for i in 0..3 {
        let inv = app
            .invite_ok(&token, invitation(&sue, "EMAIL", &format!("w{i}@example.com")))
            .await;
        ids.push(inv["id"].as_str().expect("id").to_string());
    }

    // Resend: Svix signature over id.timestamp.body.
    let body = resend_event("email.delivered", &ids[0]);
    let headers = resend_headers("msg_1", &body, 0);
    let (status, answer) = post(&app, "resend", &body, &headers).await;
    assert_eq!(status, 200, "signed Resend email.delivered -> {answer}");
    assert_eq!(status_of(&app, &token, &ids[0]).await, "DELIVERED");
    assert_eq!(answer["recorded"], 1, "{answer}");
    let (status, answer) = post(&app, "resend", &body, &headers).await;
    assert_eq!(status, 200, "a replay is acknowledged -> {answer}");
    assert_eq!(answer["duplicates"], 1, "and changes nothing -> {answer}");

    let opened = resend_event("email.opened", &ids[0]);
    let (status, answer) = post(&app, "resend", &opened, &resend_headers("msg_2", &opened, 0)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(status_of(&app, &token, &ids[0]).await, "OPENED");
    let late = resend_event("email.delivered", &ids[0]);
    let (status, answer) = post(&app, "resend", &late, &resend_headers("msg_3", &late, 0)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        status_of(&app, &token, &ids[0]).await,
        "OPENED",
        "a late DELIVERED never overwrites OPENED"
    );

    // Refused before anything is read: a bad, missing, truncated or stale signature.
    // (The scheduler may have sent it meanwhile: SCHEDULED or SENT, but never BOUNCED.)
    let before = status_of(&app, &token, &ids[1]).await;
    let body = resend_event("email.bounced", &ids[1]);
    let mut bad = resend_headers("msg_4", &body, 0);
    bad[2].1 = format!(
        "v1,{}",
        STANDARD.encode(hmac_sha256(b"wrong key", body.as_bytes()))
    );
    let mut truncated = resend_headers("msg_5", &body, 0);
    truncated[2].1 = "v1,".into();
    let cases = [
        ("a wrong signature", bad),
        ("no signature headers", vec![]),
        ("an empty signature", truncated),
        ("a timestamp 10 minutes old", resend_headers("msg_6", &body, 600)),
    ];
    for (what, headers) in &cases {
        let (status, answer) = post(&app, "resend", &body, headers).await;
        assert_eq!(status, 401, "Resend with {what} -> {answer}");
    }
    let after = status_of(&app, &token, &ids[1]).await;
    assert!(
        after == before || (before == "SCHEDULED" && after == "SENT"),
        "nothing recorded from refused webhooks: {before} -> {after}"
    );

    // An event for an invitation we do not know is acknowledged and ignored.
    let unknown = resend_event("email.delivered", "0190b3c4-0000-7000-8000-000000000000");
    let (status, answer) = post(&app, "resend", &unknown, &resend_headers("msg_7", &unknown, 0)).await;
    assert_eq!(status, 200, "unknown invitation -> {answer}");

    // Mailgun: HMAC-SHA256 hex over timestamp + token, inside the body.
    let (status, answer) = post(
        &app,
        "mailgun",
        &mailgun_event("delivered", &ids[1], MAILGUN_KEY),
        &[],
    )
    .await;
    assert_eq!(status, 200, "signed Mailgun delivered -> {answer}");
    assert_eq!(status_of(&app, &token, &ids[1]).await, "DELIVERED");
    let (status, answer) = post(
        &app,
        "mailgun",
        &mailgun_event("opened", &ids[1], "not-the-key"),
        &[],
    )
    .await;
    assert_eq!(status, 401, "Mailgun with a wrong signature -> {answer}");

    // Postmark: HTTP Basic credentials configured for the endpoint.
    let body =
        json!({"RecordType": "Delivery", "MessageID": unique("pm"), "Metadata": {"invitation_id": ids[2]}})
            .to_string();
    let basic = |user: &str, password: &str| {
        vec![(
            "authorization".to_string(),
            format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
        )]
    };
    let (status, answer) = post(&app, "postmark", &body, &basic(POSTMARK_USER, "wrong")).await;
    assert_eq!(status, 401, "Postmark with wrong credentials -> {answer}");
    let (status, answer) = post(&app, "postmark", &body, &[]).await;
    assert_eq!(status, 401, "Postmark without credentials -> {answer}");
    let (status, answer) = post(&app, "postmark", &body, &basic(POSTMARK_USER, POSTMARK_PASSWORD)).await;
    assert_eq!(status, 200, "Postmark with its credentials -> {answer}");
    assert_eq!(status_of(&app, &token, &ids[2]).await, "DELIVERED");

    // A provider with no secret configured does not exist.
    let (status, answer) = post(&app, "sendgrid", "[]", &[]).await;
    assert_eq!(status, 404, "SendGrid without a key -> {answer}");
    app.stop().await;
}
