//! The attribution truth table (issue #14): hand-computed cases through the real gateway,
//! each with its expected numbers written out. Time is controlled through the API's own
//! import path, not a test seam: an admin may backfill a click (`POST /v1/clicks` with
//! `occurredAt`: the click id comes back signed at exactly that instant), an invitation and a
//! signup (`occurredAt`), so windows are checked to the second without waiting 30 days.
//!
//! Multi-touch: a signup counts the invitation or code it names, an open invitation to its
//! email, and the visitor's clicks — the newest (body or cookie) and the earlier ones, named
//! in `clickIds` (sdk.js) or linked by the redirect from its earlier cookie.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use invite_svc::domain::attribution::ATTRIBUTION_WINDOW_DAYS;
use referral_tests::{
    TestApp, click_param, eventually, int, spawn_app, spawn_app_with_args, ts, unique, violated_fields,
};
use serde_json::{Value, json};

/// An instant as the API takes it, to the second (click ids carry milliseconds; whole
/// seconds keep every expected number exact).
fn rfc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A recent whole second in the past: the "now" a case's backfilled instants count from.
fn anchor() -> DateTime<Utc> {
    let now = Utc::now() - TimeDelta::hours(1);
    DateTime::from_timestamp(now.timestamp(), 0).expect("in range")
}

/// A supplier (photographer) with a referral code of its own.
async fn photographer(app: &TestApp) -> (String, String) {
    let id = unique("photographer");
    let code = app
        .code_ok(
            &app.member(&id, "SUPPLIER"),
            json!({"referrerId": id, "referrerKind": "SUPPLIER", "vendorType": "PHOTOGRAPHER"}),
        )
        .await;
    (id, code["code"].as_str().expect("code").to_string())
}

/// A click an admin imports as made at `at`; its id is signed with that instant.
async fn click_at(app: &TestApp, code: &str, at: DateTime<Utc>) -> String {
    let (status, c) = app
        .post(
            &app.fresh_admin(),
            "/v1/clicks",
            json!({"code": code, "occurredAt": rfc(at)}),
        )
        .await;
    assert_eq!(status, 200, "backfilled click -> {c}");
    c["clickId"].as_str().expect("clickId").to_string()
}

/// A real visitor's click through `/r/{code}`: the id from the landing URL.
async fn click_now(app: &TestApp, code: &str) -> String {
    let r = app
        .send(reqwest::Method::GET, None, &format!("/r/{code}"), None, &[])
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    click_param(r.header("location").unwrap_or_default()).expect("rm_click in the Location")
}

/// `POST /v1/signups` with `token`; insists on 200.
async fn signup(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, a) = app.post(token, "/v1/signups", body.clone()).await;
    assert_eq!(status, 200, "POST /v1/signups {body} -> {a}");
    a
}

/// A signup an admin imports as made at `at` (the window is judged from that instant).
async fn signup_at(app: &TestApp, mut body: Value, at: DateTime<Utc>) -> Value {
    body["occurredAt"] = json!(rfc(at));
    signup(app, &app.fresh_admin(), body).await
}

/// Billing reports a conversion, with an API key holding `conversions:write` (admins and
/// members may not).
async fn report_conversion(app: &TestApp, user: &str, minor: i64, at: DateTime<Utc>) -> Value {
    let body = json!({"userId": user, "value": {"amountMinor": minor.to_string(), "currency": "GBP"},
                      "plan": "PROFESSIONAL", "annual": false, "occurredAt": rfc(at)});
    let (status, c) = app
        .post(&app.billing_key().await, "/v1/conversions", body.clone())
        .await;
    assert_eq!(status, 200, "POST /v1/conversions {body} -> {c}");
    c
}

/// Revenue credited per referrer (minor units, GBP) by `model`, once `ready` holds for it.
async fn credits(
    app: &TestApp,
    model: &str,
    ready: impl Fn(&BTreeMap<String, i64>) -> bool,
) -> BTreeMap<String, i64> {
    let admin = app.admin();
    let path = format!("/v1/metrics/attribution?model={model}");
    let read = || async {
        let (status, report) = app.get(&admin, &path).await;
        assert_eq!(status, 200, "{report}");
        let mut by = BTreeMap::new();
        for r in report["byReferrer"].as_array().cloned().unwrap_or_default() {
            assert_eq!(r["revenue"]["currency"], "GBP", "{report}");
            let id = r["referrerId"].as_str().unwrap_or_default().to_string();
            *by.entry(id).or_insert(0) += int(&r["revenue"]["amountMinor"]);
        }
        (by, report)
    };
    let settled = eventually(Duration::from_secs(15), || async {
        let (by, _) = read().await;
        ready(&by).then_some(by)
    })
    .await;
    match settled {
        Some(by) => by,
        None => panic!(
            "{model}: the credits never settled; last report {}",
            read().await.1
        ),
    }
}

