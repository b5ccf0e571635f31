//! analytics-svc through the gateway (docs/api.md, "analytics-svc"): invitations, signups and
//! conversions made through the JSON API in several flows, then the viral, funnel,
//! leaderboard and super-connector numbers compared with a count by hand of what was made;
//! suppression under five people; a rebuild from the logs giving the same numbers; the live
//! feed's pacing and `lagged` notice; and who may read what.

use std::time::Duration;

use referral_mesh::Storage;
use referral_tests::{TestApp, eventually, int, spawn_app, unique, violated_fields};
use serde_json::{Value, json};

fn link(referrer: &str, supplier: bool) -> Value {
    let (kind, referee) = if supplier {
        ("SUPPLIER", "COUPLE")
    } else {
        ("COUPLE", "SUPPLIER")
    };
    json!({
        "referrerId": referrer,
        "referrerKind": kind,
        "refereeKind": referee,
        "channel": "LINK",
        "recipient": {"email": format!("{}@example.org", unique("guest")), "name": "Guest"},
    })
}

/// Creates `n` invitations from `referrer`; returns the ids of those that were SENT.
async fn invite(
    app: &TestApp,
    referrer: &str,
    supplier: bool,
    n: usize,
    vendor: Option<&str>,
) -> Vec<String> {
    let token = app.member(referrer, if supplier { "SUPPLIER" } else { "COUPLE" });
    let mut sent = Vec::new();
    for _ in 0..n {
        let mut body = link(referrer, supplier);
        if let Some(v) = vendor {
            body["vendorType"] = json!(v);
        }
        let inv = app.invite_ok(&token, body).await;
        assert_eq!(
            inv["status"],
            json!("SENT"),
            "LINK invitations are sent at creation: {inv}"
        );
        sent.push(inv["id"].as_str().expect("id").to_string());
    }
    sent
}

async fn sign_up(app: &TestApp, user: &str, kind: &str, invitation: &str) {
    app.signup_attributed(user, kind, invitation).await;
}

/// Billing reports the user's conversion with its API key (members and admins cannot);
/// `_kind` is the user's side.
async fn convert(app: &TestApp, user: &str, _kind: &str, minor: i64) {
    let (status, body) = app
        .post(
            &app.billing_key().await,
            "/v1/conversions",
            json!({"userId": user, "value": {"amountMinor": minor, "currency": "GBP"}, "plan": "PROFESSIONAL", "annual": false}),
        )
        .await;
    assert_eq!(status, 200, "conversion -> {body}");
}

