//! Privacy requests (issue #16) as a person would make them: a couple invited by two
//! suppliers clicks, signs up and converts; their export gathers every service's part; their
//! erasure, asked while fraud-svc is stopped, shows three parts done and fraud-svc's pending
//! until fraud-svc is back; an export taken after holds nothing personal.

use std::time::Duration;

use referral_mesh::{GrpcPorts, Part};
use referral_tests::{eventually, free_port_run, int, start_with, test_options, unique, violated_fields};
use serde_json::{Value, json};

fn part<'a>(request: &'a Value, service: &str) -> &'a Value {
    request["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p["service"] == service))
        .unwrap_or_else(|| panic!("no {service} part in {request}"))
}

#[tokio::test]
async fn erase_and_export_are_orchestrated_across_the_four_services() {
    let mut rest = test_options(vec![], vec!["--fraud-deadline".into(), "300ms".into()], false);
    rest.grpc_ports = GrpcPorts::Fixed;
    rest.grpc_base_port = free_port_run().await;
    rest.parts = vec![Part::Invite, Part::Incentive, Part::Analytics, Part::Gateway];
    let mut fraud_only = rest.clone();
    fraud_only.parts = vec![Part::Fraud];
    let app = start_with(rest).await.expect("the mesh starts");
    let fraud = referral_mesh::start(fraud_only.clone())
        .await
        .expect("fraud-svc starts");
    let admin = app.admin();

    // A couple invited by two suppliers, under two spellings of one Gmail address.
    let tag = unique("c").replace('-', "");
    let (couple_email, signup_email) = (
        format!("jane.{tag}+wedding@gmail.com"),
        format!("Jane{tag}@googlemail.com"),
    );
    let couple = unique("couple");
    let mut invitations = Vec::new();
    for (i, email) in [couple_email.clone(), format!("jane{tag}@gmail.com")]
        .iter()
        .enumerate()
    {
        let supplier = unique(if i == 0 { "photographer" } else { "florist" });
        let token = app.member(&supplier, "SUPPLIER");
        let inv = app
            .invite_ok(
                &token,
                json!({
                    "referrerId": supplier, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
                    "channel": "EMAIL", "recipient": {"email": email, "name": "Jane Secretname"},
                }),
            )
            .await;
        invitations.push(inv);
    }
    let code = invitations[0]["code"].as_str().expect("code").to_string();
    let (status, click) = app
        .post(
            &admin,
            "/v1/clicks",
            json!({"code": code, "visitorId": "jane-laptop", "userAgent": "JaneBrowser/1.0"}),
        )
        .await;
    assert_eq!(status, 200, "{click}");
    let couple_token = app.member(&couple, "COUPLE");
    let (status, signup) = app
        .post(
            &couple_token,
            "/v1/signups",
            json!({"userId": couple, "userKind": "COUPLE", "email": signup_email, "name": "Jane Secretname",
                   "clickId": click["clickId"]}),
        )
        .await;
    assert_eq!(status, 200, "{signup}");
    assert_eq!(signup["attributed"], true, "{signup}");
    let billing = app.billing_key().await;
    let (status, conversion) = app
        .post(
            &billing,
            "/v1/conversions",
            json!({"userId": couple, "value": {"amountMinor": "2500", "currency": "GBP"}, "plan": "PROFESSIONAL", "annual": false}),
        )
        .await;
    assert_eq!(status, 200, "{conversion}");

    // Who may ask, and bad input.
    let stranger = app.member(&unique("someone"), "COUPLE");
    let (status, body) = app
        .post(&stranger, &format!("/v1/people/{couple}/export"), json!({}))
        .await;
    assert_eq!(status, 403, "someone else's export -> {body}");
    let r = app
        .send(
            reqwest::Method::DELETE,
            Some(&stranger),
            &format!("/v1/people/{couple}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "someone else's erasure -> {}", r.body);
    let r = app
        .send(
            reqwest::Method::DELETE,
            None,
            &format!("/v1/people/{couple}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "unauthenticated -> {}", r.body);
    let long = "x".repeat(300);
    let r = app
        .send(
            reqwest::Method::DELETE,
            Some(&admin),
            &format!("/v1/people/{long}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(violated_fields(&r.body), ["personId"], "{}", r.body);
    let (status, body) = app.get(&admin, &format!("/v1/privacy/requests/{long}")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(violated_fields(&body), ["id"], "{body}");
    let (status, body) = app.get(&admin, "/v1/privacy/requests/no-such-request").await;
    assert_eq!(status, 404, "{body}");

    // The export: 202, then DONE with four parts, and one document for a person to read.
    let (status, export) = app
        .post(&couple_token, &format!("/v1/people/{couple}/export"), json!({}))
        .await;
    assert_eq!(status, 202, "{export}");
    assert_eq!(export["kind"], "EXPORT", "{export}");
    assert_eq!(export["personId"], json!(couple), "{export}");
    let id = export["id"].as_str().expect("id").to_string();
    let (status, again) = app
        .post(&admin, &format!("/v1/people/{couple}/export"), json!({}))
        .await;
    assert!(
        status == 202 && (again["id"] == json!(id) || again["state"] == "DONE"),
        "{again}"
    );
    let done = eventually(Duration::from_secs(30), || async {
        let (_, r) = app
            .get(&couple_token, &format!("/v1/privacy/requests/{id}"))
            .await;
        (r["state"] == "DONE").then_some(r)
    })
    .await
    .expect("the export completes");
    assert_eq!(done["parts"].as_array().map(Vec::len), Some(4), "{done}");
    for service in ["invite-svc", "fraud-svc", "incentive-svc", "analytics-svc"] {
        assert_eq!(part(&done, service)["state"], "DONE", "{done}");
    }
    let invite_counts = &part(&done, "invite-svc")["receipt"]["counts"];
    assert_eq!(int(&invite_counts["invitations_received"]), 2, "{done}");
    assert_eq!(int(&invite_counts["signups"]), 1, "{done}");
    assert_eq!(int(&invite_counts["conversions"]), 1, "{done}");
    assert!(int(&invite_counts["clicks"]) >= 1, "{done}");
    let url = done["downloadUrl"].as_str().expect("downloadUrl").to_string();
    assert_eq!(url, format!("/v1/privacy/requests/{id}/export"));
    let r = app
        .send(reqwest::Method::GET, Some(&couple_token), &url, None, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment"))
    );
    let doc = r.body;
    assert_eq!(doc["personId"], json!(couple), "{doc}");
    for service in ["invite", "fraud", "incentive", "analytics"] {
        assert!(doc["services"][service].is_object(), "{service} in {doc}");
    }
    let invite = &doc["services"]["invite"];
    assert_eq!(
        invite["invitationsReceived"].as_array().map(Vec::len),
        Some(2),
        "{doc}"
    );
    assert_eq!(invite["signup"]["userId"], json!(couple), "{doc}");
    assert_eq!(invite["conversions"][0]["amountMinor"], 2500, "{doc}");
    assert_eq!(invite["clicks"][0]["userAgent"], "JaneBrowser/1.0", "{doc}");
    let text = doc.to_string();
    assert!(
        text.contains(&couple_email) && text.contains("Secretname"),
        "{doc}"
    );
    // Someone else cannot read it.
    let r = app
        .send(reqwest::Method::GET, Some(&stranger), &url, None, &[])
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The erasure, fraud-svc stopped: three parts done, fraud-svc's pending.
    fraud.stop(Duration::from_secs(5)).await;
    let r = app
        .send(
            reqwest::Method::DELETE,
            Some(&couple_token),
            &format!("/v1/people/{couple}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["kind"], "ERASE", "{}", r.body);
    let erase_id = r.body["id"].as_str().expect("id").to_string();
    eventually(Duration::from_secs(30), || async {
        let (_, r) = app.get(&admin, &format!("/v1/privacy/requests/{erase_id}")).await;
        let others = ["invite-svc", "incentive-svc", "analytics-svc"];
        others.iter().all(|s| part(&r, s)["state"] == "DONE").then_some(r)
    })
    .await
    .expect("the three running services do their parts");
    // fraud-svc's part waits for fraud-svc, however long it is away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, three) = app.get(&admin, &format!("/v1/privacy/requests/{erase_id}")).await;
    assert_eq!(three["state"], "PENDING", "{three}");
    assert_eq!(part(&three, "fraud-svc")["state"], "PENDING", "{three}");
    assert!(three.get("downloadUrl").is_none_or(|u| u == ""), "{three}");
    // Asking again while it is pending answers the same request.
    let r = app
        .send(
            reqwest::Method::DELETE,
            Some(&admin),
            &format!("/v1/people/{couple}"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.body["id"].clone()),
        (202, json!(erase_id)),
        "{}",
        r.body
    );

    // Only a service confirms a part, and only its own: fail closed for anyone else.
    {
        use referral_proto::common::v1::{
            CompletePrivacyPartRequest, PrivacyReceipt, privacy_requests_client::PrivacyRequestsClient,
        };
        let mut client = PrivacyRequestsClient::connect(referral_tests::TestApp::grpc_uri(app.mesh.invite))
            .await
            .expect("connect to invite-svc");
        let confirm = || CompletePrivacyPartRequest {
            request_id: erase_id.clone(),
            receipt: Some(PrivacyReceipt {
                service: "fraud-svc".into(),
                ..Default::default()
            }),
            document_json: String::new(),
        };
        for token in [app.service_token(), couple_token.clone(), admin.clone()] {
            let refused = client
                .complete_privacy_part(referral_tests::authed(confirm(), &token))
                .await
                .expect_err("only fraud-svc confirms fraud-svc's part");
            assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        }
        let refused = client
            .complete_privacy_part(tonic::Request::new(confirm()))
            .await
            .expect_err("no credentials");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        let (_, still) = app.get(&admin, &format!("/v1/privacy/requests/{erase_id}")).await;
        assert_eq!(part(&still, "fraud-svc")["state"], "PENDING", "{still}");
    }

    // fraud-svc back: it does its part from invite-svc's log and the request completes.
    let fraud = referral_mesh::start(fraud_only)
        .await
        .expect("fraud-svc starts again");
    let erased = eventually(Duration::from_secs(30), || async {
        let (_, r) = app.get(&admin, &format!("/v1/privacy/requests/{erase_id}")).await;
        (r["state"] == "DONE").then_some(r)
    })
    .await
    .expect("the erasure completes once fraud-svc is back");
    assert!(erased["completedAt"].is_string(), "{erased}");
    let counts = &part(&erased, "invite-svc")["receipt"]["counts"];
    assert_eq!(int(&counts["invitations_received"]), 2, "{erased}");
    assert_eq!(int(&counts["signups"]), 1, "{erased}");

    // An export taken after holds nothing personal.
    let (status, after) = app
        .post(&admin, &format!("/v1/people/{couple}/export"), json!({}))
        .await;
    assert_eq!(status, 202, "{after}");
    let after_id = after["id"].as_str().expect("id").to_string();
    eventually(Duration::from_secs(30), || async {
        let (_, r) = app.get(&admin, &format!("/v1/privacy/requests/{after_id}")).await;
        (r["state"] == "DONE").then_some(r)
    })
    .await
    .expect("the second export completes");
    let r = app
        .send(
            reqwest::Method::GET,
            Some(&admin),
            &format!("/v1/privacy/requests/{after_id}/export"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.body.to_string().to_lowercase();
    for personal in [
        couple_email.to_lowercase(),
        format!("jane{tag}"),
        "secretname".into(),
        "janebrowser".into(),
        "jane-laptop".into(),
    ] {
        assert!(!text.contains(&personal), "{personal} still in {}", r.body);
    }
    // The invitations themselves no longer carry the address.
    for inv in &invitations {
        let (status, now) = app
            .get(
                &admin,
                &format!("/v1/invitations/{}", inv["id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(status, 200, "{now}");
        assert!(
            !now.to_string().to_lowercase().contains(&format!("jane{tag}")),
            "{now}"
        );
    }

    fraud.stop(Duration::from_secs(5)).await;
    app.stop().await;
}
