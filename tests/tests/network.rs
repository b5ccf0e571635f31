//! A member's own referral network through the gateway (issue #16,
//! `GET /v1/referrers/{id}/network?depth=`): at most maxNetworkDepth (3) levels, only the
//! referrer themself or an admin, the people of level 1 by pseudonym only.

use std::time::Duration;

use referral_tests::{TestApp, eventually, int, invitation, spawn_app, unique, violated_fields};
use serde_json::{Value, json};

/// A LINK invitation from `referrer` (sent at creation); its id.
async fn invite(app: &TestApp, referrer: &str, kind: &str, referee: &str) -> String {
    let mut body = invitation(referrer, "LINK", &format!("{}@example.org", unique("guest")));
    body["referrerKind"] = json!(kind);
    body["refereeKind"] = json!(referee);
    let inv = app.invite_ok(&app.member(referrer, kind), body).await;
    inv["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn members_see_their_own_network_bounded_and_pseudonymous() {
    let app = spawn_app().await;
    // supplier -> two couples; the first couple -> a supplier of their own.
    let supplier = unique("net-sup");
    let couples = [unique("net-cpl"), unique("net-cpl")];
    let second = unique("net-sup2");
    for couple in &couples {
        let inv = invite(&app, &supplier, "SUPPLIER", "COUPLE").await;
        app.signup_attributed(couple, "COUPLE", &inv).await;
    }
    let inv = invite(&app, &couples[0], "COUPLE", "SUPPLIER").await;
    app.signup_attributed(&second, "SUPPLIER", &inv).await;

    let own = app.member(&supplier, "SUPPLIER");
    let path = format!("/v1/referrers/{supplier}/network");
    let body: Value = eventually(Duration::from_secs(10), || async {
        let (status, body) = app.get(&own, &path).await;
        assert_eq!(status, 200, "{body}");
        // Both couples at level 1, and the supplier one of them brought in at level 2 (one
        // person: under five, so suppressed).
        let reached = body["firstLevel"].as_array().map_or(0, Vec::len) == 2
            && body["levels"][1]["suppressed"] == json!(true);
        reached.then_some(body)
    })
    .await
    .expect("the network reaches both couples and the supplier they brought in");
    assert_eq!(
        int(&body["depth"]),
        3,
        "the default depth is maxNetworkDepth: {body}"
    );
    let levels = body["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 3, "{body}");
    assert_eq!(int(&levels[0]["people"]), 2, "{body}");
    assert_eq!(
        int(&levels[1]["people"]),
        0,
        "no number under five people: {body}"
    );
    let text = body.to_string();
    for person in couples.iter().chain([&second]) {
        assert!(
            !text.contains(person.as_str()),
            "no user id of anyone else: {text}"
        );
    }
    assert!(
        body["firstLevel"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_str().is_some_and(referral_common::pii::is_pseudonym)),
        "{body}"
    );

    // Deeper than maxNetworkDepth, or not a number: 400 naming `depth`.
    for bad in ["4", "-1", "deep"] {
        let (status, body) = app.get(&own, &format!("{path}?depth={bad}")).await;
        assert_eq!(status, 400, "depth={bad}: {body}");
        assert_eq!(violated_fields(&body), ["depth"], "{body}");
    }
    let (status, body) = app.get(&own, &format!("{path}?depth=1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["levels"].as_array().map(Vec::len), Some(1), "{body}");

    // Another member may not read it; an admin may.
    let (status, body) = app.get(&app.member(&couples[1], "COUPLE"), &path).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = app.get(&app.admin(), &path).await;
    assert_eq!(status, 200, "{body}");

    // The route is in the contract.
    let (status, spec) = app.get(&app.admin(), "/openapi.json").await;
    assert_eq!(status, 200);
    let param = &spec["paths"]["/v1/referrers/{id}/network"]["get"]["parameters"];
    assert!(param.to_string().contains("\"depth\""), "{param}");
}
