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
    pii::PiiKeys,
};
use referral_proto::{
    common::v1::FraudAction,
    events::v1::{Event, FraudAssessed, InvitationCreated, InvitationFacts, SignupRecorded, event::Payload},
    fraud::v1::{Assessment, SubjectType},
    invite::v1::InvitationStatus,
};
use referral_test_support::{ConformanceStore, TestDb};
use sqlx::{PgPool, SqlitePool};

use super::{PersonKeys, PgStore, ResolveOutcome, SqliteStore, Store};
use crate::{
    app::{
        apply_invite_events::{self as consumers, Consumed, Work, apply_batch},
        assess_subject::{
            AssessInput, Assessed, ConversionQuestion, SignupQuestion, assess_once, conversion_input,
            signup_input,
        },
        privacy, reencrypt,
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
    /// Every text column of every table, as (table, column).
    async fn text_columns(&self) -> Vec<(String, String)>;
    /// How many rows of `table` hold `needle` in `column`.
    async fn rows_holding(&self, table: &str, column: &str, needle: &str) -> i64;
    /// How many rows of every text column of every table hold `needle` (by table.column,
    /// only those that do).
    async fn text_holding(&self, needle: &str) -> Vec<(String, i64)> {
        let columns = self.text_columns().await;
        assert!(columns.len() > 40, "every table's columns: {columns:?}");
        let mut found = Vec::new();
        for (table, column) in columns {
            let n = self.rows_holding(&table, &column, needle).await;
            if n > 0 {
                found.push((format!("{table}.{column}"), n));
            }
        }
        found
    }
    /// Runs statements (fixtures that write rows as an older version did).
    async fn exec(&self, sql: &str);
    /// An instant as a literal the backend stores it as.
    async fn time_text(&self, t: DateTime<Utc>) -> String;
}

/// The harness and the conformance opening of one backend: its store, pool, connect
/// arguments, and the SQL that lists its text columns, counts a needle in one (`{table}`,
/// `{column}` filled in) and prints an instant as it stores it. Opened with the test keys
/// (common's `conformance_stores!` opens a store from its URL alone; fraud-svc's stores need
/// their `PiiKeys`).
macro_rules! harness {
    ($store:ty, $pool:ty, |$db:ident| ($($connect:expr),*), $columns:literal, $count:literal, $time:literal) => {
        impl Harness for $store {
            type Log = $pool;
            fn log(&self) -> $pool {
                self.pool().clone()
            }
            async fn text_columns(&self) -> Vec<(String, String)> {
                sqlx::query_as($columns).fetch_all(self.pool()).await.expect("columns")
            }
            async fn rows_holding(&self, table: &str, column: &str, needle: &str) -> i64 {
                let sql = format!($count, table = table, column = column);
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(needle)
                    .fetch_one(self.pool())
                    .await
                    .expect("count")
            }
            async fn exec(&self, sql: &str) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(self.pool())
                    .await
                    .expect("fixture statement");
            }
            async fn time_text(&self, t: DateTime<Utc>) -> String {
                sqlx::query_scalar($time).bind(t).fetch_one(self.pool()).await.expect("time text")
            }
        }

        impl ConformanceStore for $store {
            const SERVICE: &'static str = "fraud";
            async fn open($db: &TestDb) -> Self {
                let store = <$store>::connect($($connect,)* PiiKeys::for_tests())
                    .await
                    .expect("open the store");
                store.migrate().await.expect("migrate the store");
                store
            }
            async fn close(&self) {
                self.pool().close().await;
            }
        }
    };
}

harness!(
    SqliteStore,
    SqlitePool,
    |db| (db.url()),
    "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND upper(c.type) IN ('TEXT', '')",
    "SELECT COUNT(*) FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS TEXT), $1) > 0",
    "SELECT $1"
);
harness!(
    PgStore,
    PgPool,
    |db| (db.url(), db.schema()),
    "SELECT table_name::text, column_name::text FROM information_schema.columns
     WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying', 'jsonb', 'json')",
    "SELECT COUNT(*) FROM \"{table}\" WHERE strpos(\"{column}\"::text, $1) > 0",
    "SELECT $1::timestamptz::text"
);

