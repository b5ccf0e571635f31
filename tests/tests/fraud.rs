//! fraud-svc wired into the mesh, replayed as the fraud issue's walk-through: explainable
//! scores on signups and conversions, hard rules on invitations, review cases, and nothing
//! stuck or lost while fraud-svc is away.

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use referral_common::auth::Role;
use referral_proto::events::v1::{
    SubscribeRequest, event::Payload, event_log_client::EventLogClient, subscribe_response::Item,
};
use referral_tests::{
    TestApp, authed, error_info, eventually, held_while_fraud_away, spawn_app_with, spawn_app_with_args,
    unique,
};
use serde_json::{Value, json};

fn signal<'a>(risk: &'a Value, name: &str) -> &'a Value {
    risk["signals"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["name"] == name))
        .unwrap_or(&Value::Null)
}

fn triggered(risk: &Value) -> Vec<String> {
    risk["signals"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|x| x["triggered"] == true)
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_supplier_importing_past_clients_is_not_treated_as_a_fraudster() {
    let app = spawn_app_with(vec![]).await;
    let sup = unique("photo");
    let token = app.member(&sup, "SUPPLIER");
    let mut accepted = 0;
    for batch in 0..2 {
        let items: Vec<Value> = (0..75)
            .map(|i| {
                json!({"refereeKind": "COUPLE", "channel": "EMAIL",
                       "recipient": {"email": format!("client{batch}x{i}.{}@example.com", ["smith", "jones", "patel"][i % 3]),
                                     "name": format!("Client {i}")}})
            })
            .collect();
        let (status, out) = app
            .post(
                &token,
                "/v1/invitations:batchCreate",
                json!({"referrerId": sup, "referrerKind": "SUPPLIER", "invitations": items}),
            )
            .await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["rejected"], 0, "{out}");
        for r in out["results"].as_array().expect("results") {
            let inv = &r["invitation"];
            assert_eq!(inv["status"], "SCHEDULED", "none blocked, none in review: {r}");
            assert_eq!(inv["risk"]["action"], "APPROVE", "{r}");
            accepted += 1;
        }
    }
    assert_eq!(accepted, 150);
    app.stop().await;
}

