//! Invitations through the gateway (docs/api.md, invite-svc "Invitations").

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::{America::New_York, Europe::London};
use invite_svc::domain::quota::{FREE_TIER_INVITATIONS_PER_DAY, FREE_TIER_INVITATIONS_PER_HOUR};
use referral_tests::{
    assert_code_shape, assert_error, assert_outside_blackouts, error_info, invitation, spawn_app,
    spawn_app_with_args, ts, unique, violated_fields,
};
use serde_json::{Value, json};

fn hour_counts(invitations: &[Value]) -> HashMap<chrono::DateTime<Utc>, usize> {
    let mut hours = HashMap::new();
    for inv in invitations {
        let at = ts(&inv["scheduledFor"]);
        let hour = at
            .date_naive()
            .and_hms_opt(at.hour(), 0, 0)
            .expect("hour")
            .and_utc();
        *hours.entry(hour).or_default() += 1;
    }
    hours
}

fn day_counts(invitations: &[Value]) -> HashMap<NaiveDate, usize> {
    let mut days = HashMap::new();
    for inv in invitations {
        *days.entry(ts(&inv["scheduledFor"]).date_naive()).or_default() += 1;
    }
    days
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_three_people_one_twice() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let before = Utc::now();

    // 1: e-mail, default time zone (Europe/London).
    let ann = app
        .invite_ok(&token, invitation(&sue, "EMAIL", "ann.smith@example.com"))
        .await;
    // 2: e-mail to New York.
    let mut body = invitation(&sue, "EMAIL", "ben@example.com");
    body["recipient"]["timezone"] = json!("America/New_York");
    let ben = app.invite_ok(&token, body).await;
    // 3: a link the referrer shares themselves, with the optional fields.
    let mut body = invitation(&sue, "LINK", "cat@example.com");
    body["message"] = json!("Join me on the marketplace!");
    body["campaignId"] = json!("spring-fair");
    body["utm"] = json!({"source": "instagram", "medium": "social", "campaign": "spring"});
    let cat = app.invite_ok(&token, body).await;
    assert_eq!(cat["message"], json!("Join me on the marketplace!"));
    assert_eq!(cat["campaignId"], json!("spring-fair"));
    assert_eq!(
        cat["utm"],
        json!({"source": "instagram", "medium": "social", "campaign": "spring"})
    );
    assert_eq!(cat["recipient"]["email"], json!("cat@example.com"));

    for inv in [&ann, &ben, &cat] {
        assert!(inv["id"].as_str().is_some_and(|s| !s.is_empty()), "id in {inv}");
        assert_code_shape(inv["code"].as_str().unwrap_or_default(), "SUPPLIER");
        assert_eq!(inv["referrerId"], json!(sue));
        assert_eq!(inv["referrerKind"], json!("SUPPLIER"));
        assert_eq!(inv["refereeKind"], json!("COUPLE"));
        assert_eq!(inv["flow"], json!("SUPPLIER_TO_COUPLE"));
        assert!(inv["risk"].is_object(), "risk in {inv}");
        assert!(inv["risk"]["level"].is_string(), "risk.level in {inv}");
        let created = ts(&inv["createdAt"]);
        assert!((created - before).num_seconds().abs() < 60, "createdAt {created}");
    }
    let ids: HashSet<&str> = [&ann, &ben, &cat]
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "three distinct ids");

    // E-mail: we send it, so it is SCHEDULED for a humane instant.
    for (inv, tz) in [(&ann, London), (&ben, New_York)] {
        assert_eq!(inv["channel"], json!("EMAIL"));
        assert_eq!(inv["status"], json!("SCHEDULED"), "{inv}");
        let at = ts(&inv["scheduledFor"]);
        assert!(
            at >= before - Duration::seconds(1),
            "scheduledFor {at} is not before the request"
        );
        assert_outside_blackouts(at, tz, None);
    }
    assert_eq!(ben["recipient"]["timezone"], json!("America/New_York"));
    // LINK: not sent by us, SENT at once, expiring 30 days after sending.
    assert_eq!(cat["channel"], json!("LINK"));
    assert_eq!(cat["status"], json!("SENT"), "{cat}");
    let expires = ts(&cat["expiresAt"]);
    let sent = ts(&cat["createdAt"]);
    assert!(
        (expires - (sent + Duration::days(30))).num_seconds().abs() < 60,
        "LINK expiresAt {expires} is 30 days after sending ({sent})"
    );

    // The same recipient again (normalised: case and spaces) within 24 h: 409 naming the first.
    let (status, body) = app
        .post(
            &token,
            "/v1/invitations",
            invitation(&sue, "EMAIL", "  Ann.Smith@EXAMPLE.com "),
        )
        .await;
    assert_eq!(status, 409, "duplicate invitation -> {body}");
    assert_error(&body, 6);
    let info = error_info(&body).unwrap_or_else(|| panic!("ErrorInfo detail in {body}"));
    assert_eq!(
        info["metadata"]["existingInvitationId"], ann["id"],
        "existing invitation id in {body}"
    );

    // Also over another channel: the recipient is the person, not the channel.
    let (status, body) = app
        .post(
            &token,
            "/v1/invitations",
            invitation(&sue, "LINK", "ann.smith@example.com"),
        )
        .await;
    assert_eq!(status, 409, "duplicate over LINK -> {body}");
    assert_eq!(
        error_info(&body).map(|i| i["metadata"]["existingInvitationId"].clone()),
        Some(ann["id"].clone())
    );

    // Phones are normalised too.
    let mut sms = invitation(&sue, "SMS", "");
    sms["recipient"] = json!({"phone": "07700 900123"});
    let first = app.invite_ok(&token, sms.clone()).await;
    sms["recipient"] = json!({"phone": "+44 7700 900123"});
    let (status, body) = app.post(&token, "/v1/invitations", sms).await;
    assert_eq!(status, 409, "same phone, other spelling -> {body}");
    assert_eq!(
        error_info(&body).map(|i| i["metadata"]["existingInvitationId"].clone()),
        Some(first["id"].clone())
    );

    // Another referrer may invite the same person.
    let tom = unique("tom");
    let other = app.member(&tom, "SUPPLIER");
    app.invite_ok(&other, invitation(&tom, "EMAIL", "ann.smith@example.com"))
        .await;

    // The invitation reads back as created.
    let (status, got) = app
        .get(
            &token,
            &format!("/v1/invitations/{}", ann["id"].as_str().unwrap_or_default()),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], ann["id"]);
    assert_eq!(got["status"], json!("SCHEDULED"));
    assert_eq!(got["scheduledFor"], ann["scheduledFor"]);
    app.stop().await;
}