/// A lookup hash under the test keys.
fn key(kind: &str, value: &str) -> String {
    PiiKeys::for_tests().lookup(kind, value)
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
    no_plaintext_personal_data_at_rest: sqlite_no_plaintext_personal_data_at_rest, pg_no_plaintext_personal_data_at_rest;
    erase_keeps_decisions_and_forgets_the_person: sqlite_erase_keeps_decisions_and_forgets_the_person, pg_erase_keeps_decisions_and_forgets_the_person;
    export_shows_what_is_held: sqlite_export_shows_what_is_held, pg_export_shows_what_is_held;
    reencrypt_converts_rows_from_before: sqlite_reencrypt_converts_rows_from_before, pg_reencrypt_converts_rows_from_before;
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
        recipient_key: key("email", &email),
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
            assert_eq!(cluster.links, vec![format!("ip:{}", key("ip", PUBLIC_IP))]);
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
    assert_eq!(
        same_device.rules[0].detail,
        "the referee's device is the referrer's own"
    );
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
    // The ring formed from hashed keys: its links are hashes, never the IP or device.
    assert!(ring.links.contains(&format!("ip:{}", key("ip", PUBLIC_IP))));
    assert!(ring.links.contains(&format!("device:{}", key("device", "dev-D"))));
    assert!(
        ring.links
            .iter()
            .all(|l| !l.contains(PUBLIC_IP) && !l.contains("dev-D"))
    );
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
            recipient_key: key("email", "someone@example.com"),
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
    let err = SqliteStore::connect("sqlite::memory:", PiiKeys::for_tests())
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

// ---- privacy (issue #16) -------------------------------------------------------------

/// What one person left in fraud-svc, and the needles that must never be found in plaintext.
const ANNA_EMAIL: &str = "anna.smith@example.com";
const ANNA_IP: &str = "203.0.113.77";
const ANNA_DEVICE: &str = "dev-anna-phone-7";
const ANNA_NAME: &str = "Annabel Smithers";

/// Anna is referred (signup, then a fast conversion), Bella signs up from Anna's IP and
/// device (one ring), a look-alike third referee and an invitation to Anna's address make
/// every rule read her, and a case is resolved with a note.
async fn anna_and_friends<S: Harness>(store: &S) -> (Assessed, Assessed) {
    let anna = assess(
        store,
        signup(Signup {
            user: "u-anna",
            referrer: "ref-priv",
            email: ANNA_EMAIL,
            name: ANNA_NAME,
            ip: ANNA_IP,
            device: ANNA_DEVICE,
            at: minutes(1),
        }),
    )
    .await;
    assess(
        store,
        signup(Signup {
            user: "u-bella",
            referrer: "ref-priv",
            email: "anna.smith2@example.com",
            name: "Annabel Smither",
            ip: ANNA_IP,
            device: ANNA_DEVICE,
            at: minutes(2),
        }),
    )
    .await;
    let conversion = assess(
        store,
        conversion("conv-anna", "u-anna", "ref-priv", Some(minutes(3)), minutes(4)),
    )
    .await;
    assess(
        store,
        invitation("inv-to-anna", "ref-other", ANNA_EMAIL, "dev-other", minutes(5)),
    )
    .await;
    // Anna invites someone from her own device, and her own address (self-referral).
    let own = assess(
        store,
        invitation("inv-by-anna", "u-anna", ANNA_EMAIL, ANNA_DEVICE, minutes(6)),
    )
    .await;
    let case = own
        .row
        .case_id
        .clone()
        .expect("a self-invitation is rejected with a case");
    store
        .resolve_case(
            &case,
            "REJECT",
            "Annabel Smithers invited herself",
            &by("admin-1", &case),
            minutes(7),
        )
        .await
        .expect("resolve");
    (anna, conversion)
}

/// After signups, a conversion and invitations that fired self-referral, IP clustering and
/// similarity, no text column of any table holds the e-mail, its local part, the name, the
/// IP or the device id; the ring still formed, from hashed keys.
async fn no_plaintext_personal_data_at_rest<S: Harness>(store: &S) {
    let (anna, conversion) = anna_and_friends(store).await;
    // The rules still read her: similarity (sealed pairs), the ring (hashed keys), and the
    // conversion filled from her signup's keys and traits.
    let a = convert::assessment(&conversion.row).expect("reads back");
    assert!(
        fired(&a).contains(&"conversion_speed".to_string()),
        "{:?}",
        fired(&a)
    );
    let ring = store
        .cluster_of("u-anna", 10)
        .await
        .expect("cluster")
        .expect("a ring");
    let members: Vec<&str> = ring.members.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(members, vec!["u-anna", "u-bella"]);
    assert!(ring.links.contains(&format!("ip:{}", key("ip", ANNA_IP))));
    assert!(
        ring.links
            .contains(&format!("device:{}", key("device", ANNA_DEVICE)))
    );
    let bella = store
        .find_assessment(SubjectKind::Signup, "user:u-bella")
        .await
        .expect("find")
        .expect("bella");
    let bella = convert::assessment(&bella).expect("reads back");
    assert!(
        fired(&bella).contains(&"similarity".to_string()),
        "{:?}",
        fired(&bella)
    );
    assert!(anna.fresh);
    // The scan sees stored text at all (a needle that is there is found).
    assert!(
        !store.text_holding("u-anna").await.is_empty(),
        "the scan reads every table"
    );
    for needle in [
        ANNA_EMAIL,
        "anna.smith",
        "annabel",
        "Annabel",
        ANNA_IP,
        ANNA_DEVICE,
        "anna.smith2@example.com",
    ] {
        // The reviewer's free-text note is the one place a person typed it in.
        let found: Vec<_> = store
            .text_holding(needle)
            .await
            .into_iter()
            .filter(|(col, _)| col != "cases.note" && !col.starts_with("audit"))
            .collect();
        assert!(found.is_empty(), "{needle:?} in plaintext: {found:?}");
    }
}

fn subject_of<'a>(
    person: &'a str,
    pseudonym: &'a str,
    contacts: &'a [String],
    invitations: &'a [String],
) -> PersonKeys<'a> {
    PersonKeys {
        person_id: person,
        pseudonym,
        contact_keys: contacts,
        invitation_ids: invitations,
    }
}

