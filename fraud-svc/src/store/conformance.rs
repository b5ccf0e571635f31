//! The store conformance suite: one set of cases, written once against the `Store` trait,
//! run on SQLite always (a fresh file per test) and on Postgres when `TEST_DATABASE_URL` is
//! set (a fresh schema per test). Cases check the outbox too: exactly the expected events,
//! numbered 1..=n with no gaps, each with a unique id.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use referral_common::{
    audit::{Actor, AuditEntry, AuditQuery, AuditStore, action},
    events as common_events, ids,
    outbox::EventLogStore,
};
use referral_proto::{
    common::v1::FraudAction,
    events::v1::{Event, FraudAssessed, InvitationCreated, InvitationFacts, SignupRecorded, event::Payload},
    fraud::v1::{Assessment, SubjectType},
    invite::v1::InvitationStatus,
};
use referral_test_support::{ConformanceStore, TestDb};
use sqlx::{PgPool, SqlitePool};

use super::{PgStore, ResolveOutcome, SqliteStore, Store};
use crate::{
    app::{
        apply_invite_events::{self as consumers, Consumed, Work, apply_batch},
        assess_subject::{
            AssessInput, Assessed, ConversionQuestion, SignupQuestion, assess_once, conversion_input,
            signup_input,
        },
    },
    domain::{Scoring, SubjectKind, identity, rules, signals},
    store::convert,
    store::events as fraud_events,
};

// ---- harness -------------------------------------------------------------------------

/// A store plus the raw event log behind its outbox.
trait Harness: Store {
    type Log: EventLogStore + AuditStore;
    fn log(&self) -> Self::Log;
}

impl Harness for SqliteStore {
    type Log = SqlitePool;
    fn log(&self) -> SqlitePool {
        self.pool().clone()
    }
}

impl Harness for PgStore {
    type Log = PgPool;
    fn log(&self) -> PgPool {
        self.pool().clone()
    }
}

referral_test_support::conformance_stores! {
    "fraud": SqliteStore, PgStore;
    ready(store) { store.migrate().await.expect("migrate the store") }
}

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 4;
    lookalike_signups_escalate: sqlite_lookalike_signups_escalate, pg_lookalike_signups_escalate;
    repeated_questions_get_the_first_answer: sqlite_repeated_questions_get_the_first_answer, pg_repeated_questions_get_the_first_answer;
    windows_slide: sqlite_windows_slide, pg_windows_slide;
    invitation_hard_rules: sqlite_invitation_hard_rules, pg_invitation_hard_rules;
    a_supplier_importing_clients_is_approved: sqlite_a_supplier_importing_clients_is_approved, pg_a_supplier_importing_clients_is_approved;
    self_referral: sqlite_self_referral, pg_self_referral;
    conversions: sqlite_conversions, pg_conversions;
    rings_merge: sqlite_rings_merge, pg_rings_merge;
    a_ring_raises_every_members_score: sqlite_a_ring_raises_every_members_score, pg_a_ring_raises_every_members_score;
    cases_list_and_resolve: sqlite_cases_list_and_resolve, pg_cases_list_and_resolve;
    consumed_events_apply_once: sqlite_consumed_events_apply_once, pg_consumed_events_apply_once;
    concurrent_assessments_are_serialised: sqlite_concurrent_assessments_are_serialised, pg_concurrent_assessments_are_serialised;
    writes_race_consumed_events_and_resolutions: sqlite_writes_race_consumed_events_and_resolutions, pg_writes_race_consumed_events_and_resolutions;
    a_failed_write_leaves_nothing: sqlite_a_failed_write_leaves_nothing, pg_a_failed_write_leaves_nothing;
}

// ---- fixtures ------------------------------------------------------------------------

const PUBLIC_IP: &str = "203.0.113.7";

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid instant")
}

fn minutes(m: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(m)
}

struct Signup<'a> {
    user: &'a str,
    referrer: &'a str,
    email: &'a str,
    name: &'a str,
    ip: &'a str,
    device: &'a str,
    at: DateTime<Utc>,
}

impl Default for Signup<'_> {
    fn default() -> Self {
        Signup {
            user: "",
            referrer: "",
            email: "",
            name: "",
            ip: "",
            device: "",
            at: t0(),
        }
    }
}

fn signup(s: Signup<'_>) -> AssessInput {
    signup_input(SignupQuestion {
        signup_id: format!("signup-{}", s.user),
        user_id: s.user.into(),
        referrer_id: s.referrer.into(),
        // Fixtures: an empty (or invalid) address means none given.
        email: identity::normalize_email(s.email).unwrap_or_default(),
        name: identity::normalize_name(s.name),
        ip: s.ip.into(),
        device_id: s.device.into(),
        occurred_at: s.at,
        click_at: None,
    })
}

fn invitation(id: &str, referrer: &str, email: &str, device: &str, at: DateTime<Utc>) -> AssessInput {
    // Fixtures: an empty (or invalid) address means none given.
    let email = identity::normalize_email(email).unwrap_or_default();
    AssessInput {
        assessment_id: ids::new_id(),
        kind: SubjectKind::Invitation,
        subject_id: id.into(),
        dedupe_key: id.into(),
        referrer_id: referrer.into(),
        referee_id: String::new(),
        recipient_key: identity::recipient_key(&referral_common::pii::PiiKeys::for_tests(), &email, ""),
        email,
        name: String::new(),
        ip: String::new(),
        device_id: device.into(),
        occurred_at: at,
        click_at: None,
    }
}

