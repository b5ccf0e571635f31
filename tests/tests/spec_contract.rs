//! The edge holds requests to what `/openapi.json` says, through the real gateway and
//! services: what the document refuses is a 400 naming the field, what it allows is served.

use referral_tests::{assert_error, invitation, spawn_app, unique, violated_fields};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_document_refuses_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let good = invitation(&sue, "EMAIL", "ann@example.com");
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    // The unset enum value, null, a blank id, a long message. (A number for an enum is read
    // as the proto3 JSON mapping allows: the services judge the value it names.)
    let cases: Vec<(Value, &str)> = vec![
        (with("channel", json!("CHANNEL_UNSPECIFIED")), "channel"),
        (
            with("refereeKind", json!("PARTY_KIND_UNSPECIFIED")),
            "refereeKind",
        ),
        (with("message", Value::Null), "message"),
        (with("referrerId", json!("  ")), "referrerId"),
        (with("message", json!("m".repeat(2001))), "message"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post(&token, "/v1/invitations", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_error(&answer, 3);
        assert_eq!(violated_fields(&answer), [field], "{answer}");
    }
    // Query integers are read as numbers and held to their range.
    let (status, answer) = app
        .get(&token, &format!("/v1/invitations?referrerId={sue}&pageSize=20"))
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = app
        .get(&token, &format!("/v1/invitations?referrerId={sue}&pageSize=-1"))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(violated_fields(&answer), ["pageSize"]);
    // And the good one is served.
    let (status, answer) = app.post(&token, "/v1/invitations", good).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_keep_their_method() {
    let app = spawn_app().await;
    let admin = app.fresh_admin();
    // PUT on an action only POST has is 405 with Allow, not the plain PUT route.
    let r = app
        .send(
            reqwest::Method::PUT,
            Some(&admin),
            "/v1/reward-programs/p1:simulate",
            Some(&json!({})),
            &[],
        )
        .await;
    assert_eq!(r.status, 405, "{:?}", r.body);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_leave_unset_enums_out() {
    let app = spawn_app().await;
    let admin = app.fresh_admin();
    // An empty window is suppressed: no growth status is known.
    let (status, answer) = app.get(&admin, "/v1/metrics/viral").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("growthStatus").is_none(), "{answer}");
    assert!(!answer.to_string().contains("_UNSPECIFIED"), "{answer}");
}