#[tokio::test]
async fn a_referrer_link_bringing_a_burst_of_lookalike_signups_is_scored_and_explained() {
    // The signups come through a proxy that tells their real address.
    let app = spawn_app_with(vec!["--trusted-proxies".into(), "127.0.0.1/32".into()]).await;
    let sup = unique("venue");
    let code = app
        .code_ok(
            &app.member(&sup, "SUPPLIER"),
            json!({"referrerId": sup, "referrerKind": "SUPPLIER"}),
        )
        .await["code"]
        .as_str()
        .expect("code")
        .to_string();
    let service = app.mesh.token("platform", Role::Admin, None);
    let start = Utc::now() - Span::minutes(30);
    let mut actions = Vec::new();
    for i in 1..=12 {
        let user = unique(&format!("anna{i}"));
        let r = app
            .http
            .post(app.url("/v1/signups"))
            .bearer_auth(&service)
            .header("x-forwarded-for", "203.0.113.7")
            .json(&json!({"userId": user, "userKind": "COUPLE", "email": format!("anna.smith{i}@example.com"),
                          "name": "Anna Smith", "code": code, "occurredAt": (start + Span::minutes(i)).to_rfc3339()}))
            .send()
            .await
            .expect("signup");
        let (status, a) = TestApp::read(r).await;
        assert_eq!(status, 200, "{a}");
        let risk = &a["risk"];
        assert!(
            risk["signals"].as_array().is_some_and(|s| s.len() >= 5),
            "every signal listed: {a}"
        );
        for s in risk["signals"].as_array().expect("signals") {
            for field in ["name", "value", "threshold", "weight", "triggered", "detail"] {
                assert!(s.get(field).is_some(), "signal lacks {field}: {s}");
            }
        }
        let action = risk["action"].as_str().unwrap_or_default().to_string();
        match action.as_str() {
            "APPROVE" | "REVIEW" => assert_eq!(a["attributed"], true, "{a}"),
            "REJECT" => {
                assert_eq!(a["attributed"], false, "{a}");
                assert_eq!(a["reason"], "FRAUD_REJECTED", "{a}");
            }
            other => panic!("unexpected action {other}: {a}"),
        }
        if i >= 5 {
            assert!(
                triggered(risk).contains(&"ip_cluster".to_string()),
                "signup {i}: {a}"
            );
        }
        if i >= 2 {
            assert_eq!(signal(risk, "similarity")["triggered"], true, "signup {i}: {a}");
        }
        actions.push(action);
    }
    assert_eq!(actions[0], "APPROVE", "{actions:?}");
    assert!(
        actions.iter().any(|a| a == "REVIEW"),
        "middle ones go to review: {actions:?}"
    );
    assert_eq!(actions[11], "REJECT", "{actions:?}");
    // Once reviewing starts it never relaxes, and rejection comes last.
    let rank = |a: &String| match a.as_str() {
        "APPROVE" => 0,
        "REVIEW" => 1,
        _ => 2,
    };
    assert!(
        actions.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{actions:?}"
    );
    // Every REVIEW or REJECT opened a case the admin can list.
    let (status, cases) = app
        .get(&app.admin(), "/v1/fraud/cases?state=OPEN&pageSize=100")
        .await;
    assert_eq!(status, 200, "{cases}");
    let for_sup = cases["cases"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["referrerId"] == sup.as_str()).count())
        .unwrap_or(0);
    assert_eq!(
        for_sup,
        actions.iter().filter(|a| *a != "APPROVE").count(),
        "{cases}"
    );
    app.stop().await;
}