/// The next `weekday` at least two days from now, at `hour:minute` London time.
fn next_local(weekday: Weekday, hour: u32, minute: u32) -> chrono::DateTime<Utc> {
    let mut d = Utc::now().with_timezone(&London).date_naive() + Duration::days(2);
    while d.weekday() != weekday {
        d += Duration::days(1);
    }
    London
        .from_local_datetime(&d.and_hms_opt(hour, minute, 0).expect("time"))
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_for_is_the_first_instant_outside_the_blackouts() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");

    // sendAt inside the Saturday blackout -> Saturday 18:00 local.
    let saturday = next_local(Weekday::Sat, 10, 0);
    let mut body = invitation(&sue, "EMAIL", "sat@example.com");
    body["sendAt"] = json!(saturday.to_rfc3339());
    let inv = app.invite_ok(&token, body).await;
    let expected = next_local(Weekday::Sat, 18, 0);
    let expected = if expected < saturday {
        expected + Duration::days(7)
    } else {
        expected
    };
    assert_eq!(
        ts(&inv["scheduledFor"]),
        expected,
        "sendAt {saturday} (Sat 10:00 London) -> {inv}"
    );

    // sendAt in the quiet hours -> 08:00 the next morning.
    let tuesday_night = next_local(Weekday::Tue, 23, 30);
    let mut body = invitation(&sue, "EMAIL", "night@example.com");
    body["sendAt"] = json!(tuesday_night.to_rfc3339());
    let inv = app.invite_ok(&token, body).await;
    let wednesday = next_local(Weekday::Wed, 8, 0);
    let wednesday = if wednesday < tuesday_night {
        wednesday + Duration::days(7)
    } else {
        wednesday
    };
    assert_eq!(
        ts(&inv["scheduledFor"]),
        wednesday,
        "sendAt Tue 23:30 London -> {inv}"
    );

    // sendAt with an offset is the same instant (proto3 JSON takes offsets on input).
    // (A Tuesday about a year ahead: inside SEND_AT_HORIZON, 10:00 or 11:00 in London.)
    let mut tuesday = (Utc::now() + Duration::days(365)).date_naive();
    while tuesday.weekday() != Weekday::Tue {
        tuesday = tuesday.succ_opt().expect("a next day");
    }
    let mut body = invitation(&sue, "EMAIL", "offset@example.com");
    body["sendAt"] = json!(format!("{tuesday}T12:00:00+02:00"));
    let inv = app.invite_ok(&token, body).await;
    assert_eq!(
        ts(&inv["scheduledFor"]),
        Utc.from_utc_datetime(&tuesday.and_hms_opt(10, 0, 0).expect("10:00")),
        "{inv}"
    );

    // A wedding tomorrow: nothing until three full days after it.
    let wedding = Utc::now().with_timezone(&London).date_naive() + Duration::days(1);
    let mut body = invitation(&sue, "EMAIL", "bride@example.com");
    body["weddingDate"] = json!(wedding.format("%Y-%m-%d").to_string());
    let inv = app.invite_ok(&token, body).await;
    let at = ts(&inv["scheduledFor"]);
    assert_outside_blackouts(at, London, Some(wedding));
    assert!(
        at.with_timezone(&London).date_naive() > wedding + Duration::days(3),
        "{inv}"
    );
    assert_eq!(inv["weddingDate"], json!(wedding.format("%Y-%m-%d").to_string()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_pace_sending_they_do_not_refuse() {
    let app = spawn_app().await;
    let reg = unique("regular");
    let token = app.member(&reg, "SUPPLIER");
    let mut created = Vec::new();
    for i in 0..15 {
        created.push(
            app.invite_ok(
                &token,
                invitation(&reg, "EMAIL", &format!("guest{i}@example.com")),
            )
            .await,
        );
    }
    for inv in &created {
        assert_eq!(inv["status"], json!("SCHEDULED"), "{inv}");
        assert_outside_blackouts(ts(&inv["scheduledFor"]), London, None);
    }
    let hours = hour_counts(&created);
    let busiest = hours.values().copied().max().unwrap_or_default();
    assert!(
        busiest <= 10,
        "REGULAR is 10/hour, but {busiest} share a UTC hour: {hours:?}"
    );
    assert!(
        hours.len() >= 2,
        "15 invitations at 10/hour need two hours: {hours:?}"
    );

    // The tier is the admin's to set.
    let (status, body) = app
        .put(
            &token,
            &format!("/v1/referrers/{reg}/tier"),
            json!({"tier": "PREMIUM"}),
        )
        .await;
    assert_eq!(status, 403, "a member sets its own tier -> {body}");
    assert_error(&body, 7);
    let admin = app.fresh_admin();
    let (status, body) = app
        .put(
            &admin,
            &format!("/v1/referrers/{reg}/tier"),
            json!({"tier": "GOLD"}),
        )
        .await;
    assert_eq!(status, 400, "unknown tier -> {body}");
    assert!(violated_fields(&body).contains(&"tier".to_string()), "{body}");

    // PREMIUM paces at 20/hour.
    let prem = unique("premium");
    let (status, body) = app
        .put(
            &admin,
            &format!("/v1/referrers/{prem}/tier"),
            json!({"tier": "PREMIUM"}),
        )
        .await;
    assert_eq!(status, 200, "admin sets PREMIUM -> {body}");
    assert_eq!(body["tier"], json!("PREMIUM"), "{body}");
    let token = app.member(&prem, "SUPPLIER");
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(
            app.invite_ok(&token, invitation(&prem, "EMAIL", &format!("p{i}@example.com")))
                .await,
        );
    }
    let hours = hour_counts(&created);
    let busiest = hours.values().copied().max().unwrap_or_default();
    assert!(
        busiest > 10 && busiest <= 20,
        "PREMIUM is 20/hour: the busiest hour should hold 11..=20, got {busiest}: {hours:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_100_judges_each_item_alone() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let mut items: Vec<Value> = (0..100)
        .map(|i| {
            json!({"refereeKind": "COUPLE", "channel": "EMAIL", "recipient": {"email": format!("b{i}@example.com")}})
        })
        .collect();
    items[3]["recipient"]["email"] = json!("not-an-email");
    items[10].as_object_mut().expect("object").remove("refereeKind");
    items[42]["recipient"]["email"] = json!("B5@Example.com"); // the recipient of item 5
    items[60] = json!({"refereeKind": "COUPLE", "channel": "SMS", "recipient": {"name": "no phone"}});
    let broken: HashMap<usize, Option<&str>> = HashMap::from([
        (3, Some("invitations[3].recipient.email")),
        (10, Some("invitations[10].refereeKind")),
        (42, None),
        (60, Some("invitations[60].recipient.phone")),
    ]);

    let (status, body) = app
        .post(
            &token,
            "/v1/invitations:batchCreate",
            json!({"referrerId": sue, "referrerKind": "SUPPLIER", "invitations": items}),
        )
        .await;
    assert_eq!(status, 200, "batch -> {body}");
    let accepted = body["accepted"].as_i64().unwrap_or_default();
    let rejected = body["rejected"].as_i64().unwrap_or_default();
    assert_eq!(accepted + rejected, 100, "{body:.400}");
    assert_eq!(rejected, 4, "exactly the four broken items are rejected");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 100);
    let by_index: HashMap<usize, &Value> = results
        .iter()
        .map(|r| (r["index"].as_u64().unwrap_or(0) as usize, r))
        .collect();
    assert_eq!(by_index.len(), 100, "every index once");

    let mut ok = Vec::new();
    for i in 0..100 {
        let r = by_index
            .get(&i)
            .unwrap_or_else(|| panic!("no result for index {i}"));
        match broken.get(&i) {
            None => {
                assert!(r["error"].is_null(), "item {i} should be accepted: {r}");
                assert_eq!(r["invitation"]["status"], json!("SCHEDULED"), "item {i}: {r}");
                assert_eq!(r["invitation"]["referrerId"], json!(sue));
                ok.push(r["invitation"].clone());
            }
            Some(field) => {
                assert!(r["invitation"].is_null(), "item {i} should be rejected: {r}");
                let err = &r["error"];
                assert!(
                    err["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "item {i}: {r}"
                );
                match field {
                    Some(field) => {
                        assert_eq!(err["code"].as_i64(), Some(3), "item {i} INVALID_ARGUMENT: {r}");
                        let fields: Vec<&str> = err["fieldViolations"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v["field"].as_str())
                            .collect();
                        assert!(fields.contains(field), "item {i} names {field}: {r}");
                    }
                    None => {
                        assert_eq!(err["code"].as_i64(), Some(6), "item {i} ALREADY_EXISTS: {r}");
                        assert_eq!(
                            err["existingInvitationId"], by_index[&5]["invitation"]["id"],
                            "item {i} names the invitation of item 5: {r}"
                        );
                    }
                }
            }
        }
    }
    let ids: HashSet<&str> = ok.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids.len(), 96, "96 distinct invitations");
    // Each item paced as if created alone, within the free (REGULAR) tier's quotas.
    let (per_hour, per_day) = (
        FREE_TIER_INVITATIONS_PER_HOUR as usize,
        FREE_TIER_INVITATIONS_PER_DAY as usize,
    );
    let busiest_hour = hour_counts(&ok).values().copied().max().unwrap_or_default();
    assert!(
        busiest_hour <= per_hour,
        "{busiest_hour} invitations share a UTC hour"
    );
    let days = day_counts(&ok);
    assert!(
        days.values().all(|n| *n <= per_day),
        "REGULAR is {per_day}/day: {days:?}"
    );

    // More than 100 items: the whole request is refused, nothing is created.
    let other = unique("big");
    let token = app.member(&other, "SUPPLIER");
    let items: Vec<Value> = (0..101)
        .map(|i| json!({"refereeKind": "COUPLE", "channel": "LINK", "recipient": {"email": format!("x{i}@example.com")}}))
        .collect();
    let (status, body) = app
        .post(
            &token,
            "/v1/invitations:batchCreate",
            json!({"referrerId": other, "referrerKind": "SUPPLIER", "invitations": items}),
        )
        .await;
    assert_eq!(status, 400, "101 items -> {body:.400}");
    assert_error(&body, 3);
    assert!(
        violated_fields(&body).iter().any(|f| f == "invitations"),
        "names invitations: {body:.400}"
    );
    let (status, list) = app
        .get(&token, &format!("/v1/invitations?referrerId={other}"))
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["invitations"].as_array().is_none_or(|a| a.is_empty()),
        "nothing created by a refused batch: {list:.400}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_only_before_sent_and_only_your_own() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let email = app
        .invite_ok(&token, invitation(&sue, "EMAIL", "c1@example.com"))
        .await;
    let link = app
        .invite_ok(&token, invitation(&sue, "LINK", "c2@example.com"))
        .await;
    let email_id = email["id"].as_str().unwrap_or_default();
    let link_id = link["id"].as_str().unwrap_or_default();

    // Someone else can neither read nor cancel it.
    let mallory = app.member(&unique("mallory"), "SUPPLIER");
    let (status, body) = app.get(&mallory, &format!("/v1/invitations/{email_id}")).await;
    assert!(
        status == 404 || status == 403,
        "another member's invitation -> {status} {body}"
    );
    let (status, body) = app
        .post(&mallory, &format!("/v1/invitations/{email_id}:cancel"), json!({}))
        .await;
    assert!(
        status == 404 || status == 403,
        "cancelling another member's invitation -> {status} {body}"
    );
    let (_, got) = app.get(&token, &format!("/v1/invitations/{email_id}")).await;
    assert_eq!(
        got["status"],
        json!("SCHEDULED"),
        "still scheduled after a foreign cancel: {got}"
    );

    // The owner cancels a scheduled one.
    let (status, body) = app
        .post(&token, &format!("/v1/invitations/{email_id}:cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "cancel -> {body}");
    assert_eq!(body["status"], json!("CANCELLED"));
    let (_, got) = app.get(&token, &format!("/v1/invitations/{email_id}")).await;
    assert_eq!(got["status"], json!("CANCELLED"), "{got}");

    // A sent one cannot be cancelled.
    let (status, body) = app
        .post(&token, &format!("/v1/invitations/{link_id}:cancel"), json!({}))
        .await;
    assert_eq!(status, 400, "cancel after SENT -> {body}");
    assert_error(&body, 9);
    let (_, got) = app.get(&token, &format!("/v1/invitations/{link_id}")).await;
    assert_eq!(got["status"], json!("SENT"), "{got}");

    // Unknown ids are 404.
    let (status, body) = app
        .get(&token, "/v1/invitations/0190b3c4-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_act_only_as_themselves() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let other = unique("other");
    app.invite_ok(
        &app.member(&other, "SUPPLIER"),
        invitation(&other, "LINK", "o@example.com"),
    )
    .await;

    let (status, body) = app
        .post(
            &token,
            "/v1/invitations",
            invitation(&other, "EMAIL", "x@example.com"),
        )
        .await;
    assert_eq!(status, 403, "create as someone else -> {body}");
    assert_error(&body, 7);
    let (status, body) = app
        .post(
            &token,
            "/v1/invitations:batchCreate",
            json!({"referrerId": other, "referrerKind": "SUPPLIER", "invitations": [
                {"refereeKind": "COUPLE", "channel": "LINK", "recipient": {"email": "y@example.com"}}
            ]}),
        )
        .await;
    assert_eq!(status, 403, "batch as someone else -> {body}");
    let (status, body) = app
        .get(&token, &format!("/v1/invitations?referrerId={other}"))
        .await;
    assert_eq!(status, 403, "list someone else's invitations -> {body}");

    // Admins act for anyone.
    let admin = app.fresh_admin();
    let (status, body) = app
        .get(&admin, &format!("/v1/invitations?referrerId={other}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invitations"].as_array().map(Vec::len), Some(1), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_referrer_with_more_than_the_queue_limit_unsent_gets_429() {
    // MAX_QUEUED_PER_REFERRER lowered from 1,000 to 5 for the test.
    let app = spawn_app_with_args(vec![], vec!["--max-queued".into(), "5".into()]).await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    for i in 0..6 {
        app.invite_ok(&token, invitation(&sue, "EMAIL", &format!("q{i}@example.com")))
            .await;
    }
    // Six queued is more than five: the next one is refused, with a time to come back.
    let r = app
        .send(
            reqwest::Method::POST,
            Some(&token),
            "/v1/invitations",
            Some(&invitation(&sue, "EMAIL", "q6@example.com")),
            &[],
        )
        .await;
    assert_eq!(r.status, 429, "more than the queue limit unsent -> {}", r.body);
    assert_error(&r.body, 8);
    assert!(
        r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()),
        "Retry-After: {:?}",
        r.headers
    );
    // Links are not queued by us, so they are still taken.
    app.invite_ok(&token, invitation(&sue, "LINK", "q7@example.com"))
        .await;
    // Cancelling one frees its place in the queue.
    let (_, list) = app
        .get(
            &token,
            &format!("/v1/invitations?referrerId={sue}&status=SCHEDULED"),
        )
        .await;
    let id = list["invitations"][0]["id"]
        .as_str()
        .expect("a scheduled invitation")
        .to_string();
    let (status, body) = app
        .post(&token, &format!("/v1/invitations/{id}:cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.invite_ok(&token, invitation(&sue, "EMAIL", "q8@example.com"))
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_and_social_are_sent_at_creation_and_carry_the_code() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    for channel in ["QR", "SOCIAL"] {
        let mut body = invitation(&sue, channel, "");
        body["recipient"] = json!({"name": "Someone"});
        let inv = app.invite_ok(&token, body).await;
        assert_eq!(inv["status"], json!("SENT"), "{inv}");
        assert_eq!(inv["channel"], json!(channel));
        let code = inv["code"].as_str().unwrap_or_default();
        assert_code_shape(code, "SUPPLIER");
        assert!(
            inv["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("/r/{code}"))),
            "{inv}"
        );
        assert!(inv["expiresAt"].is_string(), "{inv}");
    }
    app.stop().await;
}
