//! incentive-svc wired into the mesh, replayed as the incentive issue's walk-through through
//! the gateway's JSON: an admin's program (bad tiers refused) and a capped double-reward
//! campaign, five paying couples, milestones and the BRONZE badge, the hold period passing
//! for real, two concurrent payouts paying once, a later fraud rejection clawing back, and
//! a simulation that changes nothing.

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use referral_proto::{
    events::v1::{
        Event, SubscribeRequest, event::Payload, event_log_client::EventLogClient, subscribe_response::Item,
    },
    incentive::v1::{Badge, EntryKind},
};
use referral_tests::{TestApp, authed, error_info, eventually, int, spawn_app_with, unique, violated_fields};
use reqwest::Method;
use serde_json::{Value, json};

fn gbp(minor: i64) -> Value {
    json!({"amountMinor": minor.to_string(), "currency": "GBP"})
}

/// A supplier program whose hold is `hold` (a duration such as "10s"), so the test can
/// watch PENDING turn ELIGIBLE.
fn trial_program(hold: &str) -> Value {
    json!({
        "name": "Supplier trial",
        "referrerKind": "SUPPLIER",
        "currency": "GBP",
        "milestones": [
            {"at": 1, "reward": gbp(2_500)},
            {"at": 5, "reward": gbp(10_000), "badge": "BRONZE"},
            {"at": 10, "reward": gbp(25_000), "badge": "SILVER"}
        ],
        "conversionReward": {"percent": 15},
        "holdPeriod": hold,
        "expiryDays": 365,
        "active": true
    })
}