#[tokio::test]
async fn self_referral_disposable_addresses_cases_and_resolution() {
    let app = spawn_app_with(vec![]).await;
    let couple = unique("couple");
    let ctoken = app.member(&couple, "COUPLE");
    let code = app
        .code_ok(&ctoken, json!({"referrerId": couple, "referrerKind": "COUPLE"}))
        .await["code"]
        .clone();
    let (status, a) = app
        .post(
            &ctoken,
            "/v1/signups",
            json!({"userId": couple, "userKind": "COUPLE", "code": code}),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["attributed"], false, "{a}");
    assert_eq!(a["reason"], "SELF_REFERRAL", "{a}");

    let sup = unique("florist");
    let stoken = app.member(&sup, "SUPPLIER");
    let (status, refused) = app
        .post(
            &stoken,
            "/v1/invitations",
            referral_tests::invitation(&sup, "EMAIL", "someone@mailinator.com"),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("disposable_recipient"),
        "{refused}"
    );
    let info = error_info(&refused).expect("ErrorInfo");
    assert_eq!(info["metadata"]["rules"], "disposable_recipient", "{refused}");
    // The refused invitation is kept, BLOCKED, with the rule that fired.
    let blocked_id = info["metadata"]["invitationId"].as_str().expect("id").to_string();
    let (_, blocked) = app.get(&stoken, &format!("/v1/invitations/{blocked_id}")).await;
    assert_eq!(blocked["status"], "BLOCKED", "{blocked}");

    // Members never read cases.
    let (status, _) = app.get(&ctoken, "/v1/fraud/cases?state=OPEN").await;
    assert_eq!(status, 403);
    let admin = app.admin();
    let open = eventually(Duration::from_secs(5), || async {
        let (_, cases) = app.get(&admin, "/v1/fraud/cases?state=OPEN&pageSize=100").await;
        let mine: Vec<Value> = cases["cases"]
            .as_array()?
            .iter()
            .filter(|c| c["referrerId"] == couple.as_str() && c["subjectType"] == "SIGNUP")
            .cloned()
            .collect();
        (!mine.is_empty()).then_some(mine)
    })
    .await
    .expect("a case is open for the self-referral");
    let case_id = open[0]["id"].as_str().expect("case id").to_string();
    let (status, one) = app.get(&admin, &format!("/v1/fraud/cases/{case_id}")).await;
    assert_eq!(status, 200, "{one}");
    assert!(
        one["assessment"]["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["name"] == "self_referral")),
        "{one}"
    );
    let (status, resolved) = app
        .post(
            &admin,
            &format!("/v1/fraud/cases/{case_id}:resolve"),
            json!({"decision": "APPROVE", "note": "their own test account"}),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "RESOLVED", "{resolved}");
    assert_eq!(resolved["resolution"]["decision"], "APPROVE", "{resolved}");
    let (status, again) = app
        .post(
            &admin,
            &format!("/v1/fraud/cases/{case_id}:resolve"),
            json!({"decision": "REJECT"}),
        )
        .await;
    assert_eq!(status, 400, "resolving twice is refused: {again}");
    app.stop().await;
}

#[tokio::test]
async fn a_conversion_minutes_after_its_click_shows_the_speed_signal() {
    let app = spawn_app_with(vec![]).await;
    let sup = unique("planner");
    let code = app
        .code_ok(
            &app.member(&sup, "SUPPLIER"),
            json!({"referrerId": sup, "referrerKind": "SUPPLIER"}),
        )
        .await["code"]
        .clone();
    let service = app.mesh.token("platform", Role::Admin, None);
    let clicked = Utc::now() - Span::minutes(3);
    let (_, click) = app
        .post(
            &service,
            "/v1/clicks",
            json!({"code": code, "occurredAt": clicked.to_rfc3339()}),
        )
        .await;
    let user = unique("couple");
    let (_, a) = app
        .post(
            &service,
            "/v1/signups",
            json!({"userId": user, "userKind": "COUPLE", "clickId": click["clickId"],
                                             "occurredAt": (clicked + Span::seconds(30)).to_rfc3339()}),
        )
        .await;
    assert_eq!(a["attributed"], true, "{a}");
    let (status, conv) = app
        .post(&app.billing_key().await, "/v1/conversions", json!({"userId": user, "value": {"amountMinor": "4900", "currency": "GBP"},
                                                 "plan": "PROFESSIONAL", "occurredAt": (clicked + Span::minutes(2)).to_rfc3339()}))
        .await;
    assert_eq!(status, 200, "{conv}");
    let conversion_id = conv["conversionId"].as_str().expect("id").to_string();
    // Conversions are assessed from invite-svc's event log; the verdict is fraud-svc's event.
    let assessment = fraud_assessment_of(&app, &conversion_id)
        .await
        .expect("the conversion is assessed");
    let speed = assessment
        .signals
        .iter()
        .find(|s| s.name == "conversion_speed")
        .expect("speed signal");
    assert!(speed.triggered, "{speed:?}");
    assert!(
        speed.value < speed.threshold,
        "seconds from click to conversion: {speed:?}"
    );
    assert!(
        (100.0..=140.0).contains(&speed.value),
        "about two minutes: {speed:?}"
    );
    // The same verdict through the gateway, for an admin, by the conversion's id.
    let path = format!("/v1/fraud/assessments?subjectType=CONVERSION&subjectId={conversion_id}");
    let (status, json_assessment) = app.get(&app.admin(), &path).await;
    assert_eq!(status, 200, "{json_assessment}");
    assert_eq!(json_assessment["subjectId"], conversion_id.as_str());
    assert_eq!(json_assessment["action"], "APPROVE", "{json_assessment}");
    assert_eq!(
        signal(&json_assessment, "conversion_speed")["triggered"],
        true,
        "{json_assessment}"
    );
    // A signup is found by its user; members may not look; a bad question names its field.
    let (status, signup) = app
        .get(
            &app.admin(),
            &format!("/v1/fraud/assessments?subjectType=SIGNUP&subjectId={user}"),
        )
        .await;
    assert_eq!(status, 200, "{signup}");
    assert_eq!(signup["subjectType"], "SIGNUP");
    let (status, _) = app.get(&app.member(&sup, "SUPPLIER"), &path).await;
    assert_eq!(status, 403);
    let (status, missing) = app
        .get(
            &app.admin(),
            "/v1/fraud/assessments?subjectType=CONVERSION&subjectId=conv-nope",
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    let (status, bad) = app.get(&app.admin(), "/v1/fraud/assessments?subjectId=x").await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("subjectType"), "{bad}");
    app.stop().await;
}

async fn fraud_assessment_of(app: &TestApp, subject: &str) -> Option<referral_proto::fraud::v1::Assessment> {
    let token = app.mesh.token("test", Role::Service, None);
    let mut client = EventLogClient::connect(TestApp::grpc_uri(app.mesh.fraud))
        .await
        .ok()?;
    let mut stream = client
        .subscribe(authed(
            SubscribeRequest {
                after_offset: 0,
                consumer: "test".into(),
            },
            &token,
        ))
        .await
        .ok()?
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(item))) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await
            && let Some(Item::Event(e)) = item.item
            && let Some(Payload::FraudAssessed(f)) = e.payload
            && let Some(a) = f.assessment
            && a.subject_id == subject
        {
            return Some(a);
        }
    }
    None
}

