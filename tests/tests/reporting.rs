//! The rest of the seeds' reporting (issue #14) through the gateway: revenue in every
//! currency (a EUR and a GBP conversion both in the REVENUE leaderboard, before and after
//! an admin adds a dated rate, the rate shown), leaderboards by vendor type (photographers
//! against photographers), and the funnel's ACTIVATED and RETAINED stages and churn fed by
//! activity reports, with who may report activity.

use std::time::Duration;

use chrono::Utc;
use referral_common::auth::Role;
use referral_proto::analytics::v1::{
    ActivityKind, RecordActivityRequest, analytics_service_client::AnalyticsServiceClient,
};
use referral_tests::{TestApp, authed, eventually, int, spawn_app, unique, violated_fields};
use serde_json::{Value, json};

/// A supplier of `vendor` invites one couple by link, who signs up; returns the couple.
async fn referee_of(app: &TestApp, supplier: &str, vendor: &str) -> String {
    let token = app.member(supplier, "SUPPLIER");
    let inv = app
        .invite_ok(
            &token,
            json!({
                "referrerId": supplier,
                "referrerKind": "SUPPLIER",
                "refereeKind": "COUPLE",
                "vendorType": vendor,
                "channel": "LINK",
                "recipient": {"email": format!("{}@example.org", unique("couple")), "name": "Couple"},
            }),
        )
        .await;
    let couple = unique("couple");
    let (status, body) = app
        .post(
            &app.member(&couple, "COUPLE"),
            "/v1/signups",
            json!({"userId": couple, "userKind": "COUPLE", "invitationId": inv["id"]}),
        )
        .await;
    assert_eq!(status, 200, "signup -> {body}");
    assert_eq!(body["attributed"], json!(true), "{body}");
    couple
}

/// Billing reports a conversion, with an API key holding `conversions:write`.
async fn convert(app: &TestApp, user: &str, minor: i64, currency: &str) {
    let (status, body) = app
        .post(
            &app.billing_key().await,
            "/v1/conversions",
            json!({"userId": user, "value": {"amountMinor": minor, "currency": currency}, "plan": "PROFESSIONAL", "annual": false}),
        )
        .await;
    assert_eq!(status, 200, "conversion -> {body}");
}

/// The marketplace reports activity straight to analytics-svc over gRPC as a service (the
/// gateway takes no service tokens); through the gateway it uses an API key with
/// `activity:write` (checked below).
async fn report_activity(
    app: &TestApp,
    user: &str,
    kind: ActivityKind,
    occurred_at: Option<chrono::DateTime<Utc>>,
) -> Result<Value, tonic::Status> {
    let mut client = AnalyticsServiceClient::connect(TestApp::grpc_uri(app.mesh.analytics))
        .await
        .expect("connect to analytics-svc");
    let req = RecordActivityRequest {
        user_id: user.into(),
        kind: kind as i32,
        occurred_at: occurred_at.map(referral_common::ids::to_ts),
    };
    let token = app.token("marketplace", Role::Service, None);
    let a = client.record_activity(authed(req, &token)).await?.into_inner();
    Ok(json!({"userId": a.user_id, "kind": a.kind, "occurredAt": a.occurred_at.map(|t| t.seconds)}))
}

fn entry<'a>(board: &'a Value, referrer: &str) -> &'a Value {
    board["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["referrerId"] == referrer))
        .unwrap_or(&Value::Null)
}

/// An absent or empty list (proto3 JSON may leave either).
fn no_items(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(|a| a.is_empty())
}

