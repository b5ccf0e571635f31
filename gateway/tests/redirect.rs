//! `GET /r/{code}` against a fake invite-svc: redirect, cookie, cache and the click batch.

mod support;

use axum::{body::Body, http::StatusCode};
use support::*;

#[tokio::test]
async fn a_known_code_redirects_sets_the_cookie_and_records_the_click() {
    let (gw, fake) = with_fake_invite(|_| {}).await;
    let reply = gw
        .send(
            get("/r/love-abc234?utm_source=ig&utm_medium=social&utm_campaign=june&inv=inv-7")
                .header("user-agent", "Mozilla/5.0 test")
                .header("x-device-id", "dev-3")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(reply.header("cache-control"), "no-store");
    let cookie = reply.header("set-cookie").to_string();
    let attrs: Vec<&str> = cookie.split("; ").collect();
    let click_id = attrs[0].strip_prefix("rm_click=").unwrap().to_string();
    // The landing page learns the signed click id from its own query string.
    assert_eq!(
        reply.header("location"),
        format!("https://example.com/landing?x=1&rm_click={click_id}")
    );
    assert!(
        referral_common::click_id::is_signed_format(&click_id),
        "{click_id}"
    );
    assert_eq!(
        &attrs[1..],
        ["Max-Age=7776000", "Path=/", "HttpOnly", "SameSite=Lax"]
    );
    assert!(reply.headers.contains_key("ratelimit-policy"));

    assert!(
        eventually(|| !fake.calls("RecordClicks").is_empty()).await,
        "the click was batched"
    );
    let batch = fake.calls("RecordClicks").pop().unwrap();
    let click = &batch.request["clicks"][0];
    assert_eq!(click["clickId"], click_id.as_str());
    assert_eq!(
        click["code"], "LOVE-ABC234",
        "codes are kept as the canonical upper case"
    );
    assert_eq!(click["ip"], "203.0.113.10");
    assert_eq!(click["deviceId"], "dev-3");
    assert_eq!(click["userAgent"], "Mozilla/5.0 test");
    assert_eq!(click["invitationId"], "inv-7");
    assert_eq!(
        click["utm"],
        serde_json::json!({"source": "ig", "medium": "social", "campaign": "june"})
    );
    let at = chrono::DateTime::parse_from_rfc3339(click["occurredAt"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - at.to_utc()).num_seconds() < 60);
    // The batch is the gateway's own call, with its service token.
    assert!(batch.md("authorization").unwrap().starts_with("Bearer "));
}

#[tokio::test]
async fn codes_are_cached_case_insensitively_and_fresh_click_ids_are_minted() {
    let (gw, fake) = with_fake_invite(|_| {}).await;
    let a = gw.send(get("/r/LOVE-ABC234").body(Body::empty()).unwrap()).await;
    let b = gw.send(get("/r/love-abc234").body(Body::empty()).unwrap()).await;
    assert_eq!((a.status, b.status), (StatusCode::FOUND, StatusCode::FOUND));
    assert_ne!(a.header("set-cookie"), b.header("set-cookie"));
    assert_eq!(
        fake.calls("ResolveReferralCode").len(),
        1,
        "the second lookup was a cache hit"
    );
    assert!(
        eventually(|| {
            fake.calls("RecordClicks")
                .iter()
                .map(|c| c.request["clicks"].as_array().unwrap().len())
                .sum::<usize>()
                == 2
        })
        .await
    );
}

#[tokio::test]
async fn unknown_codes_get_a_404_page_and_no_cookie() {
    let (gw, fake) = with_fake_invite(|_| {}).await;
    let reply = gw.send(get("/r/NOPE-ZZZZZZ").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.header("content-type").starts_with("text/html"));
    assert!(reply.text().contains("NOPE-ZZZZZZ"));
    assert!(!reply.headers.contains_key("set-cookie"));
    // Cached briefly: the second miss does not ask again.
    gw.send(get("/r/nope-zzzzzz").body(Body::empty()).unwrap()).await;
    assert_eq!(fake.calls("ResolveReferralCode").len(), 1);
    // Not code-shaped: not even looked up.
    let junk = gw.send(get("/r/%3Cscript%3E").body(Body::empty()).unwrap()).await;
    assert_eq!(junk.status, StatusCode::NOT_FOUND);
    assert!(!junk.text().contains("<script>"));
    assert_eq!(fake.calls("ResolveReferralCode").len(), 1);
}

#[tokio::test]
async fn empty_landing_urls_and_outages_use_the_default() {
    let (gw, _fake) =
        with_fake_invite(|c| c.default_landing_url = Some("https://wed.example/start".into())).await;
    let reply = gw.send(get("/r/VOWS-EMPTY2").body(Body::empty()).unwrap()).await;
    assert!(
        reply
            .header("location")
            .starts_with("https://wed.example/start?rm_click=c1."),
        "{}",
        reply.header("location")
    );

    // invite-svc unreachable and nothing cached: the visitor still lands somewhere.
    let gw = gateway(config()).await;
    let reply = gw.send(get("/r/LOVE-ABC234").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert!(
        reply
            .header("location")
            .starts_with("http://127.0.0.1:8080/?rm_click=c1."),
        "{}",
        reply.header("location")
    );
    assert!(reply.headers.contains_key("set-cookie"));
}

#[tokio::test]
async fn redirects_are_limited_per_ip() {
    let (gw, _fake) = with_fake_invite(|c| c.redirect_rate_limit_per_minute = 1).await;
    assert_eq!(
        gw.send(get("/r/LOVE-ABC234").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::FOUND
    );
    let refused = gw.send(get("/r/LOVE-ABC234").body(Body::empty()).unwrap()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(refused.header("ratelimit-policy"), "\"redirect\";q=1;w=60");
}

#[tokio::test]
async fn queued_clicks_are_sent_at_shutdown() {
    let (gw, fake) = with_fake_invite(|_| {}).await;
    for _ in 0..3 {
        gw.send(get("/r/LOVE-ABC234").body(Body::empty()).unwrap()).await;
    }
    gw.clicks.drain(std::time::Duration::from_secs(5)).await;
    let sent: usize = fake
        .calls("RecordClicks")
        .iter()
        .map(|c| c.request["clicks"].as_array().unwrap().len())
        .sum();
    assert_eq!(sent, 3);
}

/// With Redis (TEST_REDIS_URL), replicas share the code cache and the rate limits.
#[tokio::test]
async fn redis_is_shared_between_replicas() {
    let Some(url) = std::env::var("TEST_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("TEST_REDIS_URL unset; skipped");
        return;
    };
    let (a, _) = with_fake_invite(|c| {
        c.redis_url = Some(url.clone());
        c.api_rate_limit_per_minute = 2;
    })
    .await;
    let (b, fake_b) = with_fake_invite(|c| {
        c.redis_url = Some(url.clone());
        c.api_rate_limit_per_minute = 2;
    })
    .await;
    assert_eq!(
        a.send(get("/r/LOVE-ABC234").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::FOUND
    );
    let reply = b.send(get("/r/LOVE-ABC234").body(Body::empty()).unwrap()).await;
    assert!(
        reply
            .header("location")
            .starts_with("https://example.com/landing?x=1&rm_click=c1."),
        "{}",
        reply.header("location")
    );
    assert!(
        fake_b.calls("ResolveReferralCode").is_empty(),
        "replica b found the code in Redis"
    );

    let sub = uuid::Uuid::now_v7().to_string();
    let auth = a.bearer(&sub, referral_common::auth::Role::Member);
    let call = || {
        get("/openapi.json")
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap()
    };
    a.send(call()).await;
    b.send(call()).await;
    assert_eq!(a.send(call()).await.status, StatusCode::TOO_MANY_REQUESTS);
}