fn conversion(
    id: &str,
    user: &str,
    referrer: &str,
    click: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> AssessInput {
    conversion_input(ConversionQuestion {
        conversion_id: id.into(),
        user_id: user.into(),
        referrer_id: referrer.into(),
        ip: String::new(),
        device_id: String::new(),
        occurred_at: at,
        click_at: click,
    })
}

async fn assess<S: Store>(store: &S, input: AssessInput) -> Assessed {
    assess_once(store, &Scoring::default(), input)
        .await
        .expect("assess")
}

async fn decide<S: Store>(store: &S, input: AssessInput) -> Assessment {
    let a = assess(store, input).await;
    assert!(a.fresh, "a new question");
    convert::assessment(&a.row).expect("the stored assessment reads back")
}

fn action(a: &Assessment) -> FraudAction {
    FraudAction::try_from(a.action).expect("known action")
}

fn fired(a: &Assessment) -> Vec<String> {
    a.signals
        .iter()
        .filter(|s| s.triggered)
        .map(|s| s.name.clone())
        .collect()
}

fn rule_names(a: &Assessment) -> Vec<String> {
    a.rules.iter().map(|r| r.name.clone()).collect()
}

// ---- the event log -------------------------------------------------------------------

/// Every event in the log: numbers what is committed, then checks offsets are exactly
/// 1..=n and event ids unique.
async fn log_events<S: Harness>(store: &S) -> Vec<Event> {
    let log = store.log();
    let head = log.assign_offsets().await.expect("assign_offsets");
    let rows = log.read_after(0, 10_000).await.expect("read_after");
    assert_eq!(rows.len() as i64, head, "the head offset is the number of events");
    let mut seen = HashSet::new();
    rows.iter()
        .enumerate()
        .map(|(i, (offset, bytes))| {
            assert_eq!(*offset, i as i64 + 1, "offsets are 1..=n without gaps");
            let event = common_events::decode(bytes, *offset).expect("decodable event");
            assert!(seen.insert(event.id.clone()), "event id {} is unique", event.id);
            assert_eq!(event.source, fraud_events::SOURCE);
            assert!(event.occurred_at.is_some(), "events carry their time");
            event
        })
        .collect()
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(common_events::event_type).collect()
}

fn assessed_payload(event: &Event) -> &Assessment {
    match event.payload.as_ref() {
        Some(Payload::FraudAssessed(FraudAssessed { assessment: Some(a) })) => a,
        other => panic!("not a FraudAssessed: {other:?}"),
    }
}

// ---- cases ---------------------------------------------------------------------------

/// Twelve signups a minute apart from one IP with near-identical addresses: the early ones
/// APPROVE, the middle REVIEW, the last REJECT (hand-computed in the domain tests), each
/// REVIEW / REJECT opens a case, each assessment is one FraudAssessed event.
async fn lookalike_signups_escalate<S: Harness>(store: &S) {
    let mut actions = Vec::new();
    let mut scores = Vec::new();
    for i in 1..=12 {
        let user = format!("anna-{i}");
        let email = format!("anna.smith{i}@example.com");
        let a = decide(
            store,
            signup(Signup {
                user: &user,
                referrer: "ref-anna",
                email: &email,
                ip: PUBLIC_IP,
                at: minutes(i),
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(a.signals.len(), 7, "every signal is listed");
        assert_eq!(a.case_id.is_empty(), action(&a) == FraudAction::Approve);
        assert_eq!(a.referee_id, user);
        assert_eq!(a.subject_id, format!("signup-{user}"));
        if i == 12 {
            assert_eq!(
                fired(&a),
                vec![
                    "velocity",
                    "similarity",
                    "ip_cluster",
                    "timing_regularity",
                    "fraud_ring"
                ]
            );
            let cluster = a.cluster.as_ref().expect("a ring snapshot");
            assert_eq!(cluster.size, 12);
            assert_eq!(cluster.links, vec![format!("ip:{PUBLIC_IP}")]);
        }
        actions.push(action(&a));
        scores.push(a.score);
    }
    use FraudAction::{Approve as A, Reject as X, Review as R};
    assert_eq!(actions, vec![A, A, A, A, R, R, R, R, R, R, X, X]);
    // #11 and #12: velocity + similarity + IP + timing + the ring of 11 and 12 (> 10), capped.
    assert_eq!(
        scores,
        vec![0.0, 0.25, 0.25, 0.25, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 1.0, 1.0]
    );

    let open = store
        .list_cases(Some("OPEN"), None, None, 100)
        .await
        .expect("list");
    assert_eq!(open.len(), 8);
    assert!(
        open.iter()
            .all(|c| c.referrer_id == "ref-anna" && c.subject_type == "SIGNUP")
    );

    let events = log_events(store).await;
    assert_eq!(types(&events), vec!["fraud.assessed"; 12]);
    let last = assessed_payload(&events[11]);
    assert_eq!(last.subject_type, SubjectType::Signup as i32);
    assert_eq!(last.action, FraudAction::Reject as i32);
    assert_eq!(events[11].aggregate_id, "signup-anna-12");
}

async fn repeated_questions_get_the_first_answer<S: Harness>(store: &S) {
    let first = assess(
        store,
        signup(Signup {
            user: "u1",
            referrer: "r1",
            email: "sam@example.com",
            ..Default::default()
        }),
    )
    .await;
    assert!(first.fresh);
    // The same user again (a retry, or the event log after a synchronous answer).
    let again = assess(
        store,
        signup(Signup {
            user: "u1",
            referrer: "r1",
            email: "other@example.com",
            at: minutes(5),
            ..Default::default()
        }),
    )
    .await;
    assert!(!again.fresh);
    assert_eq!(again.row, first.row);
    let inv = assess(store, invitation("inv-1", "r1", "x@example.com", "", t0())).await;
    let inv_again = assess(store, invitation("inv-1", "r1", "x@example.com", "", t0())).await;
    assert!(inv.fresh && !inv_again.fresh);
    assert_eq!(inv_again.row.id, inv.row.id);
    // Without an id nothing can match: each question is answered.
    let anon1 = assess(store, invitation("", "r1", "y@example.com", "", t0())).await;
    let anon2 = assess(store, invitation("", "r1", "y@example.com", "", t0())).await;
    assert!(anon1.fresh && anon2.fresh);
    let found = store
        .find_assessment(SubjectKind::Signup, "user:u1")
        .await
        .expect("find");
    assert_eq!(found.map(|r| r.id), Some(first.row.id.clone()));
    assert_eq!(
        store
            .get_assessment(&inv.row.id)
            .await
            .expect("get")
            .map(|r| r.id),
        Some(inv.row.id)
    );
    let events = log_events(store).await;
    assert_eq!(events.len(), 4, "one event per answered question");
}

/// Velocity counts 24 h, IP clustering 7 days: older signups fall out of the windows.
async fn windows_slide<S: Harness>(store: &S) {
    // Eleven signups two days ago (distinct people, distinct hours: no similarity, no timing).
    let names = [
        "olivia", "jack", "amelia", "harry", "isla", "oscar", "ava", "george", "mia", "noah", "lily",
    ];
    let start = t0() - Duration::days(2);
    for (i, n) in names.iter().enumerate() {
        let a = decide(
            store,
            signup(Signup {
                user: n,
                referrer: "r-slide",
                email: &format!("{n}@example.com"),
                ip: &format!("198.51.100.{i}"),
                at: start + Duration::minutes((i * i * 7) as i64),
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(action(&a), FraudAction::Approve, "{n}: {:?}", fired(&a));
    }
    // Now: the old ones are outside 24 h, so velocity sees one.
    let now = decide(
        store,
        signup(Signup {
            user: "sophia",
            referrer: "r-slide",
            email: "sophia@example.com",
            at: t0(),
            ..Default::default()
        }),
    )
    .await;
    let velocity = now
        .signals
        .iter()
        .find(|s| s.name == signals::VELOCITY)
        .expect("velocity");
    assert_eq!((velocity.value, velocity.triggered), (1.0, false));
    // Five referees from one IP, the first eight days ago: only four are inside 7 days.
    for (i, n) in ["p1", "p2", "p3", "p4", "p5"].iter().enumerate() {
        let at = if i == 0 {
            t0() - Duration::days(8)
        } else {
            t0() + Duration::hours(i as i64 * 5)
        };
        let a = decide(
            store,
            signup(Signup {
                user: n,
                referrer: "r-ip",
                email: &format!("{}@example.org", names[i]),
                ip: PUBLIC_IP,
                at,
                ..Default::default()
            }),
        )
        .await;
        let ip = a
            .signals
            .iter()
            .find(|s| s.name == signals::IP_CLUSTER)
            .expect("ip");
        let want = if i == 0 { 1.0 } else { i as f64 };
        assert_eq!(ip.value, want, "{n}");
        assert!(!ip.triggered);
    }
}

async fn invitation_hard_rules<S: Harness>(store: &S) {
    // One recipient, four different referrers in 30 days: the fourth is refused. The same
    // referrer inviting again does not count twice.
    for (i, referrer) in ["r1", "r2", "r2", "r3"].iter().enumerate() {
        let a = decide(
            store,
            invitation(
                &format!("inv-{i}"),
                referrer,
                "popular@example.com",
                "",
                minutes(i as i64),
            ),
        )
        .await;
        assert_eq!(action(&a), FraudAction::Approve, "{referrer}");
        assert_eq!(a.score, 0.0);
        assert!(a.signals.iter().all(|s| s.weight == 0.0), "hygiene only");
    }
    let fourth = decide(
        store,
        invitation("inv-4", "r4", "Popular@Example.com", "", minutes(5)),
    )
    .await;
    assert_eq!(action(&fourth), FraudAction::Reject);
    assert_eq!(rule_names(&fourth), vec![rules::RECIPIENT_INVITED_BY_MANY]);
    assert!(!fourth.case_id.is_empty(), "a REJECT opens a case");
    // Thirty-one days later the window has moved on.
    let later = decide(
        store,
        invitation("inv-5", "r5", "popular@example.com", "", minutes(60 * 24 * 31)),
    )
    .await;
    assert_eq!(action(&later), FraudAction::Approve);
    // A disposable address is refused with the rule named.
    let throwaway = decide(store, invitation("inv-6", "r1", "x@mailinator.com", "", t0())).await;
    assert_eq!(action(&throwaway), FraudAction::Reject);
    assert_eq!(rule_names(&throwaway), vec![rules::DISPOSABLE_RECIPIENT]);
    let case = store
        .get_case(&throwaway.case_id)
        .await
        .expect("get")
        .expect("a case");
    assert_eq!(
        (case.state.as_str(), case.subject_type.as_str()),
        ("OPEN", "INVITATION")
    );
    assert_eq!(case.subject_id, "inv-6");
}

/// 150 real past clients from one supplier's laptop, in two batches: all approved. The same
/// device then acting for another account is a flood.
async fn a_supplier_importing_clients_is_approved<S: Harness>(store: &S) {
    for i in 0..150 {
        let a = decide(
            store,
            invitation(
                &format!("imp-{i}"),
                "photographer",
                &format!("client{i}@example.com"),
                "laptop",
                t0(),
            ),
        )
        .await;
        assert_eq!(action(&a), FraudAction::Approve, "client {i}: {:?}", a.rules);
        if i == 149 {
            let device = a
                .signals
                .iter()
                .find(|s| s.name == signals::DEVICE_INVITATIONS)
                .expect("device");
            assert_eq!(device.value, 150.0);
        }
    }
    let other = decide(
        store,
        invitation("imp-x", "second-account", "new@example.com", "laptop", t0()),
    )
    .await;
    assert_eq!(action(&other), FraudAction::Reject);
    assert_eq!(rule_names(&other), vec![rules::DEVICE_INVITATION_FLOOD]);
    let cases = store.list_cases(None, None, None, 500).await.expect("list");
    assert_eq!(cases.len(), 1, "only the flood opened a case");
}

async fn self_referral<S: Harness>(store: &S) {
    // A couple signs up through their own code.
    let own = decide(
        store,
        signup(Signup {
            user: "couple-1",
            referrer: "couple-1",
            email: "us@example.com",
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(action(&own), FraudAction::Reject);
    assert_eq!(rule_names(&own), vec![rules::SELF_REFERRAL]);
    assert!(!own.case_id.is_empty());
    // The referrer's own device (seen on their invitations) signing up a "new" user.
    decide(
        store,
        invitation("inv-d", "supplier-1", "client@example.com", "dev-supplier", t0()),
    )
    .await;
    let same_device = decide(
        store,
        signup(Signup {
            user: "sockpuppet",
            referrer: "supplier-1",
            email: "fresh@example.com",
            device: "dev-supplier",
            at: minutes(1),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(rule_names(&same_device), vec![rules::SELF_REFERRAL]);
    assert!(same_device.rules[0].detail.contains("dev-supplier"));
    // The referrer's own e-mail (from their own signup as someone's referee).
    decide(
        store,
        signup(Signup {
            user: "supplier-2",
            referrer: "someone",
            email: "owner+x@biz.example",
            ..Default::default()
        }),
    )
    .await;
    let same_email = decide(
        store,
        signup(Signup {
            user: "alt",
            referrer: "supplier-2",
            email: "owner@biz.example",
            at: minutes(2),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(rule_names(&same_email), vec![rules::SELF_REFERRAL]);
    let invite_self = decide(
        store,
        invitation("inv-self", "supplier-2", "owner@biz.example", "", t0()),
    )
    .await;
    assert_eq!(rule_names(&invite_self), vec![rules::SELF_REFERRAL]);
    // Someone else entirely is fine.
    let fine = decide(
        store,
        signup(Signup {
            user: "real",
            referrer: "supplier-2",
            email: "someone.else@example.com",
            device: "dev-real",
            at: minutes(3),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(action(&fine), FraudAction::Approve);
}

async fn conversions<S: Harness>(store: &S) {
    decide(
        store,
        signup(Signup {
            user: "buyer",
            referrer: "r-conv",
            email: "buyer@mailinator.com",
            ip: PUBLIC_IP,
            ..Default::default()
        }),
    )
    .await;
    // Two minutes from click to conversion: the speed signal, plus the disposable address
    // the referee signed up with.
    let fast = decide(
        store,
        conversion("conv-1", "buyer", "r-conv", Some(minutes(10)), minutes(12)),
    )
    .await;
    assert_eq!(fast.subject_type, SubjectType::Conversion as i32);
    assert_eq!(fired(&fast), vec!["conversion_speed", "disposable_email"]);
    let speed = fast
        .signals
        .iter()
        .find(|s| s.name == signals::CONVERSION_SPEED)
        .expect("speed");
    // The threshold is the domain's default (its own test pins the number).
    let threshold = crate::domain::CONVERSION_SPEED_MIN.num_seconds() as f64;
    assert_eq!((speed.value, speed.threshold), (120.0, threshold));
    assert_eq!((fast.score, action(&fast)), (0.35, FraudAction::Approve));
    let slow = decide(
        store,
        conversion("conv-2", "buyer", "r-conv", Some(minutes(10)), minutes(40)),
    )
    .await;
    assert_eq!(fired(&slow), vec!["disposable_email"]);
    let again = assess(store, conversion("conv-2", "buyer", "r-conv", None, minutes(41))).await;
    assert!(!again.fresh);
}

async fn rings_merge<S: Harness>(store: &S) {
    // a: ip X; b: device D; c: ip X and device D joins them; d stays apart.
    for (user, ip, device) in [
        ("a", PUBLIC_IP, ""),
        ("b", "", "dev-D"),
        ("c", PUBLIC_IP, "dev-D"),
        ("d", "198.51.100.1", "dev-E"),
    ] {
        decide(
            store,
            signup(Signup {
                user,
                referrer: &format!("ref-of-{user}"),
                email: &format!("{user}@example.com"),
                ip,
                device,
                ..Default::default()
            }),
        )
        .await;
    }
    let ring = store.cluster_of("a", 10).await.expect("cluster").expect("a ring");
    assert_eq!(ring.size, 3);
    let members: Vec<&str> = ring.members.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(members, vec!["a", "b", "c"]);
    assert!(ring.members.iter().all(|(_, role)| role == super::REFEREE));
    assert!(ring.links.contains(&format!("ip:{PUBLIC_IP}")));
    assert!(ring.links.contains(&"device:dev-D".to_string()));
    for other in ["b", "c"] {
        let theirs = store.cluster_of(other, 10).await.expect("cluster").expect("ring");
        assert_eq!(theirs.id, ring.id, "{other} is in the same ring");
    }
    let apart = store.cluster_of("d", 10).await.expect("cluster").expect("ring");
    assert_ne!(apart.id, ring.id);
    assert_eq!(apart.size, 1);
    // Private addresses link nobody (everyone behind our own proxy would be one ring).
    for user in ["p", "q"] {
        decide(
            store,
            signup(Signup {
                user,
                referrer: "ref-private",
                ip: "10.0.0.1",
                ..Default::default()
            }),
        )
        .await;
    }
    assert!(store.cluster_of("p", 10).await.expect("cluster").is_none());
    // A member listed is capped, the size is not.
    let capped = store.cluster_of("a", 2).await.expect("cluster").expect("ring");
    assert_eq!((capped.size, capped.members.len()), (3, 2));
}

/// A ring above the limit (10) raises the score of every member's later assessments, e.g.
/// the conversions of referees whose signups were approved.
async fn a_ring_raises_every_members_score<S: Harness>(store: &S) {
    // Eleven people of different referrers share one device (no referrer windows fire).
    for i in 0..11 {
        let user = format!("m{i}");
        let a = decide(
            store,
            signup(Signup {
                user: &user,
                referrer: &format!("ref-{i}"),
                email: &format!(
                    "{}@example.com",
                    [
                        "k", "lo", "mum", "nora", "ove", "pia", "quin", "rex", "sol", "tia", "uma"
                    ][i]
                ),
                device: "shared-phone",
                at: minutes(i as i64),
                ..Default::default()
            }),
        )
        .await;
        let ring = a
            .signals
            .iter()
            .find(|s| s.name == signals::FRAUD_RING)
            .expect("ring");
        assert_eq!(ring.value, (i + 1) as f64);
        assert_eq!(ring.triggered, i == 10, "size {} > 10 fires", i + 1);
    }
    let later = decide(store, conversion("conv-m0", "m0", "ref-0", None, minutes(60))).await;
    assert_eq!(fired(&later), vec!["fraud_ring"]);
    assert_eq!(later.score, 0.2);
}

async fn cases_list_and_resolve<S: Harness>(store: &S) {
    let mut case_ids = Vec::new();
    // Self-referrals: REJECT, a case each.
    for (i, referrer) in ["ra", "rb"].iter().enumerate() {
        let a = decide(
            store,
            signup(Signup {
                user: referrer,
                referrer,
                at: minutes(i as i64),
                ..Default::default()
            }),
        )
        .await;
        case_ids.push(a.case_id);
    }
    for i in 0..3 {
        let a = decide(
            store,
            invitation(
                &format!("bad-{i}"),
                "rc",
                &format!("x{i}@mailinator.com"),
                "",
                t0(),
            ),
        )
        .await;
        case_ids.push(a.case_id);
    }
    // Pages of two: stable, no duplicates, no gaps.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_cases(Some("OPEN"), None, after.as_deref(), 2)
            .await
            .expect("list");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|c| c.id.clone());
        seen.extend(page.into_iter().map(|c| c.id));
    }
    let mut want = case_ids.clone();
    want.sort();
    assert_eq!(seen, want);
    let only_rc = store.list_cases(None, Some("rc"), None, 10).await.expect("list");
    assert_eq!(only_rc.len(), 3);

    let id = &case_ids[0];
    let resolved = match store
        .resolve_case(id, "APPROVE", "known customer", &by("admin-1", id), minutes(30))
        .await
        .expect("resolve")
    {
        ResolveOutcome::Resolved(row) => row,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (
            resolved.state.as_str(),
            resolved.decision.as_str(),
            resolved.resolved_by.as_str()
        ),
        ("RESOLVED", "APPROVE", "admin-1")
    );
    match store
        .resolve_case(id, "REJECT", "", &by("admin-2", id), minutes(31))
        .await
        .expect("resolve")
    {
        ResolveOutcome::AlreadyResolved(row) => assert_eq!(row.decision, "APPROVE"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store
            .resolve_case("nope", "APPROVE", "", &by("a", "nope"), t0())
            .await
            .expect("resolve"),
        ResolveOutcome::NotFound
    ));
    let stored = store.get_case(id).await.expect("get").expect("case");
    assert_eq!(stored.note, "known customer");
    // The resolution committed with its audit row; the refused ones wrote none.
    let audit = store
        .log()
        .list_audit(&AuditQuery {
            page_size: 50,
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
        .entries;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let json = |v: &Option<pbjson_types::Value>| serde_json::to_value(v).unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].subject_id.as_str()),
        ("fraud_case.resolve", id.as_str())
    );
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].note.as_str()),
        ("admin-1", "known customer")
    );
    assert_eq!(
        json(&audit[0].before),
        serde_json::json!({"state": "OPEN", "decision": ""})
    );
    assert_eq!(json(&audit[0].after)["state"], "RESOLVED");
    assert_eq!(json(&audit[0].after)["decision"], "APPROVE");
    assert_eq!(stored.resolved_at, Some(minutes(30)));
    assert_eq!(
        store
            .list_cases(Some("OPEN"), None, None, 50)
            .await
            .expect("list")
            .len(),
        4
    );
    assert_eq!(
        store
            .list_cases(Some("RESOLVED"), None, None, 50)
            .await
            .expect("list")
            .len(),
        1
    );

    let events = log_events(store).await;
    let last = events.last().expect("events");
    match last.payload.as_ref() {
        Some(Payload::FraudResolved(r)) => {
            assert_eq!(r.case_id, *id);
            assert_eq!(r.decision, FraudAction::Approve as i32);
            assert_eq!(r.note, "known customer");
            assert_eq!(r.subject_type, SubjectType::Signup as i32);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        types(&events).iter().filter(|t| **t == "fraud.resolved").count(),
        1
    );
}

fn invite_event(payload: Payload, offset: i64) -> Event {
    let mut e = common_events::new_event("invite", "agg", t0(), payload);
    e.offset = offset;
    e
}

async fn consumed_events_apply_once<S: Harness>(store: &S) {
    let scoring = Scoring::default();
    let pending_invitation = invite_event(
        Payload::InvitationCreated(InvitationCreated {
            invitation: Some(InvitationFacts {
                invitation_id: "inv-away".into(),
                referrer_id: "r-away".into(),
                created_at: Some(ids::to_ts(t0())),
                ..Default::default()
            }),
            status: InvitationStatus::PendingReview as i32,
            recipient_key: identity::recipient_key(
                &referral_common::pii::PiiKeys::for_tests(),
                "someone@example.com",
                "",
            ),
            device_id: "dev-away".into(),
            ..Default::default()
        }),
        1,
    );
    let pending_signup = invite_event(
        Payload::SignupRecorded(SignupRecorded {
            signup_id: "s-away".into(),
            user_id: "u-away".into(),
            attributed: true,
            referrer_id: "r-away".into(),
            at: Some(ids::to_ts(minutes(1))),
            ip: PUBLIC_IP.into(),
            device_id: "dev-u".into(),
            ..Default::default()
        }),
        2,
    );
    let unattributed = invite_event(
        Payload::SignupRecorded(SignupRecorded {
            signup_id: "s-plain".into(),
            user_id: "u-plain".into(),
            at: Some(ids::to_ts(minutes(2))),
            ip: PUBLIC_IP.into(),
            ..Default::default()
        }),
        3,
    );
    let batch = |events: &[Event]| -> Vec<Consumed> {
        events
            .iter()
            .map(|e| Consumed {
                event_id: e.id.clone(),
                offset: e.offset,
                work: consumers::work_for(e),
            })
            .collect()
    };
    let events = [pending_invitation, pending_signup, unattributed];
    let summary = apply_batch(store, &scoring, "invite", batch(&events))
        .await
        .expect("apply");
    assert_eq!((summary.applied, summary.assessed, summary.duplicates), (3, 2, 0));
    assert_eq!(store.last_offset("invite").await.expect("offset"), 3);
    // Delivered again (a reconnect replays from an older offset): nothing happens twice.
    let again = apply_batch(store, &scoring, "invite", batch(&events))
        .await
        .expect("apply");
    assert_eq!((again.applied, again.assessed, again.duplicates), (0, 0, 3));
    assert_eq!(store.last_offset("invite").await.expect("offset"), 3);
    // The unattributed signup shares the referee's IP: one ring.
    let ring = store
        .cluster_of("u-plain", 10)
        .await
        .expect("cluster")
        .expect("ring");
    assert_eq!(ring.size, 2);
    // An invitation already assessed synchronously is not assessed again from the log.
    decide(store, invitation("inv-sync", "r-sync", "a@example.com", "", t0())).await;
    let sync_created = invite_event(
        Payload::InvitationCreated(InvitationCreated {
            invitation: Some(InvitationFacts {
                invitation_id: "inv-sync".into(),
                referrer_id: "r-sync".into(),
                ..Default::default()
            }),
            status: InvitationStatus::PendingReview as i32,
            ..Default::default()
        }),
        4,
    );
    let s = apply_batch(store, &scoring, "invite", batch(&[sync_created]))
        .await
        .expect("apply");
    assert_eq!((s.applied, s.assessed), (1, 0));
    assert_eq!(store.last_offset("invite").await.expect("offset"), 4);
    let assessed = log_events(store).await;
    assert_eq!(types(&assessed), vec!["fraud.assessed"; 3]);
    let subjects: Vec<(i32, String)> = assessed
        .iter()
        .map(|e| {
            let a = assessed_payload(e);
            (a.subject_type, a.subject_id.clone())
        })
        .collect();
    assert_eq!(
        subjects,
        vec![
            (SubjectType::Invitation as i32, "inv-away".to_string()),
            (SubjectType::Signup as i32, "s-away".to_string()),
            (SubjectType::Invitation as i32, "inv-sync".to_string()),
        ]
    );
    // Work that only observes stays out of the log; an empty batch is a no-op.
    let none = apply_batch(store, &scoring, "invite", vec![])
        .await
        .expect("apply");
    assert_eq!(none, consumers::ApplySummary::default());
    let nothing = Consumed {
        event_id: ids::new_id(),
        offset: 9,
        work: Work::Nothing,
    };
    apply_batch(store, &scoring, "invite", vec![nothing])
        .await
        .expect("apply");
    assert_eq!(store.last_offset("invite").await.expect("offset"), 9);
}

/// Assessments of one referrer racing each other each see a different window: the counts
/// are exactly 1..=n, never two "10"s.
async fn concurrent_assessments_are_serialised<S: Harness>(store: &S) {
    const N: usize = 12;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let user = format!("racer-{i}");
                let email = format!("racer{i}@example.com");
                let a = assess(
                    &store,
                    signup(Signup {
                        user: &user,
                        referrer: "r-race",
                        email: &email,
                        at: t0(),
                        ..Default::default()
                    }),
                )
                .await;
                let a = convert::assessment(&a.row).expect("the stored assessment reads back");
                a.signals
                    .iter()
                    .find(|s| s.name == signals::VELOCITY)
                    .map(|s| s.value as usize)
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.expect("task"));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=N).collect::<Vec<_>>());
    assert_eq!(log_events(store).await.len(), N);
}

/// Assessments, consumed-event batches and case resolutions racing each other all land, each
/// exactly once, and the log stays numbered without gaps.
async fn writes_race_consumed_events_and_resolutions<S: Harness>(store: &S) {
    const N: usize = 8;
    let scoring = Scoring::default();
    // Self-referrals: REJECT, a case each, to resolve while the rest runs.
    let mut cases = Vec::new();
    for i in 0..N {
        let user = format!("selfish-{i}");
        let a = decide(
            store,
            signup(Signup {
                user: &user,
                referrer: &user,
                at: minutes(i as i64),
                ..Default::default()
            }),
        )
        .await;
        cases.push(a.case_id);
    }
    let mut tasks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (resolver, case) = (store.clone(), case.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = resolver
                .resolve_case(&case, "APPROVE", "", &by("admin", &case), minutes(60))
                .await
                .expect("resolve");
            assert!(
                matches!(outcome, ResolveOutcome::Resolved(_)),
                "case {i}: {outcome:?}"
            );
        }));
        let assessor = store.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("direct-{i}");
            let email = format!("direct{i}@example.com");
            assess(
                &assessor,
                signup(Signup {
                    user: &user,
                    referrer: "r-busy",
                    email: &email,
                    at: minutes(i as i64),
                    ..Default::default()
                }),
            )
            .await;
        }));
        let (consumer, scoring) = (store.clone(), scoring.clone());
        tasks.push(tokio::spawn(async move {
            let event = invite_event(
                Payload::SignupRecorded(SignupRecorded {
                    signup_id: format!("s-consumed-{i}"),
                    user_id: format!("consumed-{i}"),
                    attributed: true,
                    referrer_id: "r-busy".into(),
                    at: Some(ids::to_ts(minutes(i as i64))),
                    ..Default::default()
                }),
                i as i64 + 1,
            );
            let item = Consumed {
                event_id: event.id.clone(),
                offset: event.offset,
                work: consumers::work_for(&event),
            };
            let summary = apply_batch(&consumer, &scoring, "invite", vec![item])
                .await
                .expect("apply");
            assert_eq!((summary.applied, summary.assessed), (1, 1));
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(store.last_offset("invite").await.expect("offset"), N as i64);
    for case in &cases {
        let row = store.get_case(case).await.expect("get").expect("case");
        assert_eq!(row.state, "RESOLVED");
    }
    // The referrer's window counts every one of the 2N signups, each once.
    let last = decide(
        store,
        signup(Signup {
            user: "direct-last",
            referrer: "r-busy",
            at: minutes(N as i64),
            ..Default::default()
        }),
    )
    .await;
    let velocity = last
        .signals
        .iter()
        .find(|s| s.name == signals::VELOCITY)
        .expect("velocity");
    assert_eq!(velocity.value as usize, 2 * N + 1);
    let events = log_events(store).await;
    let count = |t: &str| types(&events).iter().filter(|x| **x == t).count();
    assert_eq!((count("fraud.assessed"), count("fraud.resolved")), (3 * N + 1, N));
}

/// A write that fails half-way (here: an assessment id already taken, found only at its
/// last inserts) leaves nothing behind, neither through `assess_once` nor `apply_batch`, and the
/// store goes on working.
async fn a_failed_write_leaves_nothing<S: Harness>(store: &S) {
    let scoring = Scoring::default();
    let first = assess(
        store,
        signup(Signup {
            user: "u-first",
            referrer: "r-fail",
            ip: PUBLIC_IP,
            ..Default::default()
        }),
    )
    .await;
    let ring_before = store.cluster_of("u-first", 10).await.expect("cluster");
    let clashing = |user: &str| {
        let mut input = signup(Signup {
            user,
            referrer: "r-fail",
            email: &format!("{user}@example.com"),
            ip: PUBLIC_IP,
            device: "dev-fail",
            at: minutes(1),
            ..Default::default()
        });
        input.assessment_id = first.row.id.clone();
        input
    };
    assess_once(store, &scoring, clashing("u-direct"))
        .await
        .expect_err("the assessment id is taken");
    let event = invite_event(
        Payload::SignupRecorded(SignupRecorded {
            signup_id: "s-ok".into(),
            user_id: "u-ok".into(),
            attributed: true,
            referrer_id: "r-fail".into(),
            at: Some(ids::to_ts(minutes(1))),
            ..Default::default()
        }),
        1,
    );
    let items = vec![
        Consumed {
            event_id: event.id.clone(),
            offset: 1,
            work: consumers::work_for(&event),
        },
        Consumed {
            event_id: ids::new_id(),
            offset: 2,
            work: Work::Assess(Box::new(clashing("u-consumed"))),
        },
    ];
    apply_batch(store, &scoring, "invite", items)
        .await
        .expect_err("the second item fails");
    assert_eq!(
        store.last_offset("invite").await.expect("offset"),
        0,
        "no offset saved"
    );
    for user in ["u-direct", "u-consumed", "u-ok"] {
        let key = format!("user:{user}");
        assert!(
            store
                .find_assessment(SubjectKind::Signup, &key)
                .await
                .expect("find")
                .is_none(),
            "no assessment of {user}"
        );
        assert!(
            store.cluster_of(user, 10).await.expect("cluster").is_none(),
            "no ring for {user}"
        );
    }
    // Only the first assessment's event; the first referee's ring is as it was.
    assert_eq!(types(&log_events(store).await), vec!["fraud.assessed"]);
    assert_eq!(
        store.cluster_of("u-first", 10).await.expect("cluster"),
        ring_before
    );
    // The store still writes, and the referrer's window holds only the first signup.
    let next = decide(
        store,
        signup(Signup {
            user: "u-after",
            referrer: "r-fail",
            at: minutes(2),
            ..Default::default()
        }),
    )
    .await;
    let velocity = next
        .signals
        .iter()
        .find(|s| s.name == signals::VELOCITY)
        .expect("velocity");
    assert_eq!(velocity.value as usize, 2);
}

// ---- SQLite only -----------------------------------------------------------------------

/// Rows an assessment writes read back as written, with timestamps in the exact text sqlx
/// itself writes (SQL compares them as text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writer_rows_match_sqlx() {
    referral_test_support::sqlite(writer_rows_match_sqlx).await;
}

async fn writer_rows_match_sqlx(store: &SqliteStore) {
    // A whole second: sqlx writes no fraction digits then (and 3, 6 or 9 otherwise).
    let at = t0();
    let a = assess(
        store,
        signup(Signup {
            user: "u-text",
            referrer: "r-text",
            at,
            ..Default::default()
        }),
    )
    .await;
    let read = store.get_assessment(&a.row.id).await.expect("get").expect("row");
    assert_eq!(read, a.row);
    let stored: (String, String) =
        sqlx::query_as("SELECT occurred_at, assessed_at FROM assessments WHERE id = $1")
            .bind(&a.row.id)
            .fetch_one(store.pool())
            .await
            .expect("raw row");
    let pool = store.pool().clone();
    let as_sqlx = |t: DateTime<Utc>| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT $1")
                .bind(t)
                .fetch_one(&pool)
                .await
                .expect("sqlx's text")
        }
    };
    assert_eq!(stored.0, as_sqlx(at).await);
    assert_eq!(stored.1, as_sqlx(a.row.assessed_at).await);
}

/// Dropping the last clone of the store, with its pool closed, closes every connection: SQLite
/// removes the WAL file (it does so on the last close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dropped_store_stops_its_writer() {
    let db = TestDb::sqlite(SqliteStore::SERVICE);
    let store = SqliteStore::open(&db).await;
    let clone = store.clone();
    assess(
        &clone,
        signup(Signup {
            user: "u-drop",
            referrer: "r-drop",
            ..Default::default()
        }),
    )
    .await;
    drop(clone);
    let wal = db.dir().expect("a SQLite directory").join("fraud.db-wal");
    assert!(wal.exists(), "the store is open in WAL mode");
    store.pool().close().await;
    drop(store);
    // At once, or after a relay pass already running.
    for _ in 0..100 {
        if !wal.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!wal.exists(), "every connection is closed");
    db.remove().await;
}

/// Every pooled connection would open an in-memory database of its own: one is refused by
/// name rather than silently split in several.
#[tokio::test]
async fn sqlite_in_memory_is_refused() {
    let err = SqliteStore::connect("sqlite::memory:")
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("FRAUD_DATABASE_URL"), "{err}");
}

/// The audit entry a resolver's call carries.
fn by(admin: &str, case: &str) -> AuditEntry {
    let actor = Actor {
        subject: admin.into(),
        role: "admin".into(),
        request_id: None,
    };
    AuditEntry::new(&actor, action::FRAUD_CASE_RESOLVE, "fraud_case", case)
}
