//! fraud-svc over gRPC, in-process on port 0 (SQLite in a temp dir): who may call what,
//! what the answers say, its own event log, and the consumer of invite-svc's log (a stand-in
//! log served from an outbox table here).

use std::time::Duration;

use clap::Parser;
use fraud_svc::FraudConfig;
use referral_common::{
    auth::{AuthInterceptor, JwtKeys, Role, ServiceKeys, Verifier},
    config::Secret,
    events::new_event,
    ids::to_ts,
    outbox::{self, EventLogService, Outbox},
    server::{self, ShutdownTrigger},
};
use referral_proto::{
    common::v1::FraudAction,
    events::v1::{
        ConversionRecorded, Event, SignupRecorded, SubscribeRequest, event::Payload,
        event_log_client::EventLogClient, subscribe_response::Item,
    },
    fraud::v1::{
        AssessConversionRequest, AssessInvitationRequest, AssessSignupRequest, CaseState, GetCaseRequest,
        ListCasesRequest, ResolveCaseRequest, SubjectType, fraud_service_client::FraudServiceClient,
    },
};
use tonic::{Code, Request, transport::Channel};

const SECRET: &str = "fraud-svc-test-secret-0123456789abcdef";
const SERVICE_SECRET: &str = "fraud-svc-test-service-secret-0123456789";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: FraudConfig,
}

struct App {
    addr: String,
    keys: JwtKeys,
    dir: std::path::PathBuf,
    trigger: ShutdownTrigger,
}