async fn rewards(app: &TestApp, token: &str, referrer: &str) -> Value {
    let (status, body) = app.get(token, &format!("/v1/referrers/{referrer}/rewards")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn entries_of<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["entries"]
        .as_array()
        .map(|es| es.iter().filter(|e| e["kind"] == kind).collect())
        .unwrap_or_default()
}

fn states(r: &Value) -> Vec<String> {
    r["entries"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| e["state"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A couple signs up through the supplier's code from its own address and pays 200.00.
async fn couple_pays(app: &TestApp, code: &Value, email: &str, ip: &str) -> (String, Value) {
    let user = unique("couple");
    let reply = app
        .send(
            Method::POST,
            Some(&app.member(&user, "COUPLE")),
            "/v1/signups",
            Some(&json!({"userId": user, "userKind": "COUPLE", "email": email, "code": code})),
            &[("x-forwarded-for", ip)],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["attributed"], true, "{}", reply.body);
    let (status, conv) = app
        .post(
            &app.billing_key().await,
            "/v1/conversions",
            json!({"userId": user, "value": gbp(20_000), "plan": "PROFESSIONAL", "annual": false}),
        )
        .await;
    assert_eq!(status, 200, "{conv}");
    assert_eq!(conv["attributed"], true, "{conv}");
    (user, reply.body)
}

/// The open case of `subject_type` about `referee`, once fraud-svc has opened it.
async fn open_case(app: &TestApp, referrer: &str, subject_type: &str, referee: &str) -> String {
    let admin = app.admin();
    eventually(Duration::from_secs(20), || async {
        let (_, cases) = app
            .get(
                &admin,
                &format!("/v1/fraud/cases?state=OPEN&referrerId={referrer}&pageSize=100"),
            )
            .await;
        cases["cases"].as_array()?.iter().find_map(|c| {
            (c["subjectType"] == subject_type && c["refereeId"] == referee)
                .then(|| c["id"].as_str().unwrap_or_default().to_string())
        })
    })
    .await
    .unwrap_or_else(|| panic!("a {subject_type} case opens for {referee}"))
}

/// incentive-svc's own event log (what analytics-svc reads), until `done` says enough.
async fn incentive_log(app: &TestApp, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut client = EventLogClient::connect(TestApp::grpc_uri(app.mesh.incentive))
        .await
        .expect("connect to incentive-svc's log");
    let req = authed(
        SubscribeRequest {
            after_offset: 0,
            consumer: "integration-test".into(),
        },
        &app.service_token(),
    );
    let mut stream = client.subscribe(req).await.expect("Subscribe").into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while !done(&events) && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(resp))) = tokio::time::timeout(Duration::from_millis(500), stream.message()).await
            && let Some(Item::Event(e)) = resp.item
        {
            events.push(e);
        }
    }
    events
}

async fn resolve(app: &TestApp, case_id: &str, decision: &str) {
    let (status, body) = app
        .post(
            &app.admin(),
            &format!("/v1/fraud/cases/{case_id}:resolve"),
            json!({"decision": decision, "note": "reviewed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_supplier_brings_five_paying_couples_through_a_capped_campaign_payouts_and_a_clawback() {
    // The couples' signups come through a proxy that tells their real addresses.
    let app = spawn_app_with(vec!["--trusted-proxies".into(), "127.0.0.1/32".into()]).await;
    let admin = app.admin();

    // The defaults of docs/api.md exist on first start.
    let (status, defaults) = app.get(&admin, "/v1/reward-programs").await;
    assert_eq!(status, 200, "{defaults}");
    let ids: Vec<&str> = defaults["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["couple-default", "supplier-default"]);
    let (_, supplier_default) = app.get(&admin, "/v1/reward-programs/supplier-default").await;
    assert_eq!(supplier_default["conversionReward"]["percent"], 15.0);
    assert_eq!(supplier_default["milestones"][1]["badge"], "BRONZE");
    assert_eq!(supplier_default["holdDays"], 14);

    // An admin defines a program; tiers out of order are refused with a field error.
    let mut bad = trial_program("10s");
    bad["milestones"] = json!([{"at": 5, "reward": gbp(10_000)}, {"at": 1, "reward": gbp(2_500)}]);
    bad["conversionReward"]["percent"] = json!(150);
    let (status, refused) = app.put(&admin, "/v1/reward-programs/supplier-trial", bad).await;
    assert_eq!(status, 400, "{refused}");
    let fields = violated_fields(&refused);
    assert!(fields.contains(&"milestones[1].at".to_string()), "{refused}");
    assert!(
        fields.contains(&"conversionReward.percent".to_string()),
        "{refused}"
    );
    let (status, _) = app
        .put(
            &app.member("someone", "SUPPLIER"),
            "/v1/reward-programs/supplier-trial",
            trial_program("10s"),
        )
        .await;
    assert_eq!(status, 403, "members do not write programs");
    let (status, program) = app
        .put(&admin, "/v1/reward-programs/supplier-trial", trial_program("10s"))
        .await;
    assert_eq!(status, 200, "{program}");
    assert_eq!(program["id"], "supplier-trial");

    // A double-reward weekend with a small budget cap (50.00 of bonus).
    let now = Utc::now();
    let (status, campaign) = app
        .post(
            &admin,
            "/v1/campaigns",
            json!({"name": "Double weekend", "startsAt": (now - Span::hours(1)).to_rfc3339(),
                   "endsAt": (now + Span::days(2)).to_rfc3339(), "multiplier": 2,
                   "referrerKind": "SUPPLIER", "budgetCap": gbp(5_000)}),
        )
        .await;
    assert_eq!(status, 200, "{campaign}");
    assert_eq!(campaign["active"], true, "{campaign}");

    // A supplier brings in five couples who pay; the fifth looks like the first from a
    // throwaway address, so fraud-svc sends its signup and conversion to review.
    let sup = unique("photo");
    let stoken = app.member(&sup, "SUPPLIER");
    let code = app
        .code_ok(
            &stoken,
            json!({"referrerId": sup, "referrerKind": "SUPPLIER", "vendorType": "PHOTOGRAPHER"}),
        )
        .await["code"]
        .clone();
    let couples = [
        ("olivia.bennett@example.com", "198.51.100.11", 0),
        ("james.okafor@example.org", "198.51.100.23", 350),
        ("sofia.rossi@example.net", "198.51.100.37", 40),
        ("liam.chen@example.com", "198.51.100.49", 900),
        ("olivia.bennett@mailinator.com", "198.51.100.61", 120),
    ];
    let mut users = Vec::new();
    for (email, ip, pause) in couples {
        // Irregular arrivals, as real people sign up.
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (user, signup) = couple_pays(&app, &code, email, ip).await;
        let expected = if email.contains("mailinator") {
            "REVIEW"
        } else {
            "APPROVE"
        };
        assert_eq!(signup["risk"]["action"], expected, "{email}: {signup}");
        users.push(user);
    }
    let lookalike = users[4].clone();

    // Five conversion rewards at 15%, doubled until the cap is spent; milestones 1 and 5
    // with BRONZE; all PENDING but the one under review, which is HELD.
    let booked = eventually(Duration::from_secs(20), || async {
        let r = rewards(&app, &stoken, &sup).await;
        (r["entries"].as_array().map_or(0, Vec::len) == 7).then_some(r)
    })
    .await
    .expect("seven entries are booked");
    let conv = entries_of(&booked, "CONVERSION_REWARD");
    assert_eq!(conv.len(), 5, "{booked}");
    let amounts: Vec<(i64, i64)> = conv
        .iter()
        .map(|e| {
            (
                int(&e["amount"]["amountMinor"]),
                int(&e["campaignBonus"]["amountMinor"]),
            )
        })
        .collect();
    assert_eq!(
        amounts,
        [(6_000, 3_000), (3_000, 0), (3_000, 0), (3_000, 0), (3_000, 0)],
        "the first doubled, the cap then spent by the milestone: {booked}"
    );
    let milestones: Vec<(i64, i64, Value, i64)> = entries_of(&booked, "MILESTONE_REWARD")
        .iter()
        .map(|e| {
            (
                e["milestone"].as_i64().unwrap_or(0),
                int(&e["amount"]["amountMinor"]),
                e["badge"].clone(),
                int(&e["campaignBonus"]["amountMinor"]),
            )
        })
        .collect();
    assert_eq!(
        milestones,
        [(1, 4_500, Value::Null, 2_000), (5, 10_000, json!("BRONZE"), 0)],
        "{booked}"
    );
    let held: Vec<&Value> = conv.iter().filter(|e| e["state"] == "HELD").copied().collect();
    assert_eq!(held.len(), 1, "{booked}");
    assert_eq!(held[0]["refereeId"], lookalike.as_str());
    assert_eq!(
        states(&booked).iter().filter(|s| *s == "PENDING").count(),
        6,
        "{booked}"
    );
    assert_eq!(booked["tier"], "BRONZE", "{booked}");
    assert_eq!(booked["badges"], json!(["BRONZE"]));
    assert_eq!(booked["successfulReferrals"], 5);
    assert_eq!(booked["nextMilestone"]["at"], 10, "{booked}");
    assert_eq!(
        int(&booked["balance"]["pending"]["amountMinor"]),
        32_500,
        "{booked}"
    );
    assert_eq!(int(&booked["balance"]["eligible"]["amountMinor"]), 0);
    let (_, active) = app.get(&admin, "/v1/campaigns?active=true").await;
    let spent = active["campaigns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == campaign["id"]))
        .map(|c| int(&c["spent"]["amountMinor"]));
    assert_eq!(spent, Some(5_000), "never beyond the cap: {active}");

    // A reviewer clears the lookalike's signup: its held reward is released.
    let signup_case = open_case(&app, &sup, "SIGNUP", &lookalike).await;
    let conversion_case = open_case(&app, &sup, "CONVERSION", &lookalike).await;
    resolve(&app, &signup_case, "APPROVE").await;

    // After the hold period every reward is ELIGIBLE (the scheduler, for real).
    let eligible = eventually(Duration::from_secs(30), || async {
        let r = rewards(&app, &stoken, &sup).await;
        states(&r).iter().all(|s| s == "ELIGIBLE").then_some(r)
    })
    .await
    .expect("the hold period passes");
    assert_eq!(
        int(&eligible["balance"]["eligible"]["amountMinor"]),
        32_500,
        "{eligible}"
    );
    assert_eq!(int(&eligible["balance"]["pending"]["amountMinor"]), 0);

    // Two concurrent payout calls pay exactly once.
    let body = json!({"referrerId": sup});
    let (a, b) = tokio::join!(
        app.post(&stoken, "/v1/payouts", body.clone()),
        app.post(&stoken, "/v1/payouts", body.clone())
    );
    let mut answers = [a, b];
    answers.sort_by_key(|(status, _)| *status);
    assert_eq!(answers[0].0, 200, "{answers:?}");
    assert_eq!(answers[1].0, 400, "the second finds nothing to pay: {answers:?}");
    assert_eq!(
        error_info(&answers[1].1).expect("reason")["reason"],
        "NOTHING_TO_PAY"
    );
    let payout = &answers[0].1;
    assert_eq!(payout["status"], "PAID", "{payout}");
    assert_eq!(int(&payout["amount"]["amountMinor"]), 32_500, "{payout}");
    assert_eq!(payout["entries"].as_array().map(Vec::len), Some(7));
    let payout_id = payout["id"].as_str().expect("id");
    let (status, fetched) = app.get(&stoken, &format!("/v1/payouts/{payout_id}")).await;
    assert_eq!((status, &fetched), (200, payout));
    let paid = rewards(&app, &stoken, &sup).await;
    assert_eq!(int(&paid["balance"]["paid"]["amountMinor"]), 32_500, "{paid}");
    assert_eq!(int(&paid["balance"]["eligible"]["amountMinor"]), 0, "{paid}");

    // Later the reviewer rejects the lookalike's conversion: a clawback is booked.
    resolve(&app, &conversion_case, "REJECT").await;
    let clawed = eventually(Duration::from_secs(20), || async {
        let r = rewards(&app, &stoken, &sup).await;
        (!entries_of(&r, "CLAWBACK").is_empty()).then_some(r)
    })
    .await
    .expect("a clawback is booked");
    let claw = entries_of(&clawed, "CLAWBACK")[0];
    assert_eq!(int(&claw["amount"]["amountMinor"]), -3_000, "{claw}");
    assert_eq!(claw["refereeId"], lookalike.as_str());
    assert!(
        claw["reason"].as_str().unwrap_or("").contains(payout_id),
        "{claw}"
    );
    assert_eq!(
        int(&clawed["balance"]["paid"]["amountMinor"]),
        32_500,
        "payments stand"
    );
    assert_eq!(
        int(&clawed["balance"]["eligible"]["amountMinor"]),
        -3_000,
        "owed back"
    );
    assert_eq!(clawed["successfulReferrals"], 4);
    assert_eq!(
        entries_of(&clawed, "CONVERSION_REWARD")
            .iter()
            .filter(|e| e["state"] == "PAID")
            .count(),
        5
    );

    // A richer program simulated over the last 90 days: what it would have paid, nothing
    // written. The rejected conversion is left out.
    let mut rich = trial_program("14s");
    rich["conversionReward"]["percent"] = json!(20);
    rich["milestones"] =
        json!([{"at": 1, "reward": gbp(5_000)}, {"at": 3, "reward": gbp(15_000), "badge": "BRONZE"}]);
    let (status, sim) = app
        .post(
            &admin,
            "/v1/reward-programs/supplier-rich:simulate",
            json!({"program": rich}),
        )
        .await;
    assert_eq!(status, 200, "{sim}");
    assert_eq!(
        (sim["conversions"].as_i64(), sim["skipped"].as_i64()),
        (Some(4), Some(1)),
        "{sim}"
    );
    assert_eq!(
        int(&sim["total"]["amountMinor"]),
        4 * 4_000 + 5_000 + 15_000,
        "{sim}"
    );
    assert_eq!(sim["referrers"][0]["referrerId"], sup.as_str(), "{sim}");
    assert!(
        Utc::now() - referral_tests::ts(&sim["from"]) >= Span::days(90),
        "the last 90 days by default: {sim}"
    );
    let (status, _) = app.get(&admin, "/v1/reward-programs/supplier-rich").await;
    assert_eq!(status, 404, "a simulation stores no program");
    let (status, _) = app
        .post(&stoken, "/v1/reward-programs/supplier-trial:simulate", json!({}))
        .await;
    assert_eq!(status, 403, "simulations are for admins");
    let after = rewards(&app, &stoken, &sup).await;
    assert_eq!(after, clawed, "the simulation changed no balance");

    // Every booking was an event carrying who, which kind, how much, badge and tier.
    let events = incentive_log(&app, |es| {
        es.iter()
            .any(|e| matches!(&e.payload, Some(Payload::RewardVoided(_))))
    })
    .await;
    let count = |f: fn(&Payload) -> bool| {
        events
            .iter()
            .filter(|e| e.payload.as_ref().is_some_and(f))
            .count()
    };
    assert_eq!(count(|p| matches!(p, Payload::RewardGranted(_))), 7);
    assert_eq!(count(|p| matches!(p, Payload::RewardEligible(_))), 7);
    assert_eq!(count(|p| matches!(p, Payload::PayoutPaid(_))), 1);
    let bronze = events
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::RewardGranted(g)) => g.entry.as_ref().filter(|x| x.milestone == 5),
            _ => None,
        })
        .expect("the 5-referral milestone was granted");
    assert_eq!(bronze.referrer_id, sup);
    assert_eq!(bronze.kind, EntryKind::MilestoneReward as i32);
    assert_eq!(
        bronze.referrer_kind,
        referral_proto::common::v1::PartyKind::Supplier as i32
    );
    assert_eq!(
        (bronze.badge, bronze.tier),
        (Some(Badge::Bronze as i32), Some(Badge::Bronze as i32))
    );
    assert_eq!(bronze.amount.as_ref().map(|m| m.amount_minor), Some(10_000));
    let voided = events
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::RewardVoided(v)) => v.entry.clone(),
            _ => None,
        })
        .expect("the clawback");
    assert_eq!(
        (voided.kind, voided.amount.map(|m| m.amount_minor)),
        (EntryKind::Clawback as i32, Some(-3_000))
    );
    app.stop().await;
}