/// Erasure: her facts lose their keys, her identities, links and ring membership go, her
/// assessments and cases keep their decision, score, level and fired signals under the
/// pseudonym; a second erase counts zeros; Bella's ring and windows lose Anna.
async fn erase_keeps_decisions_and_forgets_the_person<S: Harness>(store: &S) {
    let (anna, _) = anna_and_friends(store).await;
    let pii = PiiKeys::for_tests();
    let anon = pii.pseudonym("u-anna");
    let contacts = vec![key("email", ANNA_EMAIL)];
    let invitations = vec!["inv-to-anna".to_string()];
    let who = subject_of("u-anna", &anon, &contacts, &invitations);
    let before = convert::assessment(&anna.row).expect("reads back");
    let counts = privacy::erase(store, &who).await.expect("erase");
    for kind in [
        "referralFacts",
        "invitationFacts",
        "identities",
        "ringLinks",
        "ringMemberships",
        "assessments",
        "cases",
    ] {
        assert!(counts.get(kind).copied().unwrap_or(0) > 0, "{kind}: {counts:?}");
    }
    let again = privacy::erase(store, &who).await.expect("erase again");
    assert!(again.values().all(|n| *n == 0), "idempotent: {again:?}");
    // The decision stays, under the pseudonym.
    let kept = store
        .get_assessment(&anna.row.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(kept.referee_id, anon);
    assert_eq!(kept.dedupe_key.as_deref(), Some(format!("user:{anon}").as_str()));
    let after = convert::assessment(&kept).expect("reads back");
    assert_eq!(
        (after.score, after.level, after.action),
        (before.score, before.level, before.action)
    );
    assert_eq!(fired(&after), fired(&before));
    // Nothing keyed by her is left to join rings or windows (her device and IP keys stay
    // only where Bella, who used them too, holds them).
    for needle in [key("email", ANNA_EMAIL), "u-anna".to_string()] {
        let found: Vec<_> = store
            .text_holding(&needle)
            .await
            .into_iter()
            .filter(|(col, _)| {
                // Events already sent and audit rows are the event log's and the audit
                // trail's (retention, not erasure). Bella's ring snapshot lists the pseudonym.
                !col.starts_with("outbox") && !col.starts_with("audit")
                    // The fixture's signup ids embed the user id (real ones are UUIDs).
                    && !col.ends_with(".subject_id")
            })
            .collect();
        assert!(found.is_empty(), "{needle:?} left: {found:?}");
    }
    assert!(store.cluster_of("u-anna", 10).await.expect("cluster").is_none());
    let device = store.text_holding(&key("device", ANNA_DEVICE)).await;
    assert!(
        device.iter().all(|(col, n)| *n == 1
            && [
                "referral_facts.device_key",
                "identities.value",
                "cluster_links.link_key",
                "link_holders.link_key",
                "assessments.cluster_json"
            ]
            .contains(&col.as_str())),
        "only Bella's own rows (and her assessment's ring) hold the shared device's key: {device:?}"
    );
    let ring = store
        .cluster_of("u-bella", 10)
        .await
        .expect("cluster")
        .expect("bella's ring");
    assert_eq!(ring.size, 1);
    // Bella still holds the shared IP: her own key stays hers.
    assert!(
        ring.links.is_empty(),
        "a key only Bella holds links nobody: {:?}",
        ring.links
    );
    // The case keeps its decision; the note that named her is gone.
    let cases = store.list_cases(None, Some(&anon), None, 10).await.expect("list");
    assert_eq!(cases.len(), 1);
    assert_eq!(
        (cases[0].state.as_str(), cases[0].decision.as_str()),
        ("RESOLVED", "REJECT")
    );
    assert_eq!(cases[0].note, referral_common::pii::TOMBSTONE);
    // Anna signing up again as someone new joins no ring through her old keys.
    decide(
        store,
        signup(Signup {
            user: "u-new",
            referrer: "ref-new",
            ip: "198.51.100.200",
            device: "dev-new",
            at: minutes(20),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        store
            .cluster_of("u-new", 10)
            .await
            .expect("cluster")
            .expect("ring")
            .size,
        1
    );
}

/// Export: the assessments about her (as referee, as referrer of her invitation, as a
/// recipient), the case, her ring, readable, with explanations that name nothing personal.
async fn export_shows_what_is_held<S: Harness>(store: &S) {
    anna_and_friends(store).await;
    let anon = PiiKeys::for_tests().pseudonym("u-anna");
    let contacts = vec![key("email", ANNA_EMAIL)];
    let invitations = vec!["inv-to-anna".to_string()];
    let who = subject_of("u-anna", &anon, &contacts, &invitations);
    let (counts, doc) = privacy::export(store, &who).await.expect("export");
    assert_eq!(counts.get("assessments"), Some(&4), "{doc}");
    assert_eq!(counts.get("cases"), Some(&1));
    assert_eq!(counts.get("rings"), Some(&1));
    let roles: Vec<&str> = doc["assessments"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| a["yourRole"].as_str().expect("a role"))
        .collect();
    assert_eq!(roles, vec!["referee", "referee", "recipient", "referrer"]);
    let own = &doc["assessments"][3];
    assert_eq!(own["decision"], "REJECT");
    assert_eq!(own["rulesFired"][0]["rule"], "self_referral");
    assert_eq!(doc["ring"]["size"], 2);
    let text = doc.to_string();
    for needle in [ANNA_EMAIL, ANNA_IP, ANNA_DEVICE] {
        assert!(!text.contains(needle), "{needle} in the export");
    }
    // After erasure nothing is found under her id.
    privacy::erase(store, &who).await.expect("erase");
    let (counts, _) = privacy::export(store, &who).await.expect("export");
    assert_eq!(
        (
            counts.get("assessments"),
            counts.get("cases"),
            counts.get("rings")
        ),
        (Some(&1), Some(&0), Some(&0)),
        "only the invitation she received is still found (by its id), with nothing personal"
    );
}

/// Rows written before migration 0080 (plaintext columns, identities, ring keys, old
/// explanations) are converted by `reencrypt`: the ring still joins them with a person seen
/// since under the hashed keys, self-referral still finds the old e-mail, and a second run
/// converts nothing.
async fn reencrypt_converts_rows_from_before<S: Harness>(store: &S) {
    // As 0001 wrote them, then 0080 marked them.
    let when = store.time_text(minutes(1)).await;
    store
        .exec(&format!(
            "INSERT INTO referral_facts (referee_id, referrer_id, subject_id, email_local, email_norm, name_norm, ip, device_id, occurred_at)
               VALUES ('u-old', 'ref-old', 's-old', 'olga.old', 'olga.old@example.com', 'olga old', '{ANNA_IP}', 'dev-old', '{}');
             INSERT INTO invitation_facts (id, referrer_id, recipient_key, device_id, ip, occurred_at)
               VALUES ('inv-old', 'ref-old', '', 'dev-old', '{ANNA_IP}', '{}');
             INSERT INTO identities (person_id, kind, value, seen_at) VALUES
               ('ref-old', 'legacy-email', 'olga.old@example.com', '{}'),
               ('u-old', 'legacy-device', 'dev-old', '{}');
             INSERT INTO clusters (id, size, created_at, updated_at) VALUES ('c-old', 1, '{}', '{}');
             INSERT INTO cluster_members (member_id, cluster_id, role, joined_at) VALUES ('u-old', 'c-old', 'REFEREE', '{}');
             INSERT INTO cluster_links (link_key, cluster_id, holders) VALUES ('legacy:ip:{ANNA_IP}', 'c-old', 1), ('legacy:device:dev-old', 'c-old', 1);
             INSERT INTO link_holders (link_key, member_id) VALUES ('legacy:ip:{ANNA_IP}', 'u-old'), ('legacy:device:dev-old', 'u-old');",
            when, when, when, when, when, when, when,
        ))
        .await;
    // Someone seen since, on the same device: a ring of their own until the conversion.
    decide(
        store,
        signup(Signup {
            user: "u-since",
            referrer: "ref-since",
            device: "dev-old",
            at: minutes(2),
            ..Default::default()
        }),
    )
    .await;
    let converted = reencrypt::reencrypt(store).await.expect("reencrypt");
    assert!(converted >= 6, "{converted}");
    assert_eq!(reencrypt::reencrypt(store).await.expect("again"), 0, "idempotent");
    for needle in ["olga", ANNA_IP, "dev-old"] {
        let found: Vec<_> = store
            .text_holding(needle)
            .await
            .into_iter()
            .filter(|(col, _)| !col.starts_with("outbox"))
            .collect();
        assert!(found.is_empty(), "{needle:?} left: {found:?}");
    }
    let ring = store
        .cluster_of("u-old", 10)
        .await
        .expect("cluster")
        .expect("ring");
    let members: Vec<&str> = ring.members.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        members,
        vec!["u-old", "u-since"],
        "the old ring and the new one joined"
    );
    assert_eq!(ring.size, 2);
    // The old referrer's e-mail still counts as theirs: self-referral.
    let own = decide(
        store,
        signup(Signup {
            user: "u-sock",
            referrer: "ref-old",
            email: "olga.old@example.com",
            at: minutes(3),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(rule_names(&own), vec![rules::SELF_REFERRAL]);
}

/// The bytes on disk too: after Anna's signup, conversion, invitations and a resolved case,
/// neither the SQLite file nor its WAL holds her e-mail, IP or device id anywhere (events,
/// indexes and free pages included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_hold_no_plaintext_personal_data() {
    let db = TestDb::sqlite(SqliteStore::SERVICE);
    let store = SqliteStore::open(&db).await;
    anna_and_friends(&store).await;
    let dir = db.dir().expect("a SQLite directory").to_path_buf();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the store's directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with("fraud.db-wal")),
        "read while the WAL is live: {files:?}"
    );
    let mut seen_rows = false;
    for file in &files {
        let bytes = std::fs::read(file).expect("read the file");
        seen_rows |= bytes.windows(6).any(|w| w == b"u-anna");
        for needle in [ANNA_EMAIL, ANNA_IP, ANNA_DEVICE, "anna.smith"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {}",
                file.display()
            );
        }
    }
    // The check can fail: her user id is there to be found.
    assert!(seen_rows, "the scan sees the stored rows");
    store.pool().close().await;
    drop(store);
    db.remove().await;
}