#[tokio::test]
async fn while_fraud_svc_is_away_nothing_is_lost_and_everything_moves_on_when_it_returns() {
    // invite-svc talks to a fraud-svc the test controls: a port that listens but does not
    // answer yet (the call times out), then a real fraud-svc on the same listener.
    let away = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fraud_addr = away.local_addr().expect("addr");
    let app = spawn_app_with_args(
        vec![],
        vec![
            "--fraud-addr".into(),
            fraud_addr.to_string(),
            "--fraud-deadline".into(),
            "300ms".into(),
        ],
    )
    .await;
    let held = held_while_fraud_away(&app, "music").await;
    let (token, inv) = (&held.referrer_token, &held.invitation);

    // fraud-svc returns: it reads invite-svc's log and decides; invite-svc reads its log.
    let dir = app.data_dir.join("fraud-returning");
    std::fs::create_dir_all(&dir).expect("dir");
    // The mesh's PII keys: invite-svc's events carry sealed IPs and keyed recipient hashes.
    let pii = referral_mesh::secret::pii_keys_load_or_create(&app.data_dir).expect("pii keys");
    let config: fraud_svc::FraudConfig = clap_parse(&[
        "--pii-keys",
        &pii.keys,
        "--pii-lookup-key",
        &pii.lookup,
        "--database-url",
        &format!("sqlite:{}", dir.join("fraud.db").display()),
        "--jwt-secret",
        referral_tests::SECRET,
        "--service-jwt-secret",
        referral_tests::SERVICE_SECRET,
        "--invite-addr",
        &app.mesh.invite.to_string(),
    ]);
    let (trigger, shutdown) = referral_common::server::shutdown_pair();
    let fraud = tokio::spawn(fraud_svc::serve(config, away, shutdown));

    let id = inv["id"].as_str().expect("id").to_string();
    let moved = eventually(Duration::from_secs(20), || async {
        let (_, now) = app.get(token, &format!("/v1/invitations/{id}")).await;
        (now["status"] == "SCHEDULED").then_some(now)
    })
    .await
    .expect("the held invitation is assessed and released");
    assert_eq!(moved["risk"]["pending"], false, "{moved}");
    assert_eq!(moved["risk"]["action"], "APPROVE", "{moved}");
    trigger.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(5), fraud).await;
    app.stop().await;
}

fn clap_parse<T: clap::Args>(args: &[&str]) -> T {
    #[derive(clap::Parser)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        inner: T,
    }
    <Wrap<T> as clap::Parser>::parse_from(std::iter::once("fraud-svc").chain(args.iter().copied())).inner
}
