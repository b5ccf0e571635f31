//! The services over gRPC: reflection, health, auth, and invite-svc's event log.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use referral_common::auth::Role;
use referral_proto::{
    events::v1::{SubscribeRequest, event, event_log_client::EventLogClient},
    invite::v1::{GetReferrerRequest, ListInvitationsRequest, invite_service_client::InviteServiceClient},
};
use referral_tests::{TestApp, authed, invitation, read_event_log, spawn_app, unique};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

async fn list_services(addr: SocketAddr) -> HashSet<String> {
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("reflection answer")
        .expect("one answer");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer from {addr}: {other:?}"),
    }
}

async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(TestApp::grpc_uri(addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

fn services(app: &TestApp) -> [(&'static str, SocketAddr, &'static str); 4] {
    [
        ("invite-svc", app.mesh.invite, "referral.invite.v1.InviteService"),
        ("fraud-svc", app.mesh.fraud, "referral.fraud.v1.FraudService"),
        (
            "incentive-svc",
            app.mesh.incentive,
            "referral.incentive.v1.IncentiveService",
        ),
        (
            "analytics-svc",
            app.mesh.analytics,
            "referral.analytics.v1.AnalyticsService",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_serves_reflection_and_health() {
    let app = spawn_app().await;
    for (name, addr, own) in services(&app) {
        let listed = list_services(addr).await;
        for expected in [own, "grpc.health.v1.Health"] {
            assert!(
                listed.contains(expected),
                "{name} at {addr} lists {expected}: {listed:?}"
            );
        }
        if name == "invite-svc" {
            assert!(
                listed.contains("referral.events.v1.EventLog"),
                "invite-svc lists its event log: {listed:?}"
            );
        }
        let mut health = HealthClient::new(channel(addr).await);
        for service in ["", "readiness"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("{name} health {service:?}: {e:?}"))
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{name} health {service:?}");
        }
    }
    app.stop().await;
}

/// grpcurl and friends trust reflection: a port should not advertise what it does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_only_the_services_of_that_port() {
    let app = spawn_app().await;
    let all = services(&app);
    for (name, addr, own) in all {
        let listed = list_services(addr).await;
        for (_, _, foreign) in all.iter().filter(|(_, _, s)| *s != own) {
            assert!(
                !listed.contains(*foreign),
                "{name} at {addr} advertises {foreign}, which it does not serve"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_service_needs_a_token_and_takes_a_service_token() {
    let app = spawn_app().await;
    let mut client = InviteServiceClient::connect(TestApp::grpc_uri(app.mesh.invite))
        .await
        .expect("connect");
    let who = unique("r");

    let err = client
        .get_referrer(GetReferrerRequest {
            referrer_id: who.clone(),
        })
        .await
        .expect_err("no token must fail");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = client
        .get_referrer(authed(
            GetReferrerRequest {
                referrer_id: who.clone(),
            },
            "not.a.token",
        ))
        .await
        .expect_err("a bad token must fail");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let svc = app.service_token();
    let referrer = client
        .get_referrer(authed(
            GetReferrerRequest {
                referrer_id: who.clone(),
            },
            &svc,
        ))
        .await
        .expect("a service token works")
        .into_inner();
    assert_eq!(referrer.id, who);
    assert_eq!(
        referrer.tier,
        referral_proto::invite::v1::ReferrerTier::Regular as i32,
        "REGULAR until set"
    );

    // A member over gRPC is held to the same rules as over HTTP.
    let member = app.token(&unique("m"), Role::Member, Some("SUPPLIER"));
    let err = client
        .list_invitations(authed(
            ListInvitationsRequest {
                referrer_id: who.clone(),
                ..Default::default()
            },
            &member,
        ))
        .await
        .expect_err("another member's list");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // And a member cannot pass itself off as a service's caller.
    let mut req = authed(
        ListInvitationsRequest {
            referrer_id: who.clone(),
            ..Default::default()
        },
        &member,
    );
    req.metadata_mut()
        .insert("x-principal-sub", who.parse().expect("ascii"));
    req.metadata_mut()
        .insert("x-principal-role", "admin".parse().expect("ascii"));
    let err = client
        .list_invitations(req)
        .await
        .expect_err("x-principal-* from a member is ignored");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_log_has_one_invitation_created_per_invitation_in_offset_order() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let mut ids = HashSet::new();
    let mut creates = Vec::new();
    for i in 0..12 {
        let channel = if i % 2 == 0 { "EMAIL" } else { "LINK" };
        creates.push(app.post(
            &token,
            "/v1/invitations",
            invitation(&sue, channel, &format!("e{i}@example.com")),
        ));
    }
    for (status, inv) in futures::future::join_all(creates).await {
        assert_eq!(status, 200, "{inv}");
        ids.insert(inv["id"].as_str().expect("id").to_string());
    }
    // A rejected duplicate leaves no event behind.
    let (status, _) = app
        .post(
            &token,
            "/v1/invitations",
            invitation(&sue, "EMAIL", "e0@example.com"),
        )
        .await;
    assert_eq!(status, 409);

    let events = read_event_log(
        app.mesh.invite,
        &app.service_token(),
        &ids,
        Duration::from_secs(20),
    )
    .await;
    let mut created = std::collections::HashMap::<String, usize>::new();
    for e in &events {
        if let Some(event::Payload::InvitationCreated(c)) = &e.payload {
            let id = c
                .invitation
                .as_ref()
                .map(|f| f.invitation_id.clone())
                .unwrap_or_default();
            assert_eq!(e.aggregate_id, id, "aggregate id of {e:?}");
            assert_eq!(e.source, "invite");
            *created.entry(id).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(
            created.get(id).copied(),
            Some(1),
            "exactly one invitation_created for {id}: {created:?}"
        );
    }
    assert_eq!(
        created.len(),
        ids.len(),
        "no invitation_created for anything else: {created:?}"
    );
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets.first(), Some(&1), "the log starts at offset 1");
    for w in offsets.windows(2) {
        assert_eq!(w[1], w[0] + 1, "offsets go up by one: {offsets:?}");
    }
    let event_ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(event_ids.len(), events.len(), "event ids are unique");

    // Resuming after an offset gives exactly the rest.
    let mid = offsets[offsets.len() / 2];
    let mut client = EventLogClient::connect(TestApp::grpc_uri(app.mesh.invite))
        .await
        .expect("connect");
    let mut stream = client
        .subscribe(authed(
            SubscribeRequest {
                after_offset: mid,
                consumer: "resume".into(),
            },
            &app.service_token(),
        ))
        .await
        .expect("Subscribe")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    let first = first.expect("an event in time").expect("stream").expect("item");
    match first.item {
        Some(referral_proto::events::v1::subscribe_response::Item::Event(e)) => assert_eq!(e.offset, mid + 1),
        other => panic!("expected the event after {mid}, got {other:?}"),
    }
    drop(stream);

    // The log is for services and admins, never anonymous callers or members.
    let err = client
        .subscribe(SubscribeRequest {
            after_offset: 0,
            consumer: "anon".into(),
        })
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let member = app.member(&sue, "SUPPLIER");
    let err = client
        .subscribe(authed(
            SubscribeRequest {
                after_offset: 0,
                consumer: "member".into(),
            },
            &member,
        ))
        .await
        .expect_err("member");
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_and_device_id_travel_with_invitations_and_clicks() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let body = invitation(&sue, "LINK", "dev@example.com");
    // An X-Forwarded-For from a peer that is not a trusted proxy is not believed.
    let r = app
        .send(
            reqwest::Method::POST,
            Some(&token),
            "/v1/invitations",
            Some(&body),
            &[("X-Device-Id", "device-42"), ("X-Forwarded-For", "203.0.113.9")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_string();
    let code = app
        .code_ok(
            &token,
            serde_json::json!({"referrerId": sue, "referrerKind": "SUPPLIER"}),
        )
        .await;
    // A caller's own `ip` is replaced by the gateway's view of the connection.
    let (status, click) = app
        .post(
            &token,
            "/v1/clicks",
            serde_json::json!({"code": code["code"], "ip": "198.51.100.7"}),
        )
        .await;
    assert_eq!(status, 200, "{click}");
    let click_id = click["clickId"].as_str().expect("clickId").to_string();

    let events = read_event_log(
        app.mesh.invite,
        &app.service_token(),
        &HashSet::from([id.clone()]),
        Duration::from_secs(20),
    )
    .await;
    let created = events
        .iter()
        .find_map(|e| match &e.payload {
            Some(event::Payload::InvitationCreated(c)) if e.aggregate_id == id => Some(c.clone()),
            _ => None,
        })
        .expect("invitation_created");
    // Sealed in the event (the outbox is a table of invite.db), opened by consumers.
    let pii = app.pii_keys();
    assert!(created.ip.starts_with("pii1."), "{created:?}");
    assert_eq!(
        pii.open(&created.ip).expect("opens"),
        "127.0.0.1",
        "the socket's address, not X-Forwarded-For: {created:?}"
    );
    assert_eq!(
        pii.open(&created.device_id).expect("opens"),
        "device-42",
        "{created:?}"
    );
    assert!(
        !created.recipient_key.contains('@'),
        "no e-mail addresses in events: {created:?}"
    );
    let clicked = events
        .iter()
        .find_map(|e| match &e.payload {
            Some(event::Payload::ClickRecorded(c)) if c.click_id == click_id => Some(c.clone()),
            _ => None,
        })
        .expect("click_recorded");
    assert_eq!(
        pii.open(&clicked.ip).expect("opens"),
        "127.0.0.1",
        "the caller's ip is replaced: {clicked:?}"
    );
    assert_eq!(clicked.referrer_id, sue);
    app.stop().await;
}

/// Consumers hold Subscribe open for ever; a graceful stop must end those streams instead
/// of waiting out the whole grace period (25 s in `referral-mesh`, then SIGKILL in k8s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_subscription_does_not_hold_up_a_graceful_stop() {
    let app = spawn_app().await;
    let mut client = EventLogClient::connect(TestApp::grpc_uri(app.mesh.invite))
        .await
        .expect("connect");
    let mut stream = client
        .subscribe(authed(
            SubscribeRequest {
                after_offset: 0,
                consumer: "long-lived".into(),
            },
            &app.service_token(),
        ))
        .await
        .expect("Subscribe")
        .into_inner();
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });
    let started = std::time::Instant::now();
    app.mesh.stop(Duration::from_secs(8)).await;
    let took = started.elapsed();
    reader.abort();
    let _ = std::fs::remove_dir_all(&app.data_dir);
    assert!(
        took < Duration::from_secs(4),
        "stopping with one subscriber took {took:?} (grace 8 s)"
    );
}
