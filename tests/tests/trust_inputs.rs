//! Issue #13, trust boundary: input that used to panic a task, overflow a sum, sort an
//! instant into the past or redirect anywhere is refused at the gateway with the field
//! named; data already stored that way fails its one operation instead of the service.

use std::{path::Path, time::Duration};

use chrono::{DateTime, Datelike, TimeZone, Utc, Weekday};
use referral_mesh::Storage;
use referral_tests::{TestApp, eventually, spawn_app, spawn_app_with_args, unique, violated_fields};
use serde_json::{Value, json};

/// Runs one statement against a service's own database (SQLite file or Postgres schema),
/// bypassing every validation: how bad rows from before this fix look.
async fn exec(app: &TestApp, service: &str, sql: &str, binds: &[&str]) {
    match &app.options.storage {
        Storage::Sqlite => {
            let url = format!("sqlite:{}", app.data_dir.join(format!("{service}.db")).display());
            let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(&pool).await.expect(sql);
            pool.close().await;
        }
        Storage::Postgres { url, schema_suffix } => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let mut conn = pool.acquire().await.expect("connection");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SET search_path TO {service}{schema_suffix}"
            )))
            .execute(&mut *conn)
            .await
            .expect("search_path");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(&mut *conn).await.expect(sql);
        }
    }
}

fn mailbox_has(dir: &Path, invitation_id: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|es| {
            es.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{invitation_id}.eml"))
            })
        })
        .unwrap_or(false)
}