#[tokio::test]
async fn payouts_replay_by_idempotency_key_and_members_see_only_their_own_rewards() {
    let app = spawn_app_with(vec!["--trusted-proxies".into(), "127.0.0.1/32".into()]).await;
    let admin = app.admin();
    let (status, _) = app
        .put(&admin, "/v1/reward-programs/supplier-trial", trial_program("1s"))
        .await;
    assert_eq!(status, 200);
    let sup = unique("venue");
    let stoken = app.member(&sup, "SUPPLIER");
    let code = app
        .code_ok(&stoken, json!({"referrerId": sup, "referrerKind": "SUPPLIER"}))
        .await["code"]
        .clone();
    couple_pays(&app, &code, "grace.hill@example.com", "198.51.100.71").await;

    // Another member reads and pays out nothing of it.
    let other = unique("florist");
    let otoken = app.member(&other, "SUPPLIER");
    let (status, body) = app.get(&otoken, &format!("/v1/referrers/{sup}/rewards")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = app.post(&otoken, "/v1/payouts", json!({"referrerId": sup})).await;
    assert_eq!(status, 403, "{body}");
    let fresh = rewards(&app, &otoken, &other).await;
    assert_eq!(
        int(&fresh["balance"]["paid"]["amountMinor"]),
        0,
        "their own is empty: {fresh}"
    );
    assert_eq!(fresh["nextMilestone"]["at"], 1, "{fresh}");

    eventually(Duration::from_secs(20), || async {
        let r = rewards(&app, &stoken, &sup).await;
        (int(&r["balance"]["eligible"]["amountMinor"]) == 3_000 + 2_500).then_some(())
    })
    .await
    .expect("eligible after the one-second hold");

    let key = [("idempotency-key", "payout-2026-11-21")];
    let body = json!({"referrerId": sup});
    let first = app
        .send(Method::POST, Some(&stoken), "/v1/payouts", Some(&body), &key)
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let replay = app
        .send(Method::POST, Some(&stoken), "/v1/payouts", Some(&body), &key)
        .await;
    assert_eq!(
        (replay.status, &replay.body),
        (200, &first.body),
        "the first answer again"
    );
    let reused = app
        .send(
            Method::POST,
            Some(&stoken),
            "/v1/payouts",
            Some(&json!({"referrerId": other})),
            &key,
        )
        .await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    let (status, again) = app.post(&stoken, "/v1/payouts", body).await;
    assert_eq!(status, 400, "paid once: {again}");
    let r = rewards(&app, &stoken, &sup).await;
    assert_eq!(int(&r["balance"]["paid"]["amountMinor"]), 5_500, "{r}");

    // A payout is the referrer's (and admins'); to anyone else it does not exist.
    let id = first.body["id"].as_str().expect("id");
    let (status, _) = app.get(&otoken, &format!("/v1/payouts/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get(&admin, &format!("/v1/payouts/{id}")).await;
    assert_eq!(status, 200);

    // Stopped and started again on the same data: the logs are read on from the stored
    // offsets and nothing is booked twice; the admin's program is kept.
    let before = rewards(&app, &stoken, &sup).await;
    let app = app.restart().await;
    let stoken = app.member(&sup, "SUPPLIER");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rewards(&app, &stoken, &sup).await, before, "nothing booked twice");
    let (_, trial) = app.get(&app.admin(), "/v1/reward-programs/supplier-trial").await;
    assert_eq!(trial["holdPeriod"], "1s", "{trial}");
    let admin = app.admin();

    // Bad input names its fields.
    let (status, bad) = app.post(&stoken, "/v1/payouts", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(violated_fields(&bad), ["referrerId"]);
    let now = Utc::now();
    let (status, bad) = app
        .post(
            &admin,
            "/v1/campaigns",
            json!({"name": "Backwards", "startsAt": now.to_rfc3339(), "endsAt": (now - Span::hours(1)).to_rfc3339(),
                   "multiplier": 0.5, "budgetCap": {"amountMinor": "-1", "currency": "GBX"}}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(
        fields,
        [
            "budgetCap.amountMinor",
            "budgetCap.currency",
            "endsAt",
            "multiplier"
        ]
    );
    app.stop().await;
}
