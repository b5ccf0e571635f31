//! Referral codes through the gateway (docs/api.md, invite-svc "Referral codes").

use referral_tests::{assert_code_shape, assert_error, int, spawn_app, ts, unique};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplier_code_is_memorable_shareable_and_private() {
    let app = spawn_app().await;
    let alice = unique("alice");
    let token = app.member(&alice, "SUPPLIER");

    let before = chrono::Utc::now();
    let code = app
        .code_ok(
            &token,
            json!({"referrerId": alice, "referrerKind": "SUPPLIER", "vendorType": "PHOTOGRAPHER"}),
        )
        .await;
    let c = code["code"].as_str().expect("code").to_string();
    assert_code_shape(&c, "SUPPLIER");
    assert!(
        code["url"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("/r/{c}")),
        "url of {code}"
    );
    let svg = code["qrSvg"].as_str().unwrap_or_default();
    assert!(
        svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
        "qrSvg is an SVG document: {svg:.80}"
    );
    assert_eq!(code["referrerId"], json!(alice));
    let created = ts(&code["createdAt"]);
    assert!(
        (created - before).num_seconds().abs() < 60,
        "createdAt {created} is now"
    );

    // Looked up case-insensitively; the answer carries the counts.
    let (status, got) = app
        .get(&token, &format!("/v1/referral-codes/{}", c.to_lowercase()))
        .await;
    assert_eq!(status, 200, "GET lower-cased code -> {got}");
    assert_eq!(got["code"], json!(c));
    assert_eq!(got["referrerId"], json!(alice));
    assert_eq!(int(&got["counts"]["clicks"]), 0, "counts of a fresh code: {got}");
    assert_eq!(int(&got["counts"]["signups"]), 0, "counts of a fresh code: {got}");
    assert_eq!(
        int(&got["counts"]["conversions"]),
        0,
        "counts of a fresh code: {got}"
    );

    // Another member does not learn that the code exists.
    let bob = app.member(&unique("bob"), "SUPPLIER");
    let (status, body) = app.get(&bob, &format!("/v1/referral-codes/{c}")).await;
    assert_eq!(status, 404, "another member's code -> {body}");
    assert_error(&body, 5);

    // An admin may read it.
    let (status, body) = app
        .get(&app.fresh_admin(), &format!("/v1/referral-codes/{c}"))
        .await;
    assert_eq!(status, 200, "admin reads any code -> {body}");

    // The link itself is public and redirects.
    let r = app
        .http
        .get(code["url"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("GET the link");
    assert_eq!(r.status().as_u16(), 302, "the code's url redirects");

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_referrer_holds_several_codes_with_the_prefixes_of_its_kind() {
    let app = spawn_app().await;
    for kind in ["SUPPLIER", "COUPLE"] {
        let who = unique(&kind.to_lowercase());
        let token = app.member(&who, kind);
        let mut codes = std::collections::HashSet::new();
        for _ in 0..6 {
            let code = app
                .code_ok(&token, json!({"referrerId": who, "referrerKind": kind}))
                .await;
            let c = code["code"].as_str().expect("code").to_string();
            assert_code_shape(&c, kind);
            assert!(codes.insert(c.clone()), "{c} handed out twice");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_requests_are_validated_and_authorized() {
    let app = spawn_app().await;
    let carol = unique("carol");
    let token = app.member(&carol, "COUPLE");

    // A member creates codes only for itself.
    let (status, body) = app
        .post(
            &token,
            "/v1/referral-codes",
            json!({"referrerId": unique("someone-else"), "referrerKind": "COUPLE"}),
        )
        .await;
    assert_eq!(status, 403, "code for another referrer -> {body}");
    assert_error(&body, 7);

    // Couples have no vendor type; landing URLs are http(s).
    let (status, body) = app
        .post(
            &token,
            "/v1/referral-codes",
            json!({"referrerId": carol, "referrerKind": "COUPLE", "vendorType": "VENUE"}),
        )
        .await;
    assert_eq!(status, 400, "vendorType on a couple -> {body}");
    assert!(
        referral_tests::violated_fields(&body).contains(&"vendorType".to_string()),
        "{body}"
    );
    let (status, body) = app
        .post(
            &token,
            "/v1/referral-codes",
            json!({"referrerId": carol, "referrerKind": "COUPLE", "landingUrl": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(status, 400, "non-http landingUrl -> {body}");
    assert!(
        referral_tests::violated_fields(&body).contains(&"landingUrl".to_string()),
        "{body}"
    );

    // Unknown codes are 404, well-formed or not.
    for unknown in ["LOVE-ZZZZZZ", "no-such-code"] {
        let (status, body) = app.get(&token, &format!("/v1/referral-codes/{unknown}")).await;
        assert!(
            status == 404 || status == 400,
            "GET unknown code {unknown} -> {status} {body}"
        );
    }
    let (status, body) = app.get(&token, "/v1/referral-codes/LOVE-ZZZZZZ").await;
    assert_eq!(status, 404, "well-formed unknown code -> {body}");
    app.stop().await;
}