/// A Tuesday 10:00 London at least a week ahead: outside every blackout.
fn tuesday_morning() -> DateTime<Utc> {
    let mut date = (Utc::now() + chrono::Duration::days(7)).date_naive();
    while date.weekday() != Weekday::Tue {
        date = date.succ_opt().expect("a next day");
    }
    chrono_tz::Europe::London
        .from_local_datetime(&date.and_hms_opt(10, 0, 0).expect("time"))
        .single()
        .expect("unambiguous")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_name_with_crlf_bounces_its_invitation_and_the_next_is_still_sent() {
    let app = spawn_app_with_args(vec![], vec!["--scheduler-tick".into(), "50ms".into()]).await;
    let mailbox = app.mesh.mailbox.clone().expect("dev mailbox");
    let at = tuesday_morning();
    app.mesh.invite_clock.set(at);
    let ana = unique("ana");
    let token = app.member(&ana, "SUPPLIER");
    let invite = |email: &str| {
        json!({"referrerId": ana, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
               "channel": "EMAIL", "recipient": {"email": email, "name": "Guest"},
               // Due an hour later, so nothing is sent before the row is tampered with.
               "sendAt": (at + chrono::Duration::hours(1)).to_rfc3339()})
    };

    // Refused at creation, naming the field.
    let mut bad = invite("eve@example.com");
    bad["recipient"]["name"] = json!("Eve\r\nBcc: everyone@example.com");
    let (status, body) = app.post(&token, "/v1/invitations", bad).await;
    assert_eq!(
        (status, violated_fields(&body)),
        (400, vec!["recipient.name".to_string()]),
        "{body}"
    );

    // A row stored before that check (written straight into the store) is due first...
    let first = app.invite_ok(&token, invite("eve@example.com")).await;
    let second = app.invite_ok(&token, invite("kim@example.com")).await;
    let (first, second) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    exec(
        &app,
        "invite",
        "UPDATE invitations SET recipient_name = $1, referrer_name = $2 WHERE id = $3",
        &["Eve\r\nBcc: everyone@example.com", "Ana\nX: y", first],
    )
    .await;
    let due =
        referral_tests::ts(&app.get(&token, &format!("/v1/invitations/{second}")).await.1["scheduledFor"]);
    app.mesh.invite_clock.set(due);

    // ...and the next one is still delivered on time; the bad one ends BOUNCED with a reason.
    let sent = eventually(Duration::from_secs(10), || {
        let found = mailbox_has(&mailbox, second);
        async move { found.then_some(()) }
    })
    .await;
    assert!(sent.is_some(), "the next invitation reached the mailbox");
    let (_, bounced) = app.get(&token, &format!("/v1/invitations/{first}")).await;
    assert_eq!(bounced["status"], "BOUNCED", "{bounced}");
    assert!(
        bounced["statusReason"]
            .as_str()
            .unwrap_or_default()
            .contains("control characters"),
        "{bounced}"
    );
    assert!(!mailbox_has(&mailbox, first));
    app.stop().await;
}

/// Every case: a body change and the field the 400 must name.
fn assert_400(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "{field}: {body}");
    assert!(
        violated_fields(body).iter().any(|f| f == field),
        "{field} named in {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_strings_instants_and_landing_urls_are_bounded() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let good = json!({"referrerId": sue, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
                      "channel": "EMAIL", "recipient": {"email": "ann@example.com", "name": "Ann"}});
    let long = |n: usize| "x".repeat(n);
    let year_9999 = "9999-12-31T23:00:00-05:00";
    let cases: Vec<(&str, Value, &str)> = vec![
        ("recipient.name", json!(long(201)), "recipient.name"),
        ("recipient.name", json!("Ann\u{0}"), "recipient.name"),
        ("referrerName", json!("Sue\nBcc: x@y.z"), "referrerName"),
        ("businessName", json!(long(201)), "businessName"),
        ("message", json!(long(2001)), "message"),
        ("message", json!("hi\u{1b}[2J"), "message"),
        ("campaignId", json!(long(129)), "campaignId"),
        ("templateId", json!("a\u{7f}"), "templateId"),
        ("sendAt", json!(year_9999), "sendAt"),
        (
            "sendAt",
            json!((Utc::now() + chrono::Duration::days(800)).to_rfc3339()),
            "sendAt",
        ),
        ("weddingDate", json!("2999-06-01"), "weddingDate"),
        ("weddingDate", json!("1899-12-31"), "weddingDate"),
    ];
    for (key, value, field) in cases {
        let mut body = good.clone();
        body[key] = value;
        let (status, answer) = app.post(&token, "/v1/invitations", body).await;
        assert_400(status, &answer, field);
    }
    let mut body = good.clone();
    body["recipient"]["email"] = json!(format!("{}@example.com", long(250)));
    let (status, answer) = app.post(&token, "/v1/invitations", body).await;
    assert_400(status, &answer, "recipient.email");
    let mut body = good.clone();
    body["utm"] = json!({"source": long(201)});
    let (status, answer) = app.post(&token, "/v1/invitations", body).await;
    assert_400(status, &answer, "utm.source");

    // A sendAt in the past is "now"; one inside the horizon is kept.
    let mut body = good.clone();
    body["sendAt"] = json!("2001-01-01T00:00:00Z");
    assert_eq!(app.post(&token, "/v1/invitations", body).await.0, 200);

    // Landing URLs: bounded, and only on allowed hosts (the default landing URL's host).
    let code = |landing: &str| json!({"referrerId": sue, "referrerKind": "SUPPLIER", "landingUrl": landing});
    let huge = format!("https://example.com/{}", long(900_000));
    for bad in [
        "https://evil.example.net/phish",
        "javascript:alert(1)",
        huge.as_str(),
    ] {
        let (status, answer) = app.post(&token, "/v1/referral-codes", code(bad)).await;
        assert!(status == 400 || status == 413, "{status} {answer}");
        if status == 400 {
            assert_400(status, &answer, "landingUrl");
        }
    }
    let big_but_fits = format!("https://example.com/{}", long(3_000));
    let (status, answer) = app.post(&token, "/v1/referral-codes", code(&big_but_fits)).await;
    assert_400(status, &answer, "landingUrl");
    let (status, answer) = app
        .post(
            &token,
            "/v1/referral-codes",
            code("https://example.com/spring?x=1"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversion_values_are_positive_bounded_and_iso() {
    let app = spawn_app().await;
    // Conversions come from billing: through the gateway, an API key with conversions:write.
    let token = app.billing_key().await;
    let conversion = |amount: Value, currency: &str| {
        json!({"userId": unique("u"), "value": {"amountMinor": amount, "currency": currency},
               "plan": "STARTER", "annual": false})
    };
    for (amount, currency, field) in [
        (json!("9223372036854775807"), "GBP", "value.amountMinor"),
        (json!("100000000001"), "GBP", "value.amountMinor"),
        (json!("0"), "GBP", "value.amountMinor"),
        (json!("-5"), "GBP", "value.amountMinor"),
        (json!("2500"), "XYZ", "value.currency"),
        (json!("2500"), "gbp", "value.currency"),
    ] {
        let (status, body) = app
            .post(&token, "/v1/conversions", conversion(amount, currency))
            .await;
        assert_400(status, &body, field);
    }
    let mut late = conversion(json!("2500"), "GBP");
    late["occurredAt"] = json!((Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    let (status, body) = app.post(&token, "/v1/conversions", late).await;
    assert_400(status, &body, "occurredAt");
    let mut ancient = conversion(json!("2500"), "GBP");
    ancient["occurredAt"] = json!("1999-01-01T00:00:00Z");
    let (status, body) = app.post(&token, "/v1/conversions", ancient).await;
    assert_400(status, &body, "occurredAt");
    let (status, body) = app
        .post(
            &token,
            "/v1/conversions",
            conversion(json!("100000000000"), "GBP"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_stored_amounts_never_make_money_sums_fail_with_500() {
    let app = spawn_app().await;
    let admin = app.admin();
    let referrer = unique("max");
    let campaign = unique("camp");
    // Rows as an unbounded conversion once booked them, written straight into the store.
    exec(
        &app,
        "incentive",
        &format!(
            "INSERT INTO campaigns (id, name, starts_at, ends_at, multiplier, referrer_kind, cap_minor, cap_currency, created_at) \
             VALUES ('{campaign}', 'Huge', '2026-01-01T00:00:00+00:00', '2099-01-01T00:00:00+00:00', 2.0, NULL, 9223372036854775807, 'GBP', '2026-01-01T00:00:00+00:00')"
        ),
        &[],
    )
    .await;
    for i in 0..2 {
        exec(
            &app,
            "incentive",
            &format!(
                "INSERT INTO entries (id, dedupe_key, referrer_id, referrer_kind, kind, amount_minor, currency, campaign_bonus_minor, \
                 conversion_id, referee_id, program_id, campaign_id, milestone, badge, eligible_at, expires_at, reason, created_at) \
                 VALUES ('{referrer}-{i}', '{referrer}-{i}', '{referrer}', 'SUPPLIER', 'CONVERSION_REWARD', 9223372036854775807, 'GBP', \
                 9223372036854775807, 'conv-{referrer}-{i}', 'ref-{referrer}-{i}', 'supplier-default', '{campaign}', 0, '', \
                 '2026-01-01T00:00:00+00:00', '2099-01-01T00:00:00+00:00', '', '2026-01-01T00:00:00+00:00')"
            ),
            &[],
        )
        .await;
        exec(
            &app,
            "incentive",
            &format!(
                "INSERT INTO entry_current (entry_id, referrer_id, state, payout_id, eligible_at, expires_at) \
                 VALUES ('{referrer}-{i}', '{referrer}', 'ELIGIBLE', '', '2026-01-01T00:00:00+00:00', '2099-01-01T00:00:00+00:00')"
            ),
            &[],
        )
        .await;
    }

    // The balance cannot be shown as an int64: a clear 400 naming why, not a 500.
    let (status, body) = app
        .get(&admin, &format!("/v1/referrers/{referrer}/rewards"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("balance"),
        "{body}"
    );
    // Nor can it be paid out in one payout.
    let (status, body) = app
        .post(&admin, "/v1/payouts", json!({"referrerId": referrer}))
        .await;
    assert_eq!(status, 400, "{body}");
    // The campaign's spend only bounds its budget: it saturates and the list still answers.
    let (status, body) = app.get(&admin, "/v1/campaigns?pageSize=500").await;
    assert_eq!(status, 200, "{body}");
    let listed = body["campaigns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == campaign.as_str()).cloned())
        .expect("the campaign is listed");
    assert_eq!(listed["spent"]["amountMinor"], "9223372036854775807", "{listed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoint_event_types_are_known_few_and_distinct() {
    let app = spawn_app().await;
    let admin = app.admin();
    let hook = |types: Value| json!({"url": "https://hooks.example.com/referrals", "eventTypes": types});
    // Hundreds of long unknown types used to be a 500 (the error outgrew an HTTP/2 header).
    let many: Vec<String> = (0..500)
        .map(|i| format!("unknown.type.{i}.{}", "x".repeat(200)))
        .collect();
    let (status, body) = app.post(&admin, "/v1/webhook-endpoints", hook(json!(many))).await;
    assert_400(status, &body, "eventTypes");
    let sixty_four: Vec<String> = (0..64).map(|i| format!("nope.{i}.{}", "y".repeat(200))).collect();
    let (status, body) = app
        .post(&admin, "/v1/webhook-endpoints", hook(json!(sixty_four)))
        .await;
    assert_400(status, &body, "eventTypes[63]");
    let (status, body) = app
        .post(
            &admin,
            "/v1/webhook-endpoints",
            hook(json!(["invitation.created", "invitation.created"])),
        )
        .await;
    assert_400(status, &body, "eventTypes[1]");
    for (key, value) in [
        ("url", json!("https://hooks.example.com/a\nb")),
        ("description", json!("x".repeat(501))),
        ("description", json!("bell\u{7}")),
    ] {
        let mut body = hook(json!(["*"]));
        body[key] = value;
        let (status, answer) = app.post(&admin, "/v1/webhook-endpoints", body).await;
        assert_400(status, &answer, key);
    }
    let (status, body) = app
        .post(&admin, "/v1/webhook-endpoints", hook(json!(["*"])))
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_are_bounded_too() {
    let app = spawn_app().await;
    let admin = app.admin();
    let campaign = json!({"name": "Spring", "startsAt": "2026-03-01T00:00:00Z",
                          "endsAt": "2026-04-01T00:00:00Z", "multiplier": 2.0});
    for (key, value) in [
        ("name", json!("Spring\r\nSale")),
        ("name", json!("n".repeat(201))),
        ("startsAt", json!("1971-01-01T00:00:00Z")),
        ("endsAt", json!("9999-12-31T23:00:00-05:00")),
        ("endsAt", json!("9000-01-01T00:00:00Z")),
    ] {
        let mut body = campaign.clone();
        body[key] = value;
        let (status, answer) = app.post(&admin, "/v1/campaigns", body).await;
        assert_400(status, &answer, key);
    }
    let mut body = campaign.clone();
    body["budgetCap"] = json!({"amountMinor": "9223372036854775807", "currency": "GBP"});
    let (status, answer) = app.post(&admin, "/v1/campaigns", body).await;
    assert_400(status, &answer, "budgetCap.amountMinor");
    let (status, answer) = app.post(&admin, "/v1/campaigns", campaign).await;
    assert_eq!(status, 200, "{answer}");

    for note in ["x".repeat(2001), "approved\u{1b}[31m".to_string()] {
        let (status, answer) = app
            .post(
                &admin,
                "/v1/fraud/cases/some-case:resolve",
                json!({"decision": "APPROVE", "note": note}),
            )
            .await;
        assert_400(status, &answer, "note");
    }
    let (status, answer) = app
        .post(&admin, "/v1/payouts", json!({"referrerId": "a\u{0}b"}))
        .await;
    assert_400(status, &answer, "referrerId");
    app.stop().await;
}
