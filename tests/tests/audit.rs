//! The audit log through the gateway: an admin's tier change, case resolution, program,
//! campaign and webhook endpoint each leave one row with who (subject, role, request id),
//! what, before and after; a refused change leaves none; `GET /v1/audit` filters and pages
//! across all four services; members are refused.

use std::{collections::HashSet, time::Duration};

use referral_tests::{eventually, spawn_app_with, unique, violated_fields};
use reqwest::Method;
use serde_json::{Value, json};

/// Every audit entry matching `query`, walking the pages of `page_size`.
async fn all_entries(app: &referral_tests::TestApp, token: &str, query: &str, page_size: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token_param = String::new();
    for _ in 0..100 {
        let (status, page) = app
            .get(
                token,
                &format!("/v1/audit?pageSize={page_size}&{query}{token_param}"),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        assert!(entries.len() <= page_size as usize);
        out.extend(entries);
        let next = page["nextPageToken"].as_str().unwrap_or_default();
        if next.is_empty() {
            return out;
        }
        token_param = format!("&pageToken={next}");
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn admin_actions_are_audited_and_readable_by_admins_only() {
    let app = spawn_app_with(vec![]).await;
    let admin_sub = unique("auditor");
    let admin = app.token(&admin_sub, referral_common::auth::Role::Admin, None);
    let request_id = unique("req");
    let as_admin = [("x-request-id", request_id.as_str())];

    // A tier change.
    let referrer = unique("photographer");
    let r = app
        .send(
            Method::PUT,
            Some(&admin),
            &format!("/v1/referrers/{referrer}/tier"),
            Some(&json!({"tier": "PREMIUM"})),
            &as_admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A program put, then put again (before = the first).
    let program_id = unique("program");
    // The couples' default program under a new id, inactive so that it books nothing.
    let (_, mut program) = app.get(&admin, "/v1/reward-programs/couple-default").await;
    let body = program.as_object_mut().expect("program");
    for generated in ["id", "createdAt", "updatedAt"] {
        body.remove(generated);
    }
    body.insert("active".into(), json!(false));
    for _ in 0..2 {
        let r = app
            .send(
                Method::PUT,
                Some(&admin),
                &format!("/v1/reward-programs/{program_id}"),
                Some(&program),
                &as_admin,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // A campaign.
    let r = app
        .send(
            Method::POST,
            Some(&admin),
            "/v1/campaigns",
            Some(&json!({"name": "Audited spring", "startsAt": "2030-03-01T00:00:00Z", "endsAt": "2030-04-01T00:00:00Z", "multiplier": 2})),
            &as_admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let campaign_id = r.body["id"].as_str().expect("campaign id").to_string();

    // A webhook endpoint, created and deleted; its secret must never reach the log.
    let r = app
        .send(
            Method::POST,
            Some(&admin),
            "/v1/webhook-endpoints",
            Some(&json!({"url": "https://hooks.example.com/audit", "eventTypes": ["*"]})),
            &as_admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let endpoint_id = r.body["id"].as_str().expect("endpoint id").to_string();
    let secret = r.body["secret"].as_str().expect("secret").to_string();
    let r = app
        .send(
            Method::DELETE,
            Some(&admin),
            &format!("/v1/webhook-endpoints/{endpoint_id}"),
            None,
            &as_admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A case resolution (a self-referral opens one).
    let couple = unique("couple");
    let ctoken = app.member(&couple, "COUPLE");
    let code = app
        .code_ok(&ctoken, json!({"referrerId": couple, "referrerKind": "COUPLE"}))
        .await["code"]
        .clone();
    let (status, _) = app
        .post(
            &ctoken,
            "/v1/signups",
            json!({"userId": couple, "userKind": "COUPLE", "code": code}),
        )
        .await;
    assert_eq!(status, 200);
    let case_id = eventually(Duration::from_secs(10), || async {
        let (_, cases) = app.get(&admin, "/v1/fraud/cases?state=OPEN&pageSize=100").await;
        cases["cases"]
            .as_array()?
            .iter()
            .find(|c| c["referrerId"] == couple.as_str())
            .and_then(|c| c["id"].as_str().map(str::to_string))
    })
    .await
    .expect("a case opens for the self-referral");
    let r = app
        .send(
            Method::POST,
            Some(&admin),
            &format!("/v1/fraud/cases/{case_id}:resolve"),
            Some(&json!({"decision": "REJECT", "note": "self-referral confirmed"})),
            &as_admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A payout with nothing to pay is refused, and a refused change is not audited.
    let r = app
        .send(
            Method::POST,
            Some(&admin),
            "/v1/payouts",
            Some(&json!({"referrerId": referrer})),
            &as_admin,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Everything this admin did, newest first, walked in pages of 2 across the services.
    let mine = all_entries(&app, &admin, &format!("actor={admin_sub}"), 2).await;
    let actions: Vec<&str> = mine
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        actions,
        [
            "fraud_case.resolve",
            "webhook_endpoint.delete",
            "webhook_endpoint.create",
            "campaign.create",
            "reward_program.put",
            "reward_program.put",
            "referrer.tier.set",
        ],
        "{mine:#?}"
    );
    let ids: HashSet<&str> = mine.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), mine.len(), "no entry twice across pages");
    for e in &mine {
        assert_eq!(e["actor"], admin_sub.as_str(), "{e}");
        assert_eq!(e["actorRole"], "admin", "{e}");
        assert_eq!(e["requestId"], request_id.as_str(), "{e}");
        assert!(
            !e.to_string().contains(&secret),
            "the signing secret is never audited: {e}"
        );
    }
    let by_action = |a: &str| mine.iter().find(|e| e["action"] == a).cloned().expect(a);

    let tier = by_action("referrer.tier.set");
    assert_eq!(
        (tier["service"].as_str(), tier["subjectKind"].as_str()),
        (Some("invite-svc"), Some("referrer"))
    );
    assert_eq!(tier["subjectId"], referrer.as_str());
    assert_eq!(tier["before"], json!({"tier": "REGULAR"}));
    assert_eq!(tier["after"], json!({"tier": "PREMIUM"}));

    let puts: Vec<&Value> = mine
        .iter()
        .filter(|e| e["action"] == "reward_program.put")
        .collect();
    assert_eq!(puts[1]["before"], Value::Null, "the first put had nothing before");
    assert_eq!(puts[0]["before"]["id"], program_id.as_str());
    assert_eq!(puts[0]["after"]["currency"], "GBP");

    let campaign = by_action("campaign.create");
    assert_eq!(campaign["subjectId"], campaign_id.as_str());
    assert_eq!(campaign["after"]["name"], "Audited spring");
    assert_eq!(campaign["before"], Value::Null);

    let created = by_action("webhook_endpoint.create");
    assert_eq!(created["service"], "analytics-svc");
    assert_eq!(created["after"]["url"], "https://hooks.example.com/audit");
    let deleted = by_action("webhook_endpoint.delete");
    assert_eq!(deleted["before"]["id"], endpoint_id.as_str());
    assert_eq!(deleted["after"], Value::Null);

    let resolution = by_action("fraud_case.resolve");
    assert_eq!(resolution["service"], "fraud-svc");
    assert_eq!(resolution["subjectId"], case_id.as_str());
    assert_eq!(resolution["before"]["state"], "OPEN");
    assert_eq!(resolution["after"]["state"], "RESOLVED");
    assert_eq!(resolution["after"]["decision"], "REJECT");
    assert_eq!(resolution["note"], "self-referral confirmed");

    // Filters: by action, by subject, by time.
    let only = all_entries(
        &app,
        &admin,
        &format!("action=campaign.create&actor={admin_sub}"),
        50,
    )
    .await;
    assert_eq!(only.len(), 1);
    let only = all_entries(&app, &admin, &format!("subject={case_id}"), 50).await;
    assert_eq!(only.len(), 1, "{only:#?}");
    let since = resolution["occurredAt"].as_str().expect("occurredAt");
    let recent = all_entries(&app, &admin, &format!("actor={admin_sub}&since={since}"), 50).await;
    assert_eq!(recent.len(), 1, "{recent:#?}");
    let before = all_entries(&app, &admin, &format!("actor={admin_sub}&until={since}"), 50).await;
    assert_eq!(before.len(), 6);

    // Bounds name the field.
    let (status, body) = app.get(&admin, "/v1/audit?since=yesterday").await;
    assert_eq!(status, 400, "{body}");
    assert!(violated_fields(&body).contains(&"since".to_string()), "{body}");
    let long = "a".repeat(201);
    let (status, body) = app.get(&admin, &format!("/v1/audit?actor={long}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(violated_fields(&body).contains(&"actor".to_string()), "{body}");
    let (status, body) = app.get(&admin, "/v1/audit?pageToken=bm9wZQ").await;
    assert_eq!(status, 400, "{body}");

    // Members never read the audit log.
    let (status, body) = app.get(&ctoken, "/v1/audit").await;
    assert_eq!(status, 403, "{body}");
    app.stop().await;
}