impl App {
    async fn spawn(invite_addr: Option<&str>) -> App {
        let dir = std::env::temp_dir().join(format!("fraud-grpc-{}", uuid::Uuid::now_v7().simple()));
        let url = format!("sqlite:{}", dir.join("fraud.db").display());
        let mut args = vec![
            "fraud-svc",
            "--database-url",
            &url,
            "--jwt-secret",
            SECRET,
            "--service-jwt-secret",
            SERVICE_SECRET,
            "--pii-keys",
            "t1:fraud-svc-test-pii-key-0123456789abcdef",
            "--pii-lookup-key",
            "fraud-svc-test-pii-lookup-0123456789abcdef",
        ];
        if let Some(a) = invite_addr {
            args.extend(["--invite-addr", a]);
        }
        let config = Cli::parse_from(args).config;
        let (listener, local) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (trigger, shutdown) = server::shutdown_pair();
        tokio::spawn(fraud_svc::serve(config, listener, shutdown));
        let app = App {
            addr: format!("http://{local}"),
            keys: JwtKeys::new(&Secret::new(SECRET)),
            dir,
            trigger,
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(channel) = Channel::from_shared(self.addr.clone()).unwrap().connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let req = tonic_health::pb::HealthCheckRequest {
                    service: server::READINESS.into(),
                };
                if let Ok(r) = health.check(req).await
                    && r.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fraud-svc never became ready");
    }

    fn token(&self, sub: &str, role: Role) -> String {
        match role {
            Role::Service => ServiceKeys::new(&Secret::new(SERVICE_SECRET)).mint(sub),
            Role::Member => self
                .keys
                .mint(sub, role, Some("COUPLE"), Duration::from_secs(600)),
            _ => self.keys.mint(sub, role, None, Duration::from_secs(600)),
        }
    }

    async fn client(&self) -> FraudServiceClient<Channel> {
        FraudServiceClient::connect(self.addr.clone()).await.unwrap()
    }

    fn stop(self) {
        self.trigger.trigger();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    // A service token acts for nobody but itself (a member token ignores this).
    referral_common::auth::forwarded::write_none(req.metadata_mut());
    req
}

fn signup(user: &str, referrer: &str) -> AssessSignupRequest {
    AssessSignupRequest {
        signup_id: format!("signup-{user}"),
        user_id: user.into(),
        referrer_id: referrer.into(),
        email: format!("{user}@example.com"),
        ..Default::default()
    }
}

#[tokio::test]
async fn internal_callers_assess_and_every_answer_explains_itself() {
    let app = App::spawn(None).await;
    let mut c = app.client().await;
    let service = app.token("invite-svc", Role::Service);

    let ok = c
        .assess_invitation(authed(
            AssessInvitationRequest {
                invitation_id: "inv-1".into(),
                referrer_id: "photographer".into(),
                recipient_email: "sam@example.com".into(),
                device_id: "laptop".into(),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.action, FraudAction::Approve as i32);
    assert_eq!(ok.subject_type, SubjectType::Invitation as i32);
    assert!(ok.case_id.is_empty());

    let refused = c
        .assess_invitation(authed(
            AssessInvitationRequest {
                invitation_id: "inv-2".into(),
                referrer_id: "photographer".into(),
                recipient_email: "x@mailinator.com".into(),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.action, FraudAction::Reject as i32);
    assert_eq!(refused.rules[0].name, "disposable_recipient");
    assert!(!refused.case_id.is_empty());

    let a = c
        .assess_signup(authed(signup("couple-1", "couple-1"), &service))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.action, FraudAction::Reject as i32);
    assert_eq!(a.rules[0].name, "self_referral");
    assert_eq!(a.signals.len(), 7);
    assert_eq!(a.referee_id, "couple-1");

    let conv = c
        .assess_conversion(authed(
            AssessConversionRequest {
                conversion_id: "conv-1".into(),
                user_id: "u9".into(),
                referrer_id: "r9".into(),
                click_at: Some(to_ts(chrono::Utc::now() - chrono::Duration::minutes(2))),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    let speed = conv
        .signals
        .iter()
        .find(|s| s.name == "conversion_speed")
        .unwrap();
    assert!(speed.triggered, "{speed:?}");

    // Members never assess; nobody unauthenticated does anything.
    let member = app.token("m1", Role::Member);
    let e = c
        .assess_signup(authed(signup("u2", "r2"), &member))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = c
        .assess_signup(Request::new(signup("u2", "r2")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Bad input names the field.
    let e = c
        .assess_signup(authed(
            AssessSignupRequest {
                email: "not-an-email".into(),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = referral_common::error::violations_of(&e)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, vec!["userId", "email"]);
    app.stop();
}

#[tokio::test]
async fn admins_review_cases_members_cannot() {
    let app = App::spawn(None).await;
    let mut c = app.client().await;
    let service = app.token("invite-svc", Role::Service);
    let admin = app.token("admin-1", Role::Admin);
    let member = app.token("m1", Role::Member);
    for user in ["a", "b", "c"] {
        c.assess_signup(authed(signup(user, user), &service))
            .await
            .unwrap();
    }

    let e = c
        .list_cases(authed(ListCasesRequest::default(), &member))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let page = c
        .list_cases(authed(
            ListCasesRequest {
                state: Some(CaseState::Open as i32),
                page_size: 2,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.cases.len(), 2);
    assert!(!page.next_page_token.is_empty());
    let rest = c
        .list_cases(authed(
            ListCasesRequest {
                state: Some(CaseState::Open as i32),
                page_size: 2,
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.cases.len(), 1);
    assert!(rest.next_page_token.is_empty());

    let id = page.cases[0].id.clone();
    let e = c
        .get_case(authed(GetCaseRequest { id: id.clone() }, &member))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let case = c
        .get_case(authed(GetCaseRequest { id: id.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.state, CaseState::Open as i32);
    let assessment = case.assessment.unwrap();
    assert_eq!(assessment.action, FraudAction::Reject as i32);
    assert_eq!(assessment.case_id, id);

    let resolve = |decision: FraudAction, token: &str| {
        authed(
            ResolveCaseRequest {
                id: id.clone(),
                decision: decision as i32,
                note: "their own code, but a real couple".into(),
            },
            token,
        )
    };
    let e = c
        .resolve_case(resolve(FraudAction::Approve, &member))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = c
        .resolve_case(resolve(FraudAction::Approve, &service))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "admin only");
    let e = c
        .resolve_case(resolve(FraudAction::Review, &admin))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let done = c
        .resolve_case(resolve(FraudAction::Approve, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state, CaseState::Resolved as i32);
    let resolution = done.resolution.unwrap();
    assert_eq!(
        (resolution.decision, resolution.resolved_by.as_str()),
        (FraudAction::Approve as i32, "admin-1")
    );
    let e = c
        .resolve_case(resolve(FraudAction::Reject, &admin))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .get_case(authed(GetCaseRequest { id: "missing".into() }, &admin))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // fraud-svc's own log: three assessments, then the resolution.
    let events = read_log(&app.addr, &service, 4).await;
    let kinds: Vec<&str> = events.iter().map(referral_common::events::event_type).collect();
    assert_eq!(
        kinds,
        vec![
            "fraud.assessed",
            "fraud.assessed",
            "fraud.assessed",
            "fraud.resolved"
        ]
    );
    match events[3].payload.as_ref() {
        Some(Payload::FraudResolved(r)) => {
            assert_eq!(r.case_id, id);
            assert_eq!(r.decision, FraudAction::Approve as i32);
        }
        other => panic!("{other:?}"),
    }
    app.stop();
}

/// Reads `n` events from an event log (fraud-svc's own, or the stand-in invite log).
async fn read_log(addr: &str, token: &str, n: usize) -> Vec<Event> {
    let mut client = EventLogClient::connect(addr.to_string()).await.unwrap();
    let mut stream = client
        .subscribe(authed(
            SubscribeRequest {
                after_offset: 0,
                consumer: "test".into(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        if let Some(Item::Event(e)) = item.item {
            out.push(e);
        }
    }
    out
}

/// A stand-in for invite-svc's log: an outbox table served by the common EventLog server.
async fn invite_log(events: &[Event]) -> (String, ShutdownTrigger) {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
         event_type TEXT NOT NULL, log_offset BIGINT UNIQUE, payload BLOB NOT NULL, created_at TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Where a producer records its durable consumers' positions (the shared migration 75).
    sqlx::query(
        "CREATE TABLE event_log_consumers (consumer TEXT PRIMARY KEY, acked_offset BIGINT NOT NULL, seen_at TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for e in events {
        let mut conn = pool.acquire().await.unwrap();
        outbox::insert_sqlite(&mut conn, e).await.unwrap();
    }
    let relay = Outbox::start("test.outbox-relay", pool.clone(), Duration::from_millis(50));
    relay.flush().await;
    let log = EventLogService::new(
        pool,
        &relay,
        Duration::from_secs(1),
        referral_common::server::Shutdown::never(),
    );
    let (listener, local) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (trigger, shutdown) = server::shutdown_pair();
    let interceptor = AuthInterceptor::new(Verifier::new(
        JwtKeys::new(&Secret::new(SECRET)),
        ServiceKeys::new(&Secret::new(SERVICE_SECRET)),
    ));
    tokio::spawn(async move {
        // Keep the relay alive as long as the server.
        let _relay = relay;
        tonic::transport::Server::builder()
            .add_service(tonic::service::interceptor::InterceptedService::new(
                log.into_server(),
                interceptor,
            ))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown.wait(),
            )
            .await
    });
    (local.to_string(), trigger)
}

#[tokio::test]
async fn signups_and_conversions_are_assessed_from_invite_svcs_log() {
    let now = chrono::Utc::now();
    let signup_pending = new_event(
        "invite",
        "s-1",
        now,
        Payload::SignupRecorded(SignupRecorded {
            signup_id: "s-1".into(),
            user_id: "u-1".into(),
            attributed: true,
            referrer_id: "r-1".into(),
            risk: Some(referral_proto::common::v1::Risk {
                pending: true,
                action: FraudAction::Review as i32,
                ..Default::default()
            }),
            at: Some(to_ts(now)),
            ..Default::default()
        }),
    );
    let converted = new_event(
        "invite",
        "c-1",
        now,
        Payload::ConversionRecorded(ConversionRecorded {
            conversion_id: "c-1".into(),
            user_id: "u-1".into(),
            attributed: true,
            first_paid: true,
            referrer_id: "r-1".into(),
            at: Some(to_ts(now)),
            click_at: Some(to_ts(now - chrono::Duration::seconds(90))),
            ..Default::default()
        }),
    );
    let (invite_addr, invite_stop) = invite_log(&[signup_pending, converted]).await;
    let app = App::spawn(Some(&invite_addr)).await;
    let service = app.token("incentive-svc", Role::Service);
    let events = read_log(&app.addr, &service, 2).await;
    let assessed: Vec<(i32, String)> = events
        .iter()
        .map(|e| match e.payload.as_ref() {
            Some(Payload::FraudAssessed(f)) => {
                let a = f.assessment.as_ref().unwrap();
                (a.subject_type, a.subject_id.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        assessed,
        vec![
            (SubjectType::Signup as i32, "s-1".to_string()),
            (SubjectType::Conversion as i32, "c-1".to_string())
        ]
    );
    let Some(Payload::FraudAssessed(conv)) = events[1].payload.as_ref() else {
        unreachable!()
    };
    let conv = conv.assessment.as_ref().unwrap();
    let speed = conv
        .signals
        .iter()
        .find(|s| s.name == "conversion_speed")
        .unwrap();
    assert!(speed.triggered, "90 s from click to conversion: {speed:?}");
    app.stop();
    invite_stop.trigger();
}

/// fraud-svc serves its part of privacy requests (`referral.common.v1.PrivacyService`):
/// internal callers only, members refused, an anonymous call unauthenticated; the export
/// lists the person's assessment, the erasure keeps it under the pseudonym and counts it,
/// and a second erasure counts nothing.
#[tokio::test]
async fn privacy_requests_erase_and_export_the_persons_part() {
    use referral_proto::common::v1::{
        ErasePersonRequest, ExportPersonRequest, PrivacySubject, privacy_service_client::PrivacyServiceClient,
    };
    let app = App::spawn(None).await;
    let service = app.token("invite-svc", Role::Service);
    let mut fraud = app.client().await;
    fraud
        .assess_signup(authed(signup("couple-9", "supplier-9"), &service))
        .await
        .expect("assessed");
    let mut privacy = PrivacyServiceClient::connect(app.addr.clone()).await.unwrap();
    let subject = |pseudonym: &str| PrivacySubject {
        person_id: "couple-9".into(),
        pseudonym: pseudonym.into(),
        ..Default::default()
    };
    let erase = |pseudonym: &str, token: Option<&str>| {
        let msg = ErasePersonRequest {
            request_id: String::new(),
            subject: Some(subject(pseudonym)),
        };
        match token {
            Some(t) => authed(msg, t),
            None => Request::new(msg),
        }
    };
    let export = |token: &str| {
        authed(
            ExportPersonRequest {
                request_id: String::new(),
                subject: Some(subject("")),
            },
            token,
        )
    };
    let member = app.token("couple-9", Role::Member);
    let refused = privacy.export_person(export(&member)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let anonymous = privacy.erase_person(erase("", None)).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let bad = privacy
        .erase_person(erase("not-ours", Some(&service)))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let exported = privacy
        .export_person(export(&service))
        .await
        .expect("export")
        .into_inner();
    let doc: serde_json::Value = serde_json::from_str(&exported.document_json).expect("JSON");
    assert_eq!(doc["assessments"][0]["yourRole"], "referee", "{doc}");
    assert_eq!(doc["assessments"][0]["decision"], "APPROVE", "{doc}");
    assert!(!exported.document_json.contains("couple-9@example.com"));
    let receipt = exported.receipt.expect("a receipt");
    assert_eq!(
        (receipt.service.as_str(), receipt.counts.get("assessments")),
        ("fraud-svc", Some(&1))
    );

    let erased = privacy
        .erase_person(erase("", Some(&service)))
        .await
        .expect("erase")
        .into_inner();
    assert_eq!(erased.counts.get("assessments"), Some(&1), "{erased:?}");
    assert!(erased.completed_at.is_some());
    let again = privacy
        .erase_person(erase("", Some(&service)))
        .await
        .expect("again")
        .into_inner();
    assert!(again.counts.values().all(|n| *n == 0), "{again:?}");
    app.stop();
}