/// Each model's credits to exactly `referrers` (every model credits each touch, zero
/// shares included), once they add up to `total`, against the hand-computed `expected`.
async fn settled_credits<const N: usize>(
    app: &TestApp,
    referrers: [&String; N],
    total: i64,
    expected: &[(&str, [i64; N])],
    what: &str,
) {
    for (model, want) in expected {
        let by = credits(app, model, |by| {
            referrers.iter().all(|r| by.contains_key(r.as_str())) && by.values().sum::<i64>() == total
        })
        .await;
        assert_eq!(by.len(), N, "{model}: only these referrers: {by:?}");
        let got = referrers.map(|r| by[r.as_str()]);
        assert_eq!(&got, want, "{model}: {what}");
    }
}

/// The exact window boundaries, on an app whose window is `days` (the default's constant,
/// or a configured one): a click `days` days minus one second before the signup counts, the
/// edge itself counts (inclusive), one second more does not — refused as EXPIRED for a
/// signed id, OUTSIDE_WINDOW for an imported plain id judged by its stored time.
async fn window_edges(app: &TestApp, days: i64) {
    let (ph, code) = photographer(app).await;
    let signed_up = anchor();
    let window = TimeDelta::days(days);
    for (offset, counts) in [(-1, true), (0, true), (1, false)] {
        let clicked = signed_up - window + TimeDelta::seconds(-offset);
        let id = click_at(app, &code, clicked).await;
        let user = unique("couple");
        let a = signup_at(
            app,
            json!({"userId": user, "userKind": "COUPLE", "clickId": id}),
            signed_up,
        )
        .await;
        let case = format!("{days}-day window, click {offset:+} s past the edge: {a}");
        if counts {
            assert_eq!(a["attributed"], true, "{case}");
            assert_eq!(a["referrerId"], json!(ph), "{case}");
            assert_eq!(ts(&a["touchpoints"][0]["at"]), clicked, "{case}");
            assert_eq!(a["rejectedClick"].as_str().unwrap_or(""), "", "{case}");
        } else {
            assert_eq!(a["attributed"], false, "{case}");
            assert_eq!(a["reason"], "NO_TOUCH", "{case}");
            assert_eq!(a["rejectedClick"], "EXPIRED", "{case}");
        }
    }
    // A plain id an import named: the stored click time decides, by the same window.
    for (offset, counts) in [(-1, true), (1, false)] {
        let plain = unique("import");
        let clicked = signed_up - window + TimeDelta::seconds(-offset);
        let (status, c) = app
            .post(
                &app.fresh_admin(),
                "/v1/clicks",
                json!({"code": code, "clickId": plain, "occurredAt": rfc(clicked)}),
            )
            .await;
        assert_eq!(status, 200, "{c}");
        let a = signup_at(
            app,
            json!({"userId": unique("couple"), "userKind": "COUPLE", "clickId": plain}),
            signed_up,
        )
        .await;
        assert_eq!(a["attributed"], counts, "plain id {offset:+} s: {a}");
        if !counts {
            assert_eq!(a["reason"], "OUTSIDE_WINDOW", "{a}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_is_exact_to_the_second_and_configurable() {
    assert_eq!(
        ATTRIBUTION_WINDOW_DAYS, 30,
        "docs/api.md: only touches inside the 30-day window count"
    );
    let app = spawn_app().await;
    window_edges(&app, ATTRIBUTION_WINDOW_DAYS).await;
    app.stop().await;

    let short = spawn_app_with_args(vec![], vec!["--attribution-window-days".into(), "7".into()]).await;
    window_edges(&short, 7).await;
    short.stop().await;
}

/// Three touches on one couple, each model's split to the cent, the parts summing to the
/// conversion; and the walk-through (a second photographer a day later) on the
/// same report, which needs five referrers before it shows any number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_splits_the_revenue_to_the_cent() {
    let app = spawn_app().await;
    let admin = app.fresh_admin();
    let (a, _) = photographer(&app).await;
    let (b, b_code) = photographer(&app).await;
    let (c, c_code) = photographer(&app).await;
    let (p1, _) = photographer(&app).await;
    let (p2, p2_code) = photographer(&app).await;

    // Case 1. A invited the couple by e-mail 14 days before they signed up; they clicked B's
    // link 7 days before; at signup they typed C's code. The code wins (explicit beats the
    // click and the e-mail); the models share the conversion among the three touches.
    let s = anchor();
    let email = format!("{}@example.com", unique("couple"));
    let mut invite = referral_tests::invitation(&a, "EMAIL", &email);
    invite["occurredAt"] = json!(rfc(s - TimeDelta::days(14)));
    let inv = app.invite_ok(&admin, invite).await;
    assert_eq!(
        inv["status"], "SENT",
        "an imported invitation was sent then: {inv}"
    );
    let b_click = click_at(&app, &b_code, s - TimeDelta::days(7)).await;
    let user = unique("couple");
    let att = signup_at(
        &app,
        json!({"userId": user, "userKind": "COUPLE", "email": email, "clickId": b_click, "code": c_code}),
        s,
    )
    .await;
    assert_eq!(att["attributed"], true, "{att}");
    assert_eq!(att["referrerId"], json!(c), "the typed code wins: {att}");
    let touches: Vec<(String, String, DateTime<Utc>)> = att["touchpoints"]
        .as_array()
        .expect("touchpoints")
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap_or_default().to_string(),
                t["referrerId"].as_str().unwrap_or_default().to_string(),
                ts(&t["at"]),
            )
        })
        .collect();
    assert_eq!(
        touches,
        vec![
            ("EMAIL".into(), a.clone(), s - TimeDelta::days(14)),
            ("CLICK".into(), b.clone(), s - TimeDelta::days(7)),
            ("CODE".into(), c.clone(), s),
        ],
        "{att}"
    );
    // £123.46 at the signup instant: ages 14, 7 and 0 days.
    let conv = report_conversion(&app, &user, 12_346, s).await;
    assert_eq!(conv["attributed"], true, "{conv}");
    assert_eq!(conv["referrerId"], json!(c), "{conv}");

    // Case 2, the walk-through. P1 invited the couple by e-mail; a day later they clicked
    // P2's link, and signed up a day after that with the click (the click beats the
    // e-mail). £49.99.
    let s2 = anchor() - TimeDelta::minutes(5);
    let email2 = format!("{}@example.com", unique("couple"));
    let mut invite = referral_tests::invitation(&p1, "EMAIL", &email2);
    invite["occurredAt"] = json!(rfc(s2 - TimeDelta::days(2)));
    app.invite_ok(&admin, invite).await;
    let p2_click = click_at(&app, &p2_code, s2 - TimeDelta::days(1)).await;
    let user2 = unique("couple");
    let att2 = signup_at(
        &app,
        json!({"userId": user2, "userKind": "COUPLE", "email": email2, "clickId": p2_click}),
        s2,
    )
    .await;
    assert_eq!(att2["referrerId"], json!(p2), "the click wins: {att2}");
    assert_eq!(att2["touchpoints"].as_array().map(Vec::len), Some(2), "{att2}");
    report_conversion(&app, &user2, 4_999, s2).await;

    // Expected, by hand (largest remainder; ties to the earlier touch):
    //   12,346 three ways (LINEAR): 4,115.33 each -> 4,116 / 4,115 / 4,115.
    //   TIME_DECAY, 7-day half-life: weights 2^-2 : 2^-1 : 1 = 1/7 : 2/7 : 4/7
    //     -> 1,763.71 / 3,527.43 / 7,054.86 -> 1,764 / 3,527 / 7,055.
    //   POSITION_BASED 40/20/40 -> 4,938.4 / 2,469.2 / 4,938.4 -> 4,939 / 2,469 / 4,938.
    //   4,999 two ways (LINEAR, and POSITION_BASED, which splits two touches 50/50):
    //     2,499.5 each -> 2,500 (P1, earlier) / 2,499 (P2).
    //   4,999 by TIME_DECAY, ages 2 and 1 days: 2^(-2/7) : 2^(-1/7), P1's share
    //     1 / (1 + 2^(1/7)) = 0.475265... -> 2,375.85 / 2,623.15 -> 2,376 / 2,623.
    let expected: [(&str, [i64; 5]); 5] = [
        ("FIRST_TOUCH", [12_346, 0, 0, 4_999, 0]),
        ("LAST_TOUCH", [0, 0, 12_346, 0, 4_999]),
        ("LINEAR", [4_116, 4_115, 4_115, 2_500, 2_499]),
        ("TIME_DECAY", [1_764, 3_527, 7_055, 2_376, 2_623]),
        ("POSITION_BASED", [4_939, 2_469, 4_938, 2_500, 2_499]),
    ];
    let referrers = [&a, &b, &c, &p1, &p2];
    settled_credits(
        &app,
        referrers,
        12_346 + 4_999,
        &expected,
        "A, B, C of 12,346; P1, P2 of 4,999",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicking_your_own_link_credits_nobody_and_opens_a_case() {
    let app = spawn_app().await;
    let (sue, code) = photographer(&app).await;
    let sue_token = app.member(&sue, "SUPPLIER");
    let id = click_now(&app, &code).await;
    let a = signup(
        &app,
        &sue_token,
        json!({"userId": sue, "userKind": "SUPPLIER", "clickId": id}),
    )
    .await;
    assert_eq!(a["attributed"], false, "{a}");
    assert_eq!(a["reason"], "SELF_REFERRAL", "{a}");
    assert!(a["referrerId"].as_str().is_none_or(str::is_empty), "{a}");
    assert_eq!(a["touchpoints"], json!([]), "her own touch is no touchpoint: {a}");
    assert_eq!(
        a["rejectedClick"].as_str().unwrap_or(""),
        "",
        "the id itself is fine: {a}"
    );

    let admin = app.admin();
    let case = eventually(Duration::from_secs(10), || async {
        let (_, cases) = app.get(&admin, "/v1/fraud/cases?state=OPEN&pageSize=100").await;
        cases["cases"]
            .as_array()?
            .iter()
            .find(|c| c["referrerId"] == sue.as_str() && c["subjectType"] == "SIGNUP")
            .cloned()
    })
    .await
    .expect("a review case is opened for the self-referral");
    let (_, one) = app
        .get(
            &admin,
            &format!("/v1/fraud/cases/{}", case["id"].as_str().unwrap_or_default()),
        )
        .await;
    assert!(
        one["assessment"]["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["name"] == "self_referral")),
        "{one}"
    );
    // Her conversion credits nobody either.
    let conv = report_conversion(&app, &sue, 2_500, Utc::now()).await;
    assert_eq!(conv["attributed"], false, "{conv}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_attributed_once_and_a_named_invitation_beats_a_click() {
    let app = spawn_app().await;
    let (first, first_code) = photographer(&app).await;
    let (second, second_code) = photographer(&app).await;

    // The first signup decides; a second one with another click and a code changes nothing.
    let user = unique("couple");
    let token = app.member(&user, "COUPLE");
    let id = click_now(&app, &first_code).await;
    let once = signup(
        &app,
        &token,
        json!({"userId": user, "userKind": "COUPLE", "clickId": id}),
    )
    .await;
    assert_eq!(once["referrerId"], json!(first), "{once}");
    let other = click_now(&app, &second_code).await;
    let again = signup(
        &app,
        &token,
        json!({"userId": user, "userKind": "COUPLE", "clickId": other, "code": second_code}),
    )
    .await;
    assert_eq!(again, once, "a second signup returns the first attribution");

    // An invitation the signup names beats the click in its cookie, even a newer click.
    let invitation = app
        .invite_ok(
            &app.member(&first, "SUPPLIER"),
            referral_tests::invitation(&first, "EMAIL", &format!("{}@example.com", unique("guest"))),
        )
        .await;
    let newer = click_now(&app, &second_code).await;
    let user = unique("couple");
    let r = app
        .send(
            reqwest::Method::POST,
            Some(&app.member(&user, "COUPLE")),
            "/v1/signups",
            Some(&json!({"userId": user, "userKind": "COUPLE", "invitationId": invitation["id"]})),
            &[("cookie", &format!("rm_click={newer}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = r.body;
    assert_eq!(a["attributed"], true, "{a}");
    assert_eq!(a["referrerId"], json!(first), "the named invitation wins: {a}");
    assert_eq!(a["invitationId"], invitation["id"], "{a}");
    let kinds: Vec<(&str, &str)> = a["touchpoints"]
        .as_array()
        .expect("touchpoints")
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap_or_default(),
                t["referrerId"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("INVITATION", first.as_str()), ("CLICK", second.as_str())],
        "the click still counts as a touchpoint: {a}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_and_altered_ids() {
    let app = spawn_app().await;
    let (ph, code) = photographer(&app).await;
    let keys = app.click_keys();
    let member_signup = |click_id: String| {
        let app = &app;
        async move {
            let user = unique("couple");
            signup(
                app,
                &app.member(&user, "COUPLE"),
                json!({"userId": user, "userKind": "COUPLE", "clickId": click_id}),
            )
            .await
        }
    };

    // The gateway's clock a few seconds (up to a minute) ahead of invite-svc's: the click
    // counts, as made at the signup instant.
    for ahead in [1, 5, 55] {
        let a = member_signup(keys.sign(&code, Utc::now() + TimeDelta::seconds(ahead))).await;
        assert_eq!(a["attributed"], true, "{ahead} s ahead: {a}");
        assert_eq!(a["referrerId"], json!(ph), "{a}");
        // At the signup instant (to the microsecond a Postgres timestamp keeps).
        let moved = ts(&a["touchpoints"][0]["at"]) - ts(&a["signedUpAt"]);
        assert!(moved.abs() < TimeDelta::milliseconds(1), "{a}");
    }
    // Ten minutes ahead is no clock drift: refused, with the reason.
    let a = member_signup(keys.sign(&code, Utc::now() + TimeDelta::minutes(10))).await;
    assert_eq!(
        (&a["attributed"], &a["reason"], &a["rejectedClick"]),
        (&json!(false), &json!("NO_TOUCH"), &json!("AFTER_SIGNUP")),
        "{a}"
    );

    // One character of a real click id edited (a digit of its time): no one is credited,
    // and the reason says why; the id as issued still attributes.
    let real = click_now(&app, &code).await;
    let digits = real.split('.').take(3).map(|p| p.len() + 1).sum::<usize>();
    let mut edited = real.clone().into_bytes();
    edited[digits] = if edited[digits] == b'1' { b'2' } else { b'1' };
    let edited = String::from_utf8(edited).expect("ascii");
    assert_ne!(edited, real);
    let a = member_signup(edited.clone()).await;
    assert_eq!(
        (&a["attributed"], &a["reason"], &a["rejectedClick"]),
        (&json!(false), &json!("NO_TOUCH"), &json!("BAD_SIGNATURE")),
        "{edited}: {a}"
    );
    let a = member_signup(real).await;
    assert_eq!(a["referrerId"], json!(ph), "{a}");
    app.stop().await;
}

/// `/r/{code}` as a browser with the gateway's cookie from an earlier click sends it.
async fn click_with_cookie(app: &TestApp, code: &str, cookie: Option<&str>) -> String {
    let cookie = cookie.map(|id| format!("rm_click={id}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    let r = app
        .send(reqwest::Method::GET, None, &format!("/r/{code}"), None, &headers)
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    click_param(r.header("location").unwrap_or_default()).expect("rm_click in the Location")
}

/// The walk-through: a couple clicks one photographer's link, a day later a second
/// photographer's, then signs up. Last touch credits the second, first touch the first,
/// linear splits 50/50 — whether the landing page's sdk.js names both clicks (`clickIds`) or
/// the browser went through `/r/` twice and the gateway linked them from its own cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_photographers_link_a_day_later_shares_the_credit() {
    let app = spawn_app().await;
    let (p1, p1_code) = photographer(&app).await;
    let (p2, p2_code) = photographer(&app).await;
    let (p3, p3_code) = photographer(&app).await;
    let (p4, p4_code) = photographer(&app).await;
    // A fifth referrer with one plain click: reports name no fewer than five people.
    let (p5, p5_code) = photographer(&app).await;

    // sdk.js: both ids from the landing page, oldest first; the signup names no clickId.
    let s = anchor();
    let first = click_at(&app, &p1_code, s - TimeDelta::days(2)).await;
    let second = click_at(&app, &p2_code, s - TimeDelta::days(1)).await;
    let mut altered = first.clone();
    altered.pop();
    altered.push(if first.ends_with('A') { 'B' } else { 'A' });
    let user = unique("couple");
    let att = signup_at(
        &app,
        json!({"userId": user, "userKind": "COUPLE", "clickIds": [altered, first, second]}),
        s,
    )
    .await;
    assert_eq!(att["attributed"], true, "{att}");
    assert_eq!(att["referrerId"], json!(p2), "the newest click wins: {att}");
    let touched: Vec<&str> = att["touchpoints"]
        .as_array()
        .expect("touchpoints")
        .iter()
        .map(|t| t["referrerId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        touched,
        [p1.as_str(), p2.as_str()],
        "an altered id adds nothing: {att}"
    );
    report_conversion(&app, &user, 10_000, s).await;

    // The gateway's cookie: the second redirect links the first click; the signup (a member
    // posting the newest id, as the landing page's form does) finds both.
    let member = unique("couple");
    let one = click_with_cookie(&app, &p3_code, None).await;
    let two = click_with_cookie(&app, &p4_code, Some(&one)).await;
    let admin = app.admin();
    let persisted = eventually(Duration::from_secs(15), || async {
        let (_, c) = app.get(&admin, &format!("/v1/referral-codes/{p4_code}")).await;
        (int(&c["counts"]["clicks"]) >= 1).then_some(())
    })
    .await;
    assert!(persisted.is_some(), "the second click was never persisted");
    let att = signup(
        &app,
        &app.member(&member, "COUPLE"),
        json!({"userId": member, "userKind": "COUPLE", "clickId": two}),
    )
    .await;
    assert_eq!(att["referrerId"], json!(p4), "{att}");
    let kinds: Vec<(&str, &str)> = att["touchpoints"]
        .as_array()
        .expect("touchpoints")
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap_or_default(),
                t["referrerId"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(kinds, [("CLICK", p3.as_str()), ("CLICK", p4.as_str())], "{att}");
    report_conversion(&app, &member, 10_001, Utc::now()).await;
    let lone = unique("couple");
    let p5_click = click_at(&app, &p5_code, s - TimeDelta::days(1)).await;
    signup_at(
        &app,
        json!({"userId": lone, "userKind": "COUPLE", "clickId": p5_click}),
        s,
    )
    .await;
    report_conversion(&app, &lone, 1_000, s).await;

    // 10,000 and 10,001 in two: linear and position-based 50/50 (the odd cent to the
    // earlier touch); first and last touch all to one.
    let expected: [(&str, [i64; 5]); 4] = [
        ("FIRST_TOUCH", [10_000, 0, 10_001, 0, 1_000]),
        ("LAST_TOUCH", [0, 10_000, 0, 10_001, 1_000]),
        ("LINEAR", [5_000, 5_000, 5_001, 5_000, 1_000]),
        ("POSITION_BASED", [5_000, 5_000, 5_001, 5_000, 1_000]),
    ];
    let referrers = [&p1, &p2, &p3, &p4, &p5];
    settled_credits(
        &app,
        referrers,
        21_001,
        &expected,
        "P1, P2 of 10,000; P3, P4 of 10,001; P5 of 1,000",
    )
    .await;
    app.stop().await;
}

/// The visitor's click list and the click link are bounded like every click id: too many,
/// too long or not visible ASCII is a 400 naming the field, never a 5xx or a silent drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_click_lists_and_links_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let (_, code) = photographer(&app).await;
    let user = unique("couple");
    let token = app.member(&user, "COUPLE");
    let long = "c".repeat(161);
    let cases = [
        (json!({"clickIds": vec!["c1.a"; 11]}), "clickIds"),
        (json!({"clickIds": ["c1.ok", long]}), "clickIds[1]"),
        (json!({"clickIds": ["c1\r\nx"]}), "clickIds[0]"),
        (json!({"clickIds": ["c1 x"]}), "clickIds[0]"),
    ];
    for (extra, field) in cases {
        let mut body = json!({"userId": user, "userKind": "COUPLE"});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let (status, e) = app.post(&token, "/v1/signups", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {e}");
        assert!(violated_fields(&e).iter().any(|f| f == field), "{body} -> {e}");
    }
    let admin = app.fresh_admin();
    for bad in [long.as_str(), "a\u{7f}b", "x y"] {
        let (status, e) = app
            .post(
                &admin,
                "/v1/clicks",
                json!({"code": code, "previousClickId": bad}),
            )
            .await;
        assert_eq!(status, 400, "{bad:?} -> {e}");
        assert_eq!(violated_fields(&e), ["previousClickId"], "{e}");
    }
    // Still nobody signed up: a refused signup wrote nothing.
    let ok = signup(&app, &token, json!({"userId": user, "userKind": "COUPLE"})).await;
    assert_eq!(ok["attributed"], false, "{ok}");
    app.stop().await;
}