fn ids(board: &Value) -> Vec<String> {
    board["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["referrerId"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The leaderboard at `query` once `check` holds.
async fn board_when(app: &TestApp, query: &str, check: impl Fn(&Value) -> bool) -> Value {
    let admin = app.admin();
    let last = std::cell::RefCell::new(Value::Null);
    let found = eventually(Duration::from_secs(10), || {
        let (app, admin, last, check) = (&app, &admin, &last, &check);
        async move {
            let (status, body) = app.get(admin, &format!("/v1/leaderboard?{query}")).await;
            assert_eq!(status, 200, "{body}");
            *last.borrow_mut() = body.clone();
            check(&body).then_some(body)
        }
    })
    .await;
    found.unwrap_or_else(|| panic!("leaderboard {query} never matched; last: {}", last.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_currency_shows_in_the_revenue_leaderboard_and_vendor_types_rank_apart() {
    let app = spawn_app().await;
    let photographers: Vec<String> = (0..5).map(|_| unique("photo")).collect();
    let venues: Vec<String> = (0..5).map(|_| unique("venue")).collect();
    let mut couples = Vec::new();
    for p in &photographers {
        couples.push(referee_of(&app, p, "PHOTOGRAPHER").await);
    }
    for v in &venues {
        couples.push(referee_of(&app, v, "VENUE").await);
    }
    // A photographer's couple pays 100.00 EUR, another's 50.00 GBP; a venue's 10.00 GBP.
    convert(&app, &couples[0], 10_000, "EUR").await;
    convert(&app, &couples[1], 5_000, "GBP").await;
    convert(&app, &couples[5], 1_000, "GBP").await;

    // No EUR rate yet: the EUR is shown per currency and as unconverted, ranked at 0.
    let q = "metric=REVENUE&period=ALL&vendorType=PHOTOGRAPHER";
    let board = board_when(&app, q, |b| {
        entry(b, &photographers[0]).is_object() && b["entries"][0]["referrerId"] == json!(photographers[1])
    })
    .await;
    assert_eq!(board["suppressed"], json!(false), "{board}");
    assert_eq!(board["currency"], json!("GBP"), "{board}");
    let first = &board["entries"][0];
    assert_eq!(first["referrerId"], json!(photographers[1]), "{board}");
    assert_eq!(first["value"].as_f64(), Some(5_000.0), "{board}");
    assert_eq!(
        first["revenue"],
        json!({"amountMinor": "5000", "currency": "GBP"}),
        "{board}"
    );
    let eur = entry(&board, &photographers[0]);
    assert_eq!(eur["value"].as_f64().unwrap_or(0.0), 0.0, "{board}");
    assert_eq!(
        eur["revenueByCurrency"],
        json!([{"amountMinor": "10000", "currency": "EUR"}]),
        "{board}"
    );
    assert_eq!(eur["unconvertedCurrencies"], json!(["EUR"]), "{board}");
    assert_eq!(board["unconvertedCurrencies"], json!(["EUR"]), "{board}");
    // Photographers only: no venue on their board.
    let listed = ids(&board);
    assert!(listed.iter().all(|id| photographers.contains(id)), "{board}");
    assert_eq!(listed.len(), 5, "{board}");

    // An admin adds a EUR rate from yesterday: 100.00 EUR at 0.85 = 85.00 GBP leads.
    let yesterday = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let admin = app.fresh_admin();
    let (status, rate) = app
        .put(
            &admin,
            "/v1/fx-rates",
            json!({"currency": "EUR", "rate": "0.8500", "effectiveFrom": yesterday}),
        )
        .await;
    assert_eq!(status, 200, "{rate}");
    assert_eq!(
        (rate["rate"].clone(), rate["effectiveFrom"].clone()),
        (json!("0.85"), json!(yesterday))
    );
    let board = board_when(&app, q, |b| {
        b["entries"][0]["referrerId"] == json!(photographers[0])
    })
    .await;
    let first = &board["entries"][0];
    assert_eq!(first["value"].as_f64(), Some(8_500.0), "{board}");
    assert_eq!(
        first["revenue"],
        json!({"amountMinor": "8500", "currency": "GBP"}),
        "{board}"
    );
    assert_eq!(
        first["revenueByCurrency"],
        json!([{"amountMinor": "10000", "currency": "EUR"}]),
        "{board}"
    );
    assert!(no_items(&first["unconvertedCurrencies"]), "{board}");
    assert!(no_items(&board["unconvertedCurrencies"]), "{board}");
    assert_eq!(
        board["ratesUsed"],
        json!([{"currency": "EUR", "rate": "0.85", "effectiveFrom": yesterday}]),
        "{board}"
    );
    assert_eq!(
        board["entries"][1]["referrerId"],
        json!(photographers[1]),
        "{board}"
    );

    // Venues against venues.
    let venue_board = board_when(&app, "metric=REVENUE&period=ALL&vendorType=VENUE", |b| {
        b["entries"][0]["referrerId"] == json!(venues[0])
    })
    .await;
    assert_eq!(
        venue_board["entries"][0]["value"].as_f64(),
        Some(1_000.0),
        "{venue_board}"
    );
    assert!(
        ids(&venue_board).iter().all(|id| venues.contains(id)),
        "{venue_board}"
    );
    let referrals = board_when(&app, "metric=REFERRALS&period=ALL&vendorType=VENUE", |b| {
        ids(b).len() == 5
    })
    .await;
    assert!(
        ids(&referrals).iter().all(|id| venues.contains(id)),
        "{referrals}"
    );
    let (status, bad) = app.get(&admin, "/v1/leaderboard?vendorType=BAKER").await;
    assert_eq!(status, 400, "{bad}");

    // Rates are listed, checked field by field, admin only, and audited.
    let (status, list) = app.get(&admin, "/v1/fx-rates").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["rates"][0]["currency"], json!("EUR"), "{list}");
    for (body, field) in [
        (
            json!({"currency": "EUR", "rate": "-1", "effectiveFrom": yesterday}),
            "rate",
        ),
        (
            json!({"currency": "EUR", "rate": "1e3", "effectiveFrom": yesterday}),
            "rate",
        ),
        (
            json!({"currency": "GBP", "rate": "1", "effectiveFrom": yesterday}),
            "currency",
        ),
        (
            json!({"currency": "XXY", "rate": "1", "effectiveFrom": yesterday}),
            "currency",
        ),
        (
            json!({"currency": "EUR", "rate": "1", "effectiveFrom": "1969-12-31"}),
            "effectiveFrom",
        ),
    ] {
        let (status, err) = app.put(&admin, "/v1/fx-rates", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(violated_fields(&err), vec![field.to_string()], "{body} -> {err}");
    }
    let member = app.member(&photographers[0], "SUPPLIER");
    let (status, _) = app
        .put(
            &member,
            "/v1/fx-rates",
            json!({"currency": "EUR", "rate": "9", "effectiveFrom": yesterday}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app.get(&member, "/v1/fx-rates").await;
    assert_eq!(status, 403);
    let (status, audit) = app.get(&admin, "/v1/audit?action=fx_rate.put").await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{audit}");
    assert!(
        audit.to_string().contains("0.85"),
        "the rate is in the audit row: {audit}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_feeds_activated_retained_and_churn_across_eight_stages() {
    let app = spawn_app().await;
    let suppliers: Vec<String> = (0..5).map(|_| unique("supplier")).collect();
    let mut couples = Vec::new();
    for s in &suppliers {
        couples.push(referee_of(&app, s, "PHOTOGRAPHER").await);
    }
    // Couple 3 reports activation before paying: it counts once it converts.
    report_activity(&app, &couples[3], ActivityKind::Activated, None)
        .await
        .expect("activation");
    for c in &couples {
        convert(&app, c, 2_500, "GBP").await;
    }
    for c in &couples[..3] {
        let first = report_activity(&app, c, ActivityKind::Activated, None)
            .await
            .expect("activation");
        // The same report again: same answer, counted once.
        let at = first["occurredAt"]
            .as_i64()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0));
        let again = report_activity(&app, c, ActivityKind::Activated, at)
            .await
            .expect("again");
        assert_eq!(first, again);
    }
    report_activity(&app, &couples[0], ActivityKind::Churned, None)
        .await
        .expect("churn");
    // Couple 4 never activates; a churn of someone never referred changes nothing.
    report_activity(&app, &unique("stranger"), ActivityKind::Churned, None)
        .await
        .expect("stranger");

    let admin = app.admin();
    let last = std::cell::RefCell::new(Value::Null);
    let funnel = eventually(Duration::from_secs(10), || {
        let (app, admin, last) = (&app, &admin, &last);
        async move {
            let (status, body) = app.get(admin, "/v1/metrics/funnel").await;
            assert_eq!(status, 200, "{body}");
            *last.borrow_mut() = body.clone();
            (int(&body["churned"]) == 1 && int(&body["stages"][5]["count"]) == 5).then_some(body)
        }
    })
    .await
    .unwrap_or_else(|| panic!("the funnel never showed the activity: {}", last.borrow()));
    let stages: Vec<(String, i64)> = funnel["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| (s["stage"].as_str().unwrap_or("").to_string(), int(&s["count"])))
        .collect();
    let expected: Vec<(String, i64)> = [
        ("SENT", 5),
        ("DELIVERED", 5),
        ("OPENED", 5),
        ("CLICKED", 5),
        ("SIGNED_UP", 5),
        ("CONVERTED", 5),
        ("ACTIVATED", 4),
        ("RETAINED", 3),
    ]
    .iter()
    .map(|(s, n)| (s.to_string(), *n))
    .collect();
    assert_eq!(stages, expected, "{funnel}");
    // Step rates 1 .. 1, 4/5, 3/4: the bottleneck is the last stage.
    assert_eq!(funnel["bottleneck"], json!("RETAINED"), "{funnel}");
    assert_eq!(funnel["churnRate"].as_f64(), Some(0.25), "{funnel}");

    // Who may report: members and admins 403 through the gateway; a service token is not a
    // gateway credential (401).
    let body = json!({"userId": couples[4], "kind": "ACTIVATED"});
    for token in [app.member(&couples[4], "COUPLE"), app.fresh_admin()] {
        let (status, err) = app.post(&token, "/v1/activity", body.clone()).await;
        assert_eq!(status, 403, "{err}");
    }
    let (status, _) = app.post(&app.service_token(), "/v1/activity", body.clone()).await;
    assert_eq!(status, 401);
    // A key without the scope: 403; with `activity:write`: reported.
    let reports = app.api_key(&["reports:read"]).await;
    let (status, err) = app.post(&reports, "/v1/activity", body.clone()).await;
    assert_eq!(status, 403, "{err}");
    let marketplace = app.api_key(&["activity:write"]).await;
    let outsider = json!({"userId": unique("outsider"), "kind": "ACTIVATED"});
    let (status, a) = app.post(&marketplace, "/v1/activity", outsider).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["kind"], json!("ACTIVATED"), "{a}");
    // Bad reports name their field.
    let far = Utc::now() + chrono::Duration::days(2);
    let old = chrono::DateTime::from_timestamp(-86_400, 0);
    for (user, kind, at, field) in [
        ("", ActivityKind::Activated, None, "userId"),
        ("u", ActivityKind::Unspecified, None, "kind"),
        ("u", ActivityKind::Churned, Some(far), "occurredAt"),
        ("u", ActivityKind::Churned, old, "occurredAt"),
    ] {
        let err = report_activity(&app, user, kind, at).await.expect_err(field);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let fields: Vec<String> = referral_common::error::violations_of(&err)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, vec![field.to_string()], "{err:?}");
    }
    // The funnel is unchanged by all of that.
    let (_, again) = app.get(&admin, "/v1/metrics/funnel").await;
    assert_eq!(again["stages"], funnel["stages"]);
    app.stop().await;
}
