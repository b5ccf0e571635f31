//! `referral-mesh serve --parts`: one service run in a process of its own, stopped and
//! started again while the rest of the mesh keeps serving (issue #3's "fraud-svc stopped
//! while invitations and signups come in" as a new user would do it, in two terminals).

use std::time::Duration;

use referral_mesh::{GrpcPorts, Part};
use referral_tests::{eventually, free_port_run, held_while_fraud_away, start_with, test_options};
use serde_json::json;

#[tokio::test]
async fn fraud_svc_run_apart_is_stopped_and_started_while_the_rest_keeps_serving() {
    let mut rest = test_options(vec![], vec!["--fraud-deadline".into(), "300ms".into()], true);
    rest.grpc_ports = GrpcPorts::Fixed;
    rest.grpc_base_port = free_port_run().await;
    rest.parts = vec![Part::Invite, Part::Incentive, Part::Analytics, Part::Gateway];
    let mut fraud_only = rest.clone();
    fraud_only.parts = vec![Part::Fraud];

    // Terminal 1: everything but fraud-svc. The gateway stays in rotation, degraded.
    let app = start_with(rest).await.expect("the mesh starts without fraud-svc");
    let (status, ready) = app.get("", "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["notReady"], json!(["fraud-svc"]), "{ready}");

    let held = held_while_fraud_away(&app, "florist").await;
    let (token, inv, user) = (&held.referrer_token, &held.invitation, &held.user);

    // Terminal 2: fraud-svc alone, on the same data dir and ports. It catches up from
    // invite-svc's log and both held subjects move on.
    let fraud = referral_mesh::start(fraud_only)
        .await
        .expect("fraud-svc starts on its own");
    let id = inv["id"].as_str().expect("id").to_string();
    let moved = eventually(Duration::from_secs(20), || async {
        let (_, now) = app.get(token, &format!("/v1/invitations/{id}")).await;
        (now["status"] == "SCHEDULED").then_some(now)
    })
    .await
    .expect("the held invitation is assessed and released");
    assert_eq!(moved["risk"]["pending"], false, "{moved}");
    let signup = eventually(Duration::from_secs(20), || async {
        let (status, a) = app
            .get(
                &app.admin(),
                &format!("/v1/fraud/assessments?subjectType=SIGNUP&subjectId={user}"),
            )
            .await;
        (status == 200).then_some(a)
    })
    .await
    .expect("the signup held as REVIEW is assessed");
    assert_eq!(signup["action"], "APPROVE", "{signup}");
    let (_, ready) = app.get("", "/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");

    fraud.stop(Duration::from_secs(5)).await;
    app.stop().await;
}
