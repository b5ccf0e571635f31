//! The same rules when requests arrive together: duplicates, pacing, "attributed once" and
//! "only the first paid conversion" must hold under concurrency, on every backend.

use std::collections::{HashMap, HashSet};

use chrono::Timelike;
use futures::future::join_all;
use referral_tests::{error_info, invitation, spawn_app, ts, unique};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_create_one_invitation() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let body = invitation(&sue, "EMAIL", "twin@example.com");
    let answers = join_all((0..6).map(|_| app.post(&token, "/v1/invitations", body.clone()))).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b["id"].clone())
        .collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one of six identical creates succeeds: {answers:?}"
    );
    for (status, b) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 409, "{b}");
        assert_eq!(
            error_info(b).map(|i| i["metadata"]["existingInvitationId"].clone()),
            Some(created[0].clone())
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_are_paced_like_sequential_ones() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let answers = join_all((0..15).map(|i| {
        app.post(
            &token,
            "/v1/invitations",
            invitation(&sue, "EMAIL", &format!("r{i}@example.com")),
        )
    }))
    .await;
    let mut hours: HashMap<_, usize> = HashMap::new();
    for (status, inv) in &answers {
        assert_eq!(*status, 200, "{inv}");
        let at = ts(&inv["scheduledFor"]);
        *hours.entry((at.date_naive(), at.hour())).or_default() += 1;
    }
    let busiest = hours.values().copied().max().unwrap_or_default();
    assert!(
        busiest <= 10,
        "REGULAR is 10/hour even when 15 arrive at once: {hours:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signups_of_one_user_share_one_attribution() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let s_token = app.member(&sue, "SUPPLIER");
    let code = app
        .code_ok(&s_token, json!({"referrerId": sue, "referrerKind": "SUPPLIER"}))
        .await["code"]
        .clone();
    let ursula = unique("ursula");
    let u_token = app.member(&ursula, "COUPLE");
    let answers = join_all((0..5).map(|i| {
        let body = if i % 2 == 0 {
            json!({"userId": ursula, "userKind": "COUPLE", "code": code})
        } else {
            json!({"userId": ursula, "userKind": "COUPLE"})
        };
        app.post(&u_token, "/v1/signups", body)
    }))
    .await;
    let mut signups = HashSet::new();
    for (status, att) in &answers {
        assert_eq!(*status, 200, "{att}");
        signups.insert((
            att["signupId"].clone(),
            att["attributed"].clone(),
            att["referrerId"].clone(),
        ));
    }
    assert_eq!(signups.len(), 1, "one user, one attribution: {answers:?}");

    // Paid conversions arriving together: exactly one is the first paid one.
    let pay = json!({"userId": ursula, "value": {"amountMinor": "2500", "currency": "GBP"}, "plan": "PROFESSIONAL"});
    let billing = app.billing_key().await;
    let answers = join_all((0..4).map(|_| app.post(&billing, "/v1/conversions", pay.clone()))).await;
    for (status, c) in &answers {
        assert_eq!(*status, 200, "concurrent conversion -> {c}");
    }
    let first = answers
        .iter()
        .filter(|(_, c)| c["firstPaid"] == json!(true))
        .count();
    assert_eq!(
        first, 1,
        "exactly one firstPaid among concurrent conversions: {answers:?}"
    );
    app.stop().await;
}
