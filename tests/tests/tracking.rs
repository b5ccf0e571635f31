//! The redirect, clicks, signups and conversions (docs/api.md, "Tracking and attribution").

use std::time::Duration;

use referral_tests::{TestApp, assert_error, eventually, int, invitation, spawn_app, ts, unique};
use serde_json::{Value, json};

/// The `rm_click` cookie of a redirect: its value and its attributes, lower-cased.
fn click_cookie(reply: &referral_tests::Reply) -> (String, Vec<String>) {
    let cookie = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.trim_start().starts_with("rm_click="))
        .unwrap_or_else(|| panic!("no rm_click cookie in {:?}", reply.headers))
        .to_string();
    let mut parts = cookie.split(';').map(str::trim);
    let value = parts
        .next()
        .unwrap_or_default()
        .trim_start_matches("rm_click=")
        .to_string();
    (value, parts.map(str::to_ascii_lowercase).collect())
}

async fn code_counts(app: &TestApp, token: &str, code: &str) -> Value {
    let (status, body) = app.get(token, &format!("/v1/referral-codes/{code}")).await;
    assert_eq!(status, 200, "{body}");
    body["counts"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_click_signup_and_conversions_are_attributed() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let sue_token = app.member(&sue, "SUPPLIER");
    // On the default landing URL's host: other hosts must be listed in LANDING_HOSTS.
    let landing = "https://example.com/welcome";
    let code = app
        .code_ok(
            &sue_token,
            json!({"referrerId": sue, "referrerKind": "SUPPLIER", "landingUrl": landing}),
        )
        .await;
    let code = code["code"].as_str().expect("code").to_string();

    // The public redirect: no token, 302 to the landing URL, a 90-day HttpOnly click cookie.
    let r = app
        .send(reqwest::Method::GET, None, &format!("/r/{code}"), None, &[])
        .await;
    assert_eq!(r.status, 302, "GET /r/{code} -> {} {}", r.status, r.body);
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with(landing),
        "Location {location:?} is the landing URL {landing}"
    );
    let (click_id, attrs) = click_cookie(&r);
    assert!(!click_id.is_empty(), "the cookie carries a click id");
    assert!(
        attrs.contains(&"max-age=7776000".to_string()),
        "90 days: {attrs:?}"
    );
    assert!(attrs.contains(&"httponly".to_string()), "HttpOnly: {attrs:?}");

    // Case-insensitive, and a different click each time.
    let r2 = app
        .send(
            reqwest::Method::GET,
            None,
            &format!("/r/{}", code.to_lowercase()),
            None,
            &[],
        )
        .await;
    assert_eq!(r2.status, 302, "lower-cased code redirects: {}", r2.body);
    assert_ne!(click_cookie(&r2).0, click_id, "every visit is its own click");

    // Unknown codes: 404.
    for unknown in ["LOVE-ZZZZZZ", "nonsense"] {
        let r = app
            .send(reqwest::Method::GET, None, &format!("/r/{unknown}"), None, &[])
            .await;
        assert_eq!(r.status, 404, "GET /r/{unknown} -> {} {}", r.status, r.body);
    }

    // Clicks from the redirect are written in batches: wait until they are counted.
    let counted = eventually(Duration::from_secs(5), || async {
        let counts = code_counts(&app, &sue_token, &code).await;
        (int(&counts["clicks"]) >= 2).then_some(counts)
    })
    .await;
    assert!(
        counted.is_some(),
        "the two redirects are counted as clicks within 5 s"
    );

    // A couple signs up with the cookie's click id.
    let ursula = unique("ursula");
    let u_token = app.member(&ursula, "COUPLE");
    let (status, first) = app
        .post(
            &u_token,
            "/v1/signups",
            json!({"userId": ursula, "userKind": "COUPLE", "clickId": click_id}),
        )
        .await;
    assert_eq!(status, 200, "signup -> {first}");
    assert_eq!(first["attributed"], json!(true), "{first}");
    assert_eq!(first["referrerId"], json!(sue), "{first}");
    assert_eq!(first["code"], json!(code), "{first}");
    assert_eq!(first["flow"], json!("SUPPLIER_TO_COUPLE"), "{first}");
    assert!(first["model"].is_string(), "model in {first}");
    assert!(
        first["touchpoints"].as_array().is_some_and(|t| !t.is_empty()),
        "touchpoints in {first}"
    );

    // A second signup of the same user returns the first attribution.
    let (status, again) = app
        .post(
            &u_token,
            "/v1/signups",
            json!({"userId": ursula, "userKind": "COUPLE"}),
        )
        .await;
    assert_eq!(status, 200, "second signup -> {again}");
    for field in ["attributed", "referrerId", "code", "flow", "invitationId"] {
        assert_eq!(
            again[field], first[field],
            "second signup's {field}: {again} vs {first}"
        );
    }

    // A member signs up only as itself.
    let (status, body) = app
        .post(
            &u_token,
            "/v1/signups",
            json!({"userId": unique("someone"), "userKind": "COUPLE", "clickId": click_id}),
        )
        .await;
    assert_eq!(status, 403, "signup for someone else -> {body}");

    // The code counts the signup.
    let counted = eventually(Duration::from_secs(2), || async {
        let counts = code_counts(&app, &sue_token, &code).await;
        (int(&counts["signups"]) == 1).then_some(counts)
    })
    .await;
    assert!(counted.is_some(), "counts.signups of {code} is 1");

    // Conversions: attributed to the referrer; only the first paid one is firstPaid.
    let pay = json!({"userId": ursula, "value": {"amountMinor": "2500", "currency": "GBP"}, "plan": "PROFESSIONAL", "annual": false});
    // Billing reports conversions; the member itself may not (403).
    let (status, _) = app.post(&u_token, "/v1/conversions", pay.clone()).await;
    assert_eq!(status, 403, "a member reports no conversion, not even its own");
    let billing = app.billing_key().await;
    let (status, c1) = app.post(&billing, "/v1/conversions", pay.clone()).await;
    assert_eq!(status, 200, "conversion -> {c1}");
    assert_eq!(c1["attributed"], json!(true), "{c1}");
    assert_eq!(c1["referrerId"], json!(sue), "{c1}");
    assert_eq!(c1["firstPaid"], json!(true), "{c1}");
    assert!(c1["conversionId"].as_str().is_some_and(|s| !s.is_empty()), "{c1}");
    let mut pay2 = pay;
    pay2["value"] = json!({"amountMinor": 4900, "currency": "GBP"}); // int64 input as a number
    let (status, c2) = app.post(&billing, "/v1/conversions", pay2).await;
    assert_eq!(status, 200, "second conversion -> {c2}");
    assert_eq!(c2["attributed"], json!(true), "{c2}");
    assert_eq!(c2["referrerId"], json!(sue), "{c2}");
    assert_eq!(c2["firstPaid"], json!(false), "{c2}");
    assert_ne!(
        c2["conversionId"], c1["conversionId"],
        "each conversion is its own record"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_referral_is_never_attributed() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let code = app
        .code_ok(&token, json!({"referrerId": sue, "referrerKind": "SUPPLIER"}))
        .await;
    let code = code["code"].as_str().expect("code").to_string();

    let (status, body) = app
        .post(
            &token,
            "/v1/signups",
            json!({"userId": sue, "userKind": "SUPPLIER", "code": code}),
        )
        .await;
    assert_eq!(status, 200, "self signup -> {body}");
    assert_eq!(body["attributed"], json!(false), "{body}");
    assert_eq!(body["reason"], json!("SELF_REFERRAL"), "{body}");
    assert!(
        body["referrerId"].as_str().is_none_or(str::is_empty),
        "no referrer credited: {body}"
    );

    // Through the click cookie too.
    let r = app
        .send(reqwest::Method::GET, None, &format!("/r/{code}"), None, &[])
        .await;
    assert_eq!(r.status, 302);
    let (click_id, _) = click_cookie(&r);
    let counted = eventually(Duration::from_secs(5), || async {
        (int(&code_counts(&app, &token, &code).await["clicks"]) >= 1).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the click is recorded within 5 s");
    let (status, body) = app
        .post(
            &token,
            "/v1/signups",
            json!({"userId": sue, "userKind": "SUPPLIER", "clickId": click_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attributed"], json!(false), "{body}");

    // The referrer's own e-mail under another user id is self-referral as well.
    let sue2 = unique("sue2");
    let ally = unique("ally");
    let s2_token = app.member(&sue2, "SUPPLIER");
    let code2 = app
        .code_ok(&s2_token, json!({"referrerId": sue2, "referrerKind": "SUPPLIER"}))
        .await;
    let (status, body) = app
        .post(
            &s2_token,
            "/v1/signups",
            json!({"userId": sue2, "userKind": "SUPPLIER", "email": "sue2@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            &app.member(&ally, "COUPLE"),
            "/v1/signups",
            json!({"userId": ally, "userKind": "COUPLE", "email": "SUE2@example.com", "code": code2["code"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["attributed"],
        json!(false),
        "the referrer's own e-mail: {body}"
    );
    assert_eq!(body["reason"], json!("SELF_REFERRAL"), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_and_email_touches_attribute_with_their_flow() {
    let app = spawn_app().await;
    // A couple invites a supplier by link; the supplier signs up naming the invitation.
    let cleo = unique("cleo");
    let c_token = app.member(&cleo, "COUPLE");
    let mut body = invitation(&cleo, "LINK", "florist@example.com");
    body["referrerKind"] = json!("COUPLE");
    body["refereeKind"] = json!("SUPPLIER");
    let inv = app.invite_ok(&c_token, body).await;
    assert_eq!(inv["flow"], json!("COUPLE_TO_SUPPLIER"));
    referral_tests::assert_code_shape(inv["code"].as_str().unwrap_or_default(), "COUPLE");
    let fred = unique("fred");
    let f_token = app.member(&fred, "SUPPLIER");
    let (status, att) = app
        .post(
            &f_token,
            "/v1/signups",
            json!({"userId": fred, "userKind": "SUPPLIER", "vendorType": "FLORIST", "invitationId": inv["id"]}),
        )
        .await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["attributed"], json!(true), "{att}");
    assert_eq!(att["invitationId"], inv["id"], "{att}");
    assert_eq!(att["referrerId"], json!(cleo), "{att}");
    assert_eq!(att["flow"], json!("COUPLE_TO_SUPPLIER"), "{att}");
    let (_, got) = app
        .get(
            &c_token,
            &format!("/v1/invitations/{}", inv["id"].as_str().unwrap_or_default()),
        )
        .await;
    assert_eq!(
        got["status"],
        json!("SIGNED_UP"),
        "the invitation moves forward to SIGNED_UP: {got}"
    );

    // A supplier invites another supplier by e-mail; the signup gives only the e-mail.
    let sue = unique("sue");
    let s_token = app.member(&sue, "SUPPLIER");
    let mut body = invitation(&sue, "EMAIL", "Venue.Owner@Example.com");
    body["refereeKind"] = json!("SUPPLIER");
    let inv = app.invite_ok(&s_token, body).await;
    let vic = unique("vic");
    let v_token = app.member(&vic, "SUPPLIER");
    let (status, att) = app
        .post(
            &v_token,
            "/v1/signups",
            json!({"userId": vic, "userKind": "SUPPLIER", "email": "venue.owner@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(
        att["attributed"],
        json!(true),
        "the recipient e-mail of an open invitation: {att}"
    );
    assert_eq!(att["invitationId"], inv["id"], "{att}");
    assert_eq!(att["referrerId"], json!(sue), "{att}");
    assert_eq!(att["flow"], json!("SUPPLIER_TO_SUPPLIER"), "{att}");

    // POST /v1/clicks records a click with an expiry 30 days out.
    let code = app
        .code_ok(&s_token, json!({"referrerId": sue, "referrerKind": "SUPPLIER"}))
        .await;
    let (status, click) = app
        .post(
            &s_token,
            "/v1/clicks",
            json!({"code": code["code"], "visitorId": "v-1"}),
        )
        .await;
    assert_eq!(status, 200, "{click}");
    assert!(
        click["clickId"].as_str().is_some_and(|s| !s.is_empty()),
        "{click}"
    );
    assert_eq!(click["code"], code["code"]);
    let expires = ts(&click["expiresAt"]);
    let in_30_days = chrono::Utc::now() + chrono::Duration::days(30);
    assert!(
        (expires - in_30_days).num_seconds().abs() < 120,
        "click expiresAt {expires}"
    );
    let (status, body) = app
        .post(&s_token, "/v1/clicks", json!({"code": "LOVE-ZZZZZZ"}))
        .await;
    assert_eq!(status, 404, "click on an unknown code -> {body}");
    assert_error(&body, 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_order_and_the_attribution_window() {
    let app = spawn_app().await;
    let (a, b) = (unique("alpha"), unique("beta"));
    let (a_token, b_token) = (app.member(&a, "SUPPLIER"), app.member(&b, "SUPPLIER"));
    let a_code = app
        .code_ok(&a_token, json!({"referrerId": a, "referrerKind": "SUPPLIER"}))
        .await["code"]
        .clone();
    let b_code = app
        .code_ok(&b_token, json!({"referrerId": b, "referrerKind": "SUPPLIER"}))
        .await["code"]
        .clone();
    let click = |code: Value| {
        let app = &app;
        async move {
            let (status, c) = app
                .post(
                    &app.member(&unique("visitor"), "COUPLE"),
                    "/v1/clicks",
                    json!({"code": code}),
                )
                .await;
            assert_eq!(status, 200, "{c}");
            c["clickId"].as_str().expect("clickId").to_string()
        }
    };

    // An explicit code beats the click cookie.
    let a_click = click(a_code.clone()).await;
    let u1 = unique("u1");
    let (status, att) = app
        .post(
            &app.member(&u1, "COUPLE"),
            "/v1/signups",
            json!({"userId": u1, "userKind": "COUPLE", "clickId": a_click, "code": b_code}),
        )
        .await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["referrerId"], json!(b), "explicit code over click: {att}");

    // The click cookie beats the recipient e-mail of an open invitation.
    app.invite_ok(&b_token, invitation(&b, "EMAIL", "u2@example.com"))
        .await;
    let a_click = click(a_code.clone()).await;
    let u2 = unique("u2");
    let (status, att) = app
        .post(
            &app.member(&u2, "COUPLE"),
            "/v1/signups",
            json!({"userId": u2, "userKind": "COUPLE", "clickId": a_click, "email": "u2@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["referrerId"], json!(a), "click over e-mail: {att}");

    // A click older than 30 days does not count (an admin backfills it).
    let admin = app.fresh_admin();
    let old = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    let (status, c) = app
        .post(&admin, "/v1/clicks", json!({"code": a_code, "occurredAt": old}))
        .await;
    assert_eq!(status, 200, "{c}");
    let u3 = unique("u3");
    let (status, att) = app
        .post(
            &app.member(&u3, "COUPLE"),
            "/v1/signups",
            json!({"userId": u3, "userKind": "COUPLE", "clickId": c["clickId"]}),
        )
        .await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["attributed"], json!(false), "a 40-day-old click: {att}");
    // The click id is signed with its click time: past the window it is refused as EXPIRED.
    assert_eq!(att["reason"], json!("NO_TOUCH"), "{att}");
    assert_eq!(att["rejectedClick"], json!("EXPIRED"), "{att}");
    // Members cannot backdate clicks into the window either way.
    let (status, c) = app
        .post(&a_token, "/v1/clicks", json!({"code": a_code, "occurredAt": old}))
        .await;
    assert_eq!(status, 200, "{c}");
    let age = chrono::Utc::now() + chrono::Duration::days(30) - ts(&c["expiresAt"]);
    assert!(
        age.num_minutes().abs() < 5,
        "a member's occurredAt is ignored: {c}"
    );

    // No touch at all: recorded, not attributed; its conversions are not attributed either.
    let u4 = unique("u4");
    let u4_token = app.member(&u4, "COUPLE");
    let (status, att) = app
        .post(
            &u4_token,
            "/v1/signups",
            json!({"userId": u4, "userKind": "COUPLE"}),
        )
        .await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["attributed"], json!(false), "{att}");
    assert_eq!(att["reason"], json!("NO_TOUCH"), "{att}");
    let (status, conv) = app
        .post(
            &app.billing_key().await,
            "/v1/conversions",
            json!({"userId": u4, "value": {"amountMinor": "900", "currency": "GBP"}, "plan": "STARTER"}),
        )
        .await;
    assert_eq!(status, 200, "{conv}");
    assert_eq!(conv["attributed"], json!(false), "{conv}");
    assert_eq!(conv["firstPaid"], json!(true), "{conv}");
    assert!(conv["referrerId"].as_str().is_none_or(str::is_empty), "{conv}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_link_moves_forward_only() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let inv = app
        .invite_ok(&token, invitation(&sue, "LINK", "linda@example.com"))
        .await;
    let id = inv["id"].as_str().expect("id").to_string();
    let code = inv["code"].as_str().expect("code").to_string();
    let status_of = || {
        let (app, token, id) = (&app, &token, &id);
        async move {
            let (s, got) = app.get(token, &format!("/v1/invitations/{id}")).await;
            assert_eq!(s, 200, "{got}");
            got["status"].as_str().unwrap_or_default().to_string()
        }
    };

    // Following the invitation's own link: CLICKED (once the batched click lands).
    let r = app
        .send(reqwest::Method::GET, None, &format!("/r/{code}"), None, &[])
        .await;
    assert_eq!(r.status, 302, "{}", r.body);
    let (click_id, _) = click_cookie(&r);
    let clicked = eventually(Duration::from_secs(5), || async {
        (status_of().await == "CLICKED").then_some(())
    })
    .await;
    assert!(
        clicked.is_some(),
        "SENT -> CLICKED after the redirect, got {}",
        status_of().await
    );

    let linda = unique("linda");
    let l_token = app.member(&linda, "COUPLE");
    let (status, att) = app
        .post(
            &l_token,
            "/v1/signups",
            json!({"userId": linda, "userKind": "COUPLE", "clickId": click_id}),
        )
        .await;
    assert_eq!(status, 200, "{att}");
    assert_eq!(att["attributed"], json!(true), "{att}");
    assert_eq!(
        att["invitationId"],
        json!(id),
        "the click on an invitation's code credits the invitation: {att}"
    );
    assert_eq!(status_of().await, "SIGNED_UP");

    let (status, conv) = app
        .post(&app.billing_key().await, "/v1/conversions", json!({"userId": linda, "value": {"amountMinor": "2500", "currency": "GBP"}, "plan": "SCALE", "annual": true}))
        .await;
    assert_eq!(status, 200, "{conv}");
    assert_eq!(conv["invitationId"], json!(id), "{conv}");
    assert_eq!(status_of().await, "CONVERTED");

    // A late click never moves it back.
    let r = app
        .send(reqwest::Method::GET, None, &format!("/r/{code}"), None, &[])
        .await;
    assert_eq!(r.status, 302);
    let sue_token = token.clone();
    let counted = eventually(Duration::from_secs(5), || async {
        let (_, c) = app.get(&sue_token, &format!("/v1/referral-codes/{code}")).await;
        (int(&c["counts"]["clicks"]) >= 2).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the late click is recorded");
    assert_eq!(
        status_of().await,
        "CONVERTED",
        "CONVERTED is never overwritten by a later CLICKED"
    );
    // And a converted invitation cannot be cancelled.
    let (status, body) = app
        .post(&token, &format!("/v1/invitations/{id}:cancel"), json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    app.stop().await;
}

/// A redirect answered 302 with a click id in the cookie; a graceful stop right after must
/// not lose the click (the gateway drains its batch before the services go away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_keeps_the_clicks_it_redirected() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let code = app
        .code_ok(&token, json!({"referrerId": sue, "referrerKind": "SUPPLIER"}))
        .await;
    let code = code["code"].as_str().expect("code").to_string();
    for _ in 0..3 {
        let r = app
            .send(reqwest::Method::GET, None, &format!("/r/{code}"), None, &[])
            .await;
        assert_eq!(r.status, 302);
    }
    let app = app.restart().await;
    let counted = eventually(Duration::from_secs(3), || async {
        let clicks = int(&code_counts(&app, &token, &code).await["clicks"]);
        (clicks == 3).then_some(())
    })
    .await;
    let clicks = int(&code_counts(&app, &token, &code).await["clicks"]);
    assert!(
        counted.is_some(),
        "3 redirects before a graceful stop, {clicks} clicks recorded"
    );
    app.stop().await;
}