/// The viral metrics once they show `signups` signups.
async fn viral_when(app: &TestApp, query: &str, signups: i64) -> Value {
    let admin = app.admin();
    eventually(Duration::from_secs(10), || async {
        let (status, body) = app.get(&admin, &format!("/v1/metrics/viral{query}")).await;
        assert_eq!(status, 200, "{body}");
        (int(&body["signups"]) == signups).then_some(body)
    })
    .await
    .unwrap_or_else(|| panic!("viral metrics reach {signups} signups"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: {a} vs {b}");
}

/// The analytics-svc configuration of a running test mesh (its database, the logs).
fn analytics_config(app: &TestApp) -> analytics_svc::AnalyticsConfig {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: analytics_svc::AnalyticsConfig,
    }
    let (url, schema) = match &app.options.storage {
        Storage::Sqlite => (
            format!("sqlite:{}", app.data_dir.join("analytics.db").display()),
            "analytics".to_string(),
        ),
        Storage::Postgres { url, schema_suffix } => (url.clone(), format!("analytics{schema_suffix}")),
    };
    Cli::parse_from([
        "analytics-svc".to_string(),
        "--database-url".into(),
        url,
        "--db-schema".into(),
        schema,
        "--jwt-secret".into(),
        referral_tests::SECRET.into(),
        "--service-jwt-secret".into(),
        referral_tests::SERVICE_SECRET.into(),
        "--invite-addr".into(),
        app.mesh.invite.to_string(),
        "--fraud-addr".into(),
        app.mesh.fraud.to_string(),
        "--incentive-addr".into(),
        app.mesh.incentive.to_string(),
    ])
    .config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viral_loop_counted_by_hand_and_rebuilt_from_the_logs() {
    let app = spawn_app().await;
    let admin = app.admin();

    // Six suppliers: four photographers invite two couples each, two venues three each,
    // and the first photographer twenty more (22 connections: a super-connector).
    let suppliers: Vec<String> = (0..6).map(|_| unique("supplier")).collect();
    let mut invitations = Vec::new();
    for (n, s) in suppliers.iter().enumerate() {
        let (count, vendor) = if n < 4 { (2, "PHOTOGRAPHER") } else { (3, "VENUE") };
        invitations.push(invite(&app, s, true, count, Some(vendor)).await);
    }
    invitations[0].extend(invite(&app, &suppliers[0], true, 20, Some("PHOTOGRAPHER")).await);

    // Five couples sign up: two through supplier 0, one each through suppliers 1, 2 and 4.
    let couples: Vec<String> = (0..5).map(|_| unique("couple")).collect();
    let through = [(0, 0), (0, 1), (1, 0), (2, 0), (4, 0)];
    for (couple, (s, i)) in couples.iter().zip(through) {
        sign_up(&app, couple, "COUPLE", &invitations[s][i]).await;
    }
    // Two pay (one twice: only the first paid conversion counts as a conversion).
    convert(&app, &couples[0], "COUPLE", 10_000).await;
    convert(&app, &couples[0], "COUPLE", 5_000).await;
    convert(&app, &couples[2], "COUPLE", 2_000).await;

    // All five couples invite a supplier each; one supplier signs up through couple 0.
    let mut back = Vec::new();
    for c in &couples {
        back.extend(invite(&app, c, false, 1, None).await);
    }
    let newcomer = unique("newcomer");
    sign_up(&app, &newcomer, "SUPPLIER", &back[0]).await;

    // By hand: 11 referrers (6 suppliers, 5 couples); 4×2 + 2×3 + 20 + 5 = 39 invitations;
    // 6 signups; 2 conversions. Supplier-to-couple: 6 referrers, 34 invitations, 5 signups;
    // couple-to-supplier: 5, 5, 1.
    let v = viral_when(&app, "", 6).await;
    assert_eq!(v["suppressed"], json!(false), "{v}");
    assert_eq!(
        (
            int(&v["referrers"]),
            int(&v["invitations"]),
            int(&v["signups"]),
            int(&v["conversions"])
        ),
        (11, 39, 6, 2),
        "{v}"
    );
    close(f(&v["invitesPerReferrer"]), 39.0 / 11.0, "invitesPerReferrer");
    close(f(&v["conversionRate"]), 6.0 / 39.0, "conversionRate");
    close(f(&v["kFactor"]), 6.0 / 11.0, "kFactor");
    let by_flow = v["byFlow"].as_array().expect("byFlow");
    let flow = |name: &str| {
        by_flow
            .iter()
            .find(|x| x["flow"] == json!(name))
            .cloned()
            .expect(name)
    };
    let s2c = flow("SUPPLIER_TO_COUPLE");
    assert_eq!(
        (
            int(&s2c["referrers"]),
            int(&s2c["invitations"]),
            int(&s2c["signups"])
        ),
        (6, 34, 5),
        "{s2c}"
    );
    close(f(&s2c["kFactor"]), 5.0 / 6.0, "K supplier-to-couple");
    let c2s = flow("COUPLE_TO_SUPPLIER");
    assert_eq!(
        (
            int(&c2s["referrers"]),
            int(&c2s["invitations"]),
            int(&c2s["signups"])
        ),
        (5, 5, 1),
        "{c2s}"
    );
    close(f(&c2s["kFactor"]), 0.2, "K couple-to-supplier");
    close(f(&v["loopK"]), 5.0 / 6.0 * 0.2, "loopK");
    assert_eq!(
        flow("COUPLE_TO_COUPLE")["suppressed"],
        json!(true),
        "nobody used it"
    );
    assert!(
        f(&v["cycleTimeDays"]) >= 0.0 && f(&v["cycleTimeDays"]) < 0.01,
        "signups came within seconds: {v}"
    );
    assert_eq!(v["growthStatus"], json!("SUB_VIRAL"), "{v}");
    assert!(v.get("doublingTimeDays").is_none(), "K < 1 doubles never: {v}");

    // Funnel: every invitation SENT; the six signed up passed every stage to SIGNED_UP.
    let (status, funnel) = app.get(&admin, "/v1/metrics/funnel").await;
    assert_eq!(status, 200, "{funnel}");
    let counts: Vec<i64> = funnel["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| int(&s["count"]))
        .collect();
    // Nobody reported activity: ACTIVATED and RETAINED are 0, and so the bottleneck.
    assert_eq!(counts, vec![39, 6, 6, 6, 6, 2, 0, 0], "{funnel}");
    assert_eq!(funnel["bottleneck"], json!("ACTIVATED"), "{funnel}");

    // Two venues only: fewer than five people, no numbers.
    let venues = viral_when(&app, "?vendorType=VENUE", 0).await;
    assert_eq!(venues["suppressed"], json!(true), "{venues}");
    assert_eq!(
        (int(&venues["referrers"]), int(&venues["invitations"])),
        (0, 0),
        "{venues}"
    );
    // Photographers: four people, suppressed too; suppliers: six, shown.
    let suppliers_only = viral_when(&app, "?referrerKind=SUPPLIER", 5).await;
    assert_eq!(int(&suppliers_only["referrers"]), 6, "{suppliers_only}");

    // Leaderboard by referrals (a member may read it): supplier 0 leads with two.
    let member = app.member(&suppliers[1], "SUPPLIER");
    let (status, board) = app
        .get(&member, "/v1/leaderboard?metric=REFERRALS&period=ALL&limit=10")
        .await;
    assert_eq!(status, 200, "{board}");
    let first = &board["entries"][0];
    assert_eq!(
        (
            first["referrerId"].clone(),
            f(&first["value"]),
            int(&first["rank"])
        ),
        (json!(suppliers[0]), 2.0, 1),
        "{board}"
    );
    let (_, revenue) = app
        .get(&admin, "/v1/leaderboard?metric=REVENUE&referrerKind=SUPPLIER")
        .await;
    assert_eq!(
        revenue["entries"][0]["referrerId"],
        json!(suppliers[0]),
        "{revenue}"
    );
    assert_eq!(f(&revenue["entries"][0]["value"]), 15_000.0, "{revenue}");

    // Super-connectors: only supplier 0 has 20 connections; its couple 0 brought in one
    // more (second-order reach). Score by hand: 22 connections, stages 6+5+1×20 = 31,
    // strength 30 / (6 × 22), one success, active today (boost 2).
    let (status, sc) = app.get(&admin, "/v1/super-connectors").await;
    assert_eq!(status, 200, "{sc}");
    let list = sc["connectors"].as_array().expect("connectors");
    assert_eq!(list.len(), 1, "{sc}");
    let c = &list[0];
    assert_eq!(
        (
            c["referrerId"].clone(),
            int(&c["connections"]),
            int(&c["successes"])
        ),
        (json!(suppliers[0]), 22, 1),
        "{sc}"
    );
    assert_eq!(int(&c["secondOrderReach"]), 1, "{sc}");
    let strength = (6.0 + 5.0 + 20.0) / (6.0 * 22.0);
    close(f(&c["meanStrength"]), strength, "meanStrength");
    close(f(&c["score"]), 22.0 * strength * 1.1 * 2.0, "score");
    assert_eq!(c["tier"], json!("BRONZE"), "{sc}");

    // Global analytics are for admins.
    for path in [
        "/v1/metrics/viral",
        "/v1/metrics/funnel",
        "/v1/super-connectors",
        "/v1/metrics/cohorts",
    ] {
        let (status, body) = app.get(&member, path).await;
        assert_eq!(status, 403, "member GET {path} -> {body}");
    }
    let (status, own) = app
        .get(
            &member,
            &format!("/v1/metrics/funnel?referrerId={}", suppliers[1]),
        )
        .await;
    assert_eq!(status, 200, "a member's own funnel -> {own}");
    assert_eq!(own["suppressed"], json!(true), "two people invited: {own}");
    let (status, _) = app
        .get(
            &member,
            &format!("/v1/metrics/funnel?referrerId={}", suppliers[0]),
        )
        .await;
    assert_eq!(status, 403, "another referrer's funnel");
    // Bad filters name their field.
    let (status, body) = app
        .get(
            &admin,
            "/v1/metrics/viral?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(violated_fields(&body), vec!["from"], "{body}");
    let (status, body) = app.get(&admin, "/v1/metrics/timeseries?metric=bananas").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(violated_fields(&body), vec!["metric"], "{body}");

    // A rebuild from the logs (beside the running service) gives the same numbers.
    let (_, funnel_before) = app.get(&admin, "/v1/metrics/funnel").await;
    let (_, sc_before) = app.get(&admin, "/v1/super-connectors").await;
    let report = analytics_svc::rebuild(&analytics_config(&app))
        .await
        .expect("rebuild");
    assert!(
        report.logs.iter().any(
            |(s, r)| *s == "invite" && matches!(r, analytics_svc::rebuild::Replayed::Events(n) if *n > 0)
        ),
        "{report:?}"
    );
    let rebuilt = viral_when(&app, "", 6).await;
    assert_eq!(rebuilt, v, "viral after the rebuild");
    assert_eq!(app.get(&admin, "/v1/metrics/funnel").await.1, funnel_before);
    let (_, sc_after) = app.get(&admin, "/v1/super-connectors").await;
    for field in [
        "referrerId",
        "connections",
        "successes",
        "secondOrderReach",
        "meanStrength",
        "tier",
    ] {
        assert_eq!(
            sc_after["connectors"][0][field], sc_before["connectors"][0][field],
            "{field}"
        );
    }
    app.stop().await;
}

/// Reads server-sent events for `limit`: (event name, data) in order.
async fn read_sse(mut response: reqwest::Response, limit: Duration) -> Vec<(String, String)> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            Some((field("event:")?, field("data:").unwrap_or_default()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_is_paced_and_says_when_it_drops() {
    let app = spawn_app().await;
    // Members may not watch.
    let member = app.member(&unique("sue"), "SUPPLIER");
    let (status, body) = app.get(&member, "/v1/events").await;
    assert_eq!(status, 403, "{body}");

    let response = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(app.admin())
        .send()
        .await
        .expect("GET /v1/events");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream"),
        "{:?}",
        response.headers()
    );
    let opened = tokio::time::Instant::now();
    let reader = tokio::spawn(read_sse(response, Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A burst: 30 invitations at once (each an invitation.created and an invitation.sent).
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let items: Vec<Value> = (0..30).map(|_| link(&sue, true)).collect();
    let (status, batch) = app
        .post(
            &token,
            "/v1/invitations:batchCreate",
            json!({"referrerId": sue, "referrerKind": "SUPPLIER", "invitations": items}),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(int(&batch["accepted"]), 30, "{batch}");

    let events = reader.await.expect("reader");
    let elapsed = opened.elapsed().as_secs_f64();
    let data: Vec<&(String, String)> = events.iter().filter(|(name, _)| name != "lagged").collect();
    let lagged: Vec<&(String, String)> = events.iter().filter(|(name, _)| name == "lagged").collect();
    assert!(!data.is_empty(), "events arrived: {events:?}");
    assert!(
        data.iter()
            .all(|(name, json)| name.contains('.') && json.contains("\"source\"")),
        "{data:?}"
    );
    assert!(
        data.iter().any(|(name, _)| name == "invitation.created"),
        "{data:?}"
    );
    // At most 10 a second, notices included, over the ~4 s read.
    assert!(
        events.len() as f64 <= 10.0 * elapsed + 1.0,
        "{} items in {elapsed:.1}s",
        events.len()
    );
    // 60+ events against a one-second backlog: the oldest were dropped, and said so.
    assert!(!lagged.is_empty(), "a lagged notice: {events:?}");
    let dropped: i64 = lagged
        .iter()
        .map(|(_, d)| {
            let v: Value = serde_json::from_str(d).unwrap_or_default();
            int(&v["lagged"])
        })
        .sum();
    assert!(dropped >= 30, "{dropped} dropped of 60+");
    app.stop().await;
}
