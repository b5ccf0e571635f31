//! The store conformance suite: one set of cases, written once against the `Store` trait,
//! run on SQLite always (a fresh file per test) and on Postgres when `TEST_DATABASE_URL` is
//! set (a fresh schema per test). Every case also checks the outbox: exactly the expected
//! events, numbered 1..=n with no gaps, each with a unique id.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use chrono::{DateTime, Duration, Utc};
use referral_common::{
    audit::{Actor, AuditEntry, AuditQuery, AuditStore, action},
    events, ids,
    outbox::EventLogStore,
};
use referral_proto::events::v1::{Event, InvitationTransition, event::Payload};
use referral_test_support::{ConformanceStore, TestDb};
use sqlx::{PgPool, SqlitePool};

use super::{
    ClickRow, ClicksOutcome, CodeRow, ConversionRow, CreateOutcome, InvitationRow, NewConversion,
    NewInvitation, PgStore, SignupRow, SlotUsage, SqliteStore, Store, TransitionOutcome,
};
use crate::{
    adapters::grpc::convert,
    domain::{
        codes,
        party::PartyKind,
        quota::{self, QuotaConfig, QuotaUsage, ReferrerTier},
    },
    store::{events as invite_events, sealed},
};
use referral_common::pii::PiiKeys;

// ---- harness -------------------------------------------------------------------------

/// A store plus the raw event log behind its outbox, and raw SQL for looking at what is
/// really stored.
trait Harness: Store {
    type Log: EventLogStore + AuditStore;
    fn log(&self) -> Self::Log;
    /// Every column of every row `sql` returns, as text ("" for what is not text).
    fn raw_rows(&self, sql: &str) -> impl Future<Output = Vec<Vec<String>>> + Send;
    /// Runs `sql` with `args` bound as text.
    fn raw_exec(&self, sql: &str, args: &[&str]) -> impl Future<Output = ()> + Send;
    /// The same database, sealing and opening with `pii`.
    fn with_keys(&self, pii: PiiKeys) -> Self;
}

macro_rules! raw_harness {
    ($store:ty, $pool:ty) => {
        impl Harness for $store {
            type Log = $pool;
            fn log(&self) -> $pool {
                self.pool().clone()
            }
            async fn raw_rows(&self, sql: &str) -> Vec<Vec<String>> {
                use sqlx::Row as _;
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_all(self.pool())
                    .await
                    .expect("raw select");
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<Option<String>, _>(i)
                                    .ok()
                                    .flatten()
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .collect()
            }
            async fn raw_exec(&self, sql: &str, args: &[&str]) {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
                for a in args {
                    q = q.bind(a.to_string());
                }
                q.execute(self.pool()).await.expect("raw exec");
            }
            fn with_keys(&self, pii: PiiKeys) -> Self {
                self.clone().with_pii(pii)
            }
        }
    };
}
raw_harness!(SqliteStore, SqlitePool);
raw_harness!(PgStore, PgPool);

// By hand rather than `conformance_stores!`: invite-svc's stores take the PII keys.
impl ConformanceStore for SqliteStore {
    const SERVICE: &'static str = "invite";
    async fn open(db: &TestDb) -> Self {
        let store = SqliteStore::connect(db.url(), pii())
            .await
            .expect("open the SQLite store");
        store.migrate().await.expect("migrate the store");
        store
    }
    async fn close(&self) {
        self.pool().close().await;
    }
}

impl ConformanceStore for PgStore {
    const SERVICE: &'static str = "invite";
    async fn open(db: &TestDb) -> Self {
        let store = PgStore::connect(db.url(), db.schema(), pii())
            .await
            .expect("connect to TEST_DATABASE_URL");
        store.migrate().await.expect("migrate the store");
        store
    }
    async fn close(&self) {
        self.pool().close().await;
    }
}

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 4;
    codes: sqlite_codes, pg_codes;
    referrers: sqlite_referrers, pg_referrers;
    create_invitation_round_trip: sqlite_create_invitation_round_trip, pg_create_invitation_round_trip;
    create_invitation_duplicates: sqlite_create_invitation_duplicates, pg_create_invitation_duplicates;
    create_invitation_pacing: sqlite_create_invitation_pacing, pg_create_invitation_pacing;
    create_invitation_queue_full: sqlite_create_invitation_queue_full, pg_create_invitation_queue_full;
    create_invitation_code_taken: sqlite_create_invitation_code_taken, pg_create_invitation_code_taken;
    transitions: sqlite_transitions, pg_transitions;
    list_invitations: sqlite_list_invitations, pg_list_invitations;
    clicks: sqlite_clicks, pg_clicks;
    signups: sqlite_signups, pg_signups;
    open_invitations: sqlite_open_invitations, pg_open_invitations;
    conversions: sqlite_conversions, pg_conversions;
    expire_due: sqlite_expire_due, pg_expire_due;
    outbox_relay: sqlite_outbox_relay, pg_outbox_relay;
    concurrent_commits_are_not_skipped: sqlite_concurrent_commits_are_not_skipped, pg_concurrent_commits_are_not_skipped;
    sending_leases_retries_and_bounces: sqlite_sending_leases_retries_and_bounces, pg_sending_leases_retries_and_bounces;
    parked_sends_are_listed_and_released: sqlite_parked_sends_are_listed_and_released, pg_parked_sends_are_listed_and_released;
    a_crashed_sender_is_taken_over_after_its_lease: sqlite_a_crashed_sender_is_taken_over_after_its_lease, pg_a_crashed_sender_is_taken_over_after_its_lease;
    provider_events_are_applied_once: sqlite_provider_events_are_applied_once, pg_provider_events_are_applied_once;
    provider_events_are_forgotten_after_retention: sqlite_provider_events_are_forgotten_after_retention, pg_provider_events_are_forgotten_after_retention;
    audited_changes_commit_with_their_row: sqlite_audited_changes_commit_with_their_row, pg_audited_changes_commit_with_their_row;
}

mod api_keys;
mod consent;
mod pii;
mod privacy;

// ---- fixtures ------------------------------------------------------------------------

fn admin() -> Actor {
    Actor {
        subject: "admin-1".into(),
        role: "admin".into(),
        request_id: Some("req-audit".into()),
    }
}

fn tier_audit(referrer: &str) -> AuditEntry {
    AuditEntry::new(&admin(), action::REFERRER_TIER_SET, "referrer", referrer)
}

/// Every audit row of the store, newest first.
async fn audit_rows<S: Harness>(store: &S) -> Vec<referral_proto::common::v1::AuditEntry> {
    let q = AuditQuery {
        page_size: 500,
        ..AuditQuery::default()
    };
    store.log().list_audit(&q).await.expect("list audit").entries
}

const LANDING: &str = "https://example.com/landing";

fn new_code() -> String {
    codes::generate_code(PartyKind::Supplier, &mut rand::rng())
}

fn code_row(referrer: &str) -> CodeRow {
    CodeRow {
        code: new_code(),
        referrer_id: referrer.into(),
        referrer_kind: "SUPPLIER".into(),
        vendor_type: Some("FLORIST".into()),
        campaign_id: "spring".into(),
        landing_url: LANDING.into(),
        invitation_id: None,
        clicks: 0,
        signups: 0,
        conversions: 0,
        created_at: ids::now(),
    }
}

async fn insert_code<S: Store>(store: &S, row: &CodeRow) -> bool {
    store
        .insert_code(row, &invite_events::code_created(row))
        .await
        .expect("insert_code")
}

/// The keys every store of the suite seals with.
fn pii() -> PiiKeys {
    PiiKeys::for_tests()
}

/// The keyed hash a normalised e-mail is found by.
fn email_key(email: &str) -> String {
    pii().lookup("email", email)
}

/// An invitation as the service would build it: EMAIL/SMS start SCHEDULED (we send them),
/// LINK/QR/SOCIAL start SENT (the referrer shares them). `recipient` is a normalised e-mail
/// or phone number; the row is found by its keyed hash.
fn invitation(referrer: &str, recipient: &str, channel: &str) -> InvitationRow {
    let recipient_key = recipient;
    let now = ids::now();
    let sent_now = matches!(channel, "LINK" | "QR" | "SOCIAL");
    InvitationRow {
        id: ids::new_id(),
        code: new_code(),
        referrer_id: referrer.into(),
        referrer_kind: "SUPPLIER".into(),
        referee_kind: "COUPLE".into(),
        vendor_type: Some("PHOTOGRAPHER".into()),
        flow: "SUPPLIER_TO_COUPLE".into(),
        channel: channel.into(),
        recipient_email: if recipient_key.contains('@') {
            recipient_key.into()
        } else {
            String::new()
        },
        recipient_phone: if recipient_key.starts_with('+') {
            recipient_key.into()
        } else {
            String::new()
        },
        recipient_name: "Sam Doe".into(),
        recipient_timezone: "Europe/London".into(),
        recipient_key: if recipient.contains('@') {
            sealed::recipient_key(&pii(), recipient, "")
        } else {
            sealed::recipient_key(&pii(), "", recipient)
        },
        status: if sent_now { "SENT" } else { "SCHEDULED" }.into(),
        status_reason: String::new(),
        risk_json: r#"{"score":5,"level":"LOW"}"#.into(),
        template_id: "tpl-1".into(),
        template_variant: "A".into(),
        message: "Come and see us".into(),
        campaign_id: "spring".into(),
        utm_source: "newsletter".into(),
        utm_medium: "email".into(),
        utm_campaign: "spring".into(),
        wedding_date: "2027-06-12".into(),
        scheduled_for: None,
        sent_at: sent_now.then_some(now),
        expires_at: sent_now.then(|| now + Duration::days(30)),
        ip: "203.0.113.7".into(),
        device_id: "device-1".into(),
        created_at: now,
        updated_at: now,
        referrer_name: "Ana".into(),
        business_name: "Ana Weddings".into(),
    }
}

/// Backdates an invitation (and its send time, if it was sent at creation).
fn created_at(mut row: InvitationRow, at: DateTime<Utc>) -> InvitationRow {
    row.created_at = at;
    row.updated_at = at;
    if row.sent_at.is_some() {
        row.sent_at = Some(at);
        row.expires_at = Some(at + Duration::days(30));
    }
    row
}

fn new_invitation(row: InvitationRow) -> NewInvitation {
    NewInvitation {
        paced: matches!(row.status.as_str(), "SCHEDULED" | "PENDING_REVIEW"),
        duplicate_since: row.created_at - Duration::hours(24),
        max_queued: 1000,
        landing_url: LANDING.into(),
        contact_lookup: String::new(),
        row,
    }
}

fn regular() -> quota::QuotaLimits {
    QuotaConfig::default().limits(ReferrerTier::Regular)
}

/// The service's pacing rule with REGULAR limits and no blackouts.
fn regular_placer(candidate: DateTime<Utc>) -> impl Fn(&SlotUsage) -> DateTime<Utc> + Send + Sync {
    let limits = regular();
    move |usage: &SlotUsage| quota::place(candidate, limits, usage, |t| t)
}

async fn create<S: Store>(store: &S, new: NewInvitation) -> CreateOutcome {
    let place = regular_placer(new.row.created_at);
    store
        .create_invitation(new, &place)
        .await
        .expect("create_invitation")
}

async fn created<S: Store>(store: &S, new: NewInvitation) -> InvitationRow {
    match create(store, new).await {
        CreateOutcome::Created(row) => *row,
        other => panic!("expected Created, got {other:?}"),
    }
}

async fn get_invitation<S: Store>(store: &S, id: &str) -> InvitationRow {
    store
        .get_invitation(id)
        .await
        .expect("get_invitation")
        .unwrap_or_else(|| panic!("invitation {id} is stored"))
}

async fn status_of<S: Store>(store: &S, id: &str) -> String {
    get_invitation(store, id).await.status
}

async fn queued<S: Store>(store: &S, referrer: &str) -> i64 {
    store.get_referrer(referrer).await.expect("get_referrer").queued
}

async fn code_counts<S: Store>(store: &S, code: &str) -> (i64, i64, i64) {
    let row = store
        .get_code(code)
        .await
        .expect("get_code")
        .unwrap_or_else(|| panic!("code {code} is stored"));
    (row.clicks, row.signups, row.conversions)
}

async fn transition<S: Store>(store: &S, id: &str, to: &str, at: DateTime<Utc>) -> TransitionOutcome {
    store.transition(id, to, "", at).await.expect("transition")
}

async fn applied<S: Store>(store: &S, id: &str, to: &str, at: DateTime<Utc>) -> InvitationRow {
    match transition(store, id, to, at).await {
        TransitionOutcome::Applied(row) => *row,
        other => panic!("{id} -> {to}: expected Applied, got {other:?}"),
    }
}

fn click(code: &str, click_id: &str) -> ClickRow {
    let now = ids::now();
    ClickRow {
        click_id: click_id.into(),
        code: code.into(),
        referrer_id: String::new(),
        invitation_id: None,
        visitor_id: "visitor-1".into(),
        user_agent: "Mozilla/5.0".into(),
        ip: "198.51.100.4".into(),
        device_id: "device-9".into(),
        utm_source: "instagram".into(),
        utm_medium: "social".into(),
        utm_campaign: "spring".into(),
        occurred_at: now,
        expires_at: now + Duration::days(90),
        previous_click_id: String::new(),
    }
}

fn unattributed_signup(user_id: &str, email: &str) -> SignupRow {
    SignupRow {
        id: ids::new_id(),
        user_id: user_id.into(),
        user_kind: "COUPLE".into(),
        vendor_type: None,
        email: email.to_uppercase(),
        email_norm: email_key(email),
        name: "Alex".into(),
        attributed: false,
        invitation_id: None,
        code: None,
        referrer_id: None,
        referrer_kind: None,
        flow: None,
        reason: "NO_TOUCH".into(),
        touchpoints_json: "[]".into(),
        risk_json: String::new(),
        click_at: None,
        ip: "192.0.2.1".into(),
        device_id: "device-2".into(),
        created_at: ids::now(),
        // Stored and read back as given (a repeated signup answers with it).
        rejected_click: "BAD_SIGNATURE".into(),
    }
}

fn attributed_signup(user_id: &str, inv: &InvitationRow) -> SignupRow {
    SignupRow {
        attributed: true,
        invitation_id: Some(inv.id.clone()),
        code: Some(inv.code.clone()),
        referrer_id: Some(inv.referrer_id.clone()),
        referrer_kind: Some(inv.referrer_kind.clone()),
        flow: Some(inv.flow.clone()),
        reason: String::new(),
        touchpoints_json: format!(r#"[{{"kind":"INVITATION","id":"{}"}}]"#, inv.id),
        risk_json: r#"{"score":12,"level":"LOW"}"#.into(),
        click_at: Some(ids::now() - Duration::hours(1)),
        rejected_click: String::new(),
        ..unattributed_signup(user_id, &inv.recipient_email)
    }
}

fn conversion(user_id: &str, amount_minor: i64, plan: &str) -> NewConversion {
    NewConversion {
        id: ids::new_id(),
        user_id: user_id.into(),
        amount_minor,
        currency: "GBP".into(),
        plan: plan.into(),
        annual: plan == "PROFESSIONAL",
        occurred_at: ids::now(),
    }
}

async fn record_conversion<S: Store>(store: &S, new: NewConversion) -> ConversionRow {
    let want = new.clone();
    let row = store.record_conversion(new).await.expect("record_conversion");
    assert_eq!(
        (
            &row.id,
            &row.user_id,
            row.amount_minor,
            &row.currency,
            &row.plan,
            row.annual,
            row.occurred_at
        ),
        (
            &want.id,
            &want.user_id,
            want.amount_minor,
            &want.currency,
            &want.plan,
            want.annual,
            want.occurred_at
        ),
        "the conversion keeps what it was given"
    );
    row
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
            let event = events::decode(bytes, *offset).expect("decodable event");
            assert_eq!(event.offset, *offset);
            assert!(seen.insert(event.id.clone()), "event id {} is unique", event.id);
            assert_eq!(event.source, invite_events::SOURCE);
            assert!(event.occurred_at.is_some(), "events carry their time");
            event
        })
        .collect()
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(events::event_type).collect()
}

/// Asserts the whole log is exactly `want`, in order.
async fn assert_log<S: Harness>(store: &S, want: &[&str]) -> Vec<Event> {
    let events = log_events(store).await;
    assert_eq!(
        types(&events),
        want,
        "the outbox holds exactly the expected events"
    );
    events
}

fn transition_payload(event: &Event) -> &InvitationTransition {
    match event.payload.as_ref().expect("payload") {
        Payload::InvitationScheduled(t)
        | Payload::InvitationSent(t)
        | Payload::InvitationDelivered(t)
        | Payload::InvitationOpened(t)
        | Payload::InvitationClicked(t)
        | Payload::InvitationSignedUp(t)
        | Payload::InvitationConverted(t)
        | Payload::InvitationExpired(t)
        | Payload::InvitationBounced(t)
        | Payload::InvitationCancelled(t)
        | Payload::InvitationBlocked(t) => t,
        other => panic!("not a transition: {other:?}"),
    }
}

// ---- cases ---------------------------------------------------------------------------

async fn codes<S: Harness>(store: &S) {
    // Counters given by the caller are ignored: a new code starts at zero.
    let row = CodeRow {
        clicks: 7,
        signups: 3,
        conversions: 1,
        ..code_row("ref-codes")
    };
    assert!(insert_code(store, &row).await);
    let stored = store.get_code(&row.code).await.unwrap().expect("code stored");
    assert_eq!(
        stored,
        CodeRow {
            clicks: 0,
            signups: 0,
            conversions: 0,
            ..row.clone()
        }
    );

    // A duplicate code is refused, changes nothing and writes no event.
    let dup = CodeRow {
        code: row.code.clone(),
        landing_url: "https://elsewhere.example".into(),
        ..code_row("someone-else")
    };
    assert!(!insert_code(store, &dup).await);
    assert_eq!(store.get_code(&row.code).await.unwrap().unwrap(), stored);
    assert_eq!(types(&log_events(store).await), ["referral_code.created"]);

    // One referrer may hold several codes.
    let second = CodeRow {
        vendor_type: None,
        campaign_id: String::new(),
        ..code_row("ref-codes")
    };
    assert!(insert_code(store, &second).await);
    assert_eq!(store.get_code(&second.code).await.unwrap(), Some(second.clone()));
    assert_eq!(store.get_code("NOPE-222222").await.unwrap(), None);

    let events = assert_log(store, &["referral_code.created", "referral_code.created"]).await;
    let Some(Payload::ReferralCodeCreated(created)) = &events[0].payload else {
        panic!("expected ReferralCodeCreated")
    };
    assert_eq!(created.code, row.code);
    assert_eq!(created.referrer_id, "ref-codes");
    assert_eq!(events[0].aggregate_id, row.code);
    assert_eq!(events[1].aggregate_id, second.code);
}

async fn referrers<S: Harness>(store: &S) {
    let fresh = store.get_referrer("ref-tier").await.unwrap();
    assert_eq!(
        (fresh.id.as_str(), fresh.tier.as_str(), fresh.queued),
        ("ref-tier", "REGULAR", 0)
    );
    assert_log(store, &[]).await;

    let set = store
        .set_tier("ref-tier", "PREMIUM", &tier_audit("ref-tier"))
        .await
        .unwrap();
    assert_eq!((set.tier.as_str(), set.queued), ("PREMIUM", 0));
    assert_eq!(store.get_referrer("ref-tier").await.unwrap(), set);

    // Changing the tier keeps the queue count.
    created(
        store,
        new_invitation(invitation("ref-tier", "a@example.com", "EMAIL")),
    )
    .await;
    created(
        store,
        new_invitation(invitation("ref-tier", "b@example.com", "EMAIL")),
    )
    .await;
    let set = store
        .set_tier("ref-tier", "SUPER_CONNECTOR", &tier_audit("ref-tier"))
        .await
        .unwrap();
    assert_eq!((set.tier.as_str(), set.queued), ("SUPER_CONNECTOR", 2));
    assert_eq!(store.get_referrer("ref-tier").await.unwrap(), set);

    let events = assert_log(
        store,
        &[
            "referrer.tier_changed",
            "invitation.created",
            "invitation.created",
            "referrer.tier_changed",
        ],
    )
    .await;
    let Some(Payload::ReferrerTierChanged(changed)) = &events[3].payload else {
        panic!("expected ReferrerTierChanged")
    };
    assert_eq!(changed.referrer_id, "ref-tier");
    assert_eq!(changed.tier, convert::tier("SUPER_CONNECTOR") as i32);
}

async fn create_invitation_round_trip<S: Harness>(store: &S) {
    // A LINK invitation is stored exactly as given (SENT, not paced).
    let link = invitation("ref-rt", "anna@example.com", "LINK");
    assert_eq!(created(store, new_invitation(link.clone())).await, link);
    assert_eq!(get_invitation(store, &link.id).await, link);
    let code = store
        .get_code(&link.code)
        .await
        .unwrap()
        .expect("the invitation's code");
    assert_eq!(
        code,
        CodeRow {
            code: link.code.clone(),
            referrer_id: "ref-rt".into(),
            referrer_kind: "SUPPLIER".into(),
            vendor_type: Some("PHOTOGRAPHER".into()),
            campaign_id: "spring".into(),
            landing_url: LANDING.into(),
            invitation_id: Some(link.id.clone()),
            clicks: 0,
            signups: 0,
            conversions: 0,
            created_at: link.created_at,
        }
    );
    assert_eq!(
        queued(store, "ref-rt").await,
        0,
        "unpaced invitations are not queued"
    );

    // A paced one gets its scheduledFor from the placer, inside the transaction.
    let email = invitation("ref-rt", "+447700900123", "SMS");
    let fixed_at = quota::hour_bucket(email.created_at + Duration::hours(5)) + Duration::minutes(42);
    let place = move |_: &SlotUsage| fixed_at;
    let got = match store
        .create_invitation(new_invitation(email.clone()), &place)
        .await
        .unwrap()
    {
        CreateOutcome::Created(row) => *row,
        other => panic!("expected Created, got {other:?}"),
    };
    let want = InvitationRow {
        scheduled_for: Some(fixed_at),
        ..email.clone()
    };
    assert_eq!(got, want);
    assert_eq!(get_invitation(store, &email.id).await, want);
    assert_eq!(queued(store, "ref-rt").await, 1);
    assert_eq!(store.get_invitation("no-such-invitation").await.unwrap(), None);

    let events = assert_log(
        store,
        &["invitation.created", "invitation.sent", "invitation.created"],
    )
    .await;
    let Some(Payload::InvitationCreated(c)) = &events[0].payload else {
        panic!("expected InvitationCreated")
    };
    let facts = c.invitation.as_ref().expect("facts");
    assert_eq!(facts.invitation_id, link.id);
    assert_eq!(facts.code, link.code);
    assert_eq!(facts.referrer_id, "ref-rt");
    assert_eq!(c.status, convert::status("SENT") as i32);
    assert_eq!(c.recipient_key, email_key("anna@example.com"), "the keyed hash");
    assert_ne!(c.recipient_key, "anna@example.com", "no addresses in events");
    assert_eq!(c.scheduled_for, None);
    assert_eq!(events[0].aggregate_id, link.id);
    let sent = transition_payload(&events[1]);
    assert_eq!(sent.invitation_id, link.id);
    assert_eq!(sent.to, convert::status("SENT") as i32);
    let Some(Payload::InvitationCreated(c)) = &events[2].payload else {
        panic!("expected InvitationCreated")
    };
    assert_eq!(c.status, convert::status("SCHEDULED") as i32);
    assert_eq!(c.scheduled_for, Some(ids::to_ts(fixed_at)));
}

async fn create_invitation_duplicates<S: Harness>(store: &S) {
    let now = ids::now();
    let key = "dup@example.com";
    let mut want = Vec::new();

    let a = created(
        store,
        new_invitation(created_at(
            invitation("ref-dup", key, "EMAIL"),
            now - Duration::hours(2),
        )),
    )
    .await;
    want.push("invitation.created");
    // B's window starts after A was created: not a duplicate of A.
    let mut nb = new_invitation(created_at(
        invitation("ref-dup", key, "EMAIL"),
        now - Duration::hours(1),
    ));
    nb.duplicate_since = now - Duration::minutes(90);
    let b = created(store, nb).await;
    want.push("invitation.created");
    assert_eq!(queued(store, "ref-dup").await, 2);
    let events_before = log_events(store).await.len();

    // Inside 24 h of both: a duplicate of the first, and nothing is written.
    let c = invitation("ref-dup", key, "EMAIL");
    match create(store, new_invitation(c.clone())).await {
        CreateOutcome::Duplicate { existing_id } => assert_eq!(existing_id, a.id),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(store.get_invitation(&c.id).await.unwrap(), None);
    assert_eq!(store.get_code(&c.code).await.unwrap(), None);
    assert_eq!(queued(store, "ref-dup").await, 2);
    assert_eq!(log_events(store).await.len(), events_before);
    assert_eq!(
        store
            .list_invitations("ref-dup", None, None, 100)
            .await
            .unwrap()
            .len(),
        2
    );

    // The same recipient from another referrer, or another recipient: not duplicates.
    created(store, new_invitation(invitation("ref-dup-2", key, "EMAIL"))).await;
    created(
        store,
        new_invitation(invitation("ref-dup", "other@example.com", "EMAIL")),
    )
    .await;
    want.extend(["invitation.created", "invitation.created"]);
    // No recipient key (a QR card): never a duplicate.
    created(store, new_invitation(invitation("ref-dup", "", "QR"))).await;
    created(store, new_invitation(invitation("ref-dup", "", "QR"))).await;
    want.extend([
        "invitation.created",
        "invitation.sent",
        "invitation.created",
        "invitation.sent",
    ]);

    // Cancelled invitations do not block a new one.
    applied(store, &a.id, "CANCELLED", now).await;
    want.push("invitation.cancelled");
    match create(store, new_invitation(invitation("ref-dup", key, "EMAIL"))).await {
        CreateOutcome::Duplicate { existing_id } => assert_eq!(existing_id, b.id),
        other => panic!("expected Duplicate of B, got {other:?}"),
    }
    applied(store, &b.id, "CANCELLED", now).await;
    want.push("invitation.cancelled");
    let again = created(store, new_invitation(invitation("ref-dup", key, "EMAIL"))).await;
    want.push("invitation.created");
    assert_eq!(status_of(store, &again.id).await, "SCHEDULED");
    // Now the new one is the duplicate target.
    match create(store, new_invitation(invitation("ref-dup", key, "SMS"))).await {
        CreateOutcome::Duplicate { existing_id } => assert_eq!(existing_id, again.id),
        other => panic!("expected Duplicate of the re-invitation, got {other:?}"),
    }
    assert_log(store, &want).await;
}

/// Records the usage the store hands the placer, and places with the REGULAR rule.
#[derive(Clone, Default)]
struct RecordingPlacer {
    seen: Arc<Mutex<Vec<SlotUsage>>>,
}

impl RecordingPlacer {
    fn placer(&self, candidate: DateTime<Utc>) -> impl Fn(&SlotUsage) -> DateTime<Utc> + Send + Sync + use<> {
        let seen = self.seen.clone();
        let limits = regular();
        move |usage: &SlotUsage| {
            seen.lock().unwrap().push(usage.clone());
            quota::place(candidate, limits, usage, |t| t)
        }
    }

    fn last(&self) -> SlotUsage {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the placer was called")
    }
}

async fn create_invitation_pacing<S: Harness>(store: &S) {
    let now = ids::now();
    let hour = quota::hour_bucket(now);
    let day = quota::day_bucket(now);
    let recorder = RecordingPlacer::default();
    let mut rows = Vec::new();
    for i in 0..12 {
        let row = created_at(invitation("ref-pace", &format!("p{i}@example.com"), "EMAIL"), now);
        let place = recorder.placer(now);
        let got = match store
            .create_invitation(new_invitation(row), &place)
            .await
            .unwrap()
        {
            CreateOutcome::Created(row) => *row,
            other => panic!("expected Created, got {other:?}"),
        };
        rows.push(got);
    }
    // REGULAR is 10 an hour: ten now, two at the start of the next UTC hour.
    for (i, row) in rows.iter().enumerate() {
        let want = if i < 10 { now } else { hour + Duration::hours(1) };
        assert_eq!(row.scheduled_for, Some(want), "invitation {i}");
        assert_eq!(get_invitation(store, &row.id).await.scheduled_for, Some(want));
        assert_eq!(row.status, "SCHEDULED");
    }
    // What the 12th placement saw: ten in this hour, one in the next (which may be tomorrow).
    let in_day = |rows: &[InvitationRow], day: DateTime<Utc>| {
        rows.iter()
            .filter(|r| r.status != "CANCELLED" && r.scheduled_for.map(quota::day_bucket) == Some(day))
            .count() as u32
    };
    let usage = recorder.last();
    assert_eq!(usage.hour_count(hour), 10, "the 12th saw the full hour");
    assert_eq!(usage.hour_count(hour + Duration::hours(1)), 1);
    assert_eq!(usage.day_count(day), in_day(&rows[..11], day));
    assert_eq!(queued(store, "ref-pace").await, 12);

    // Cancelling a paced invitation gives its slot back.
    rows[3] = applied(store, &rows[3].id, "CANCELLED", now).await;
    assert_eq!(queued(store, "ref-pace").await, 11);
    let place = recorder.placer(now);
    let row = created_at(invitation("ref-pace", "p12@example.com", "EMAIL"), now);
    let refill = match store
        .create_invitation(new_invitation(row), &place)
        .await
        .unwrap()
    {
        CreateOutcome::Created(row) => *row,
        other => panic!("expected Created, got {other:?}"),
    };
    let usage = recorder.last();
    assert_eq!(usage.hour_count(hour), 9);
    assert_eq!(usage.day_count(day), in_day(&rows, day));
    assert_eq!(refill.scheduled_for, Some(now), "the freed slot is reused");
    rows.push(refill);

    // Unpaced invitations take no slot; other referrers have their own.
    created(
        store,
        new_invitation(created_at(
            invitation("ref-pace", "link@example.com", "LINK"),
            now,
        )),
    )
    .await;
    let place = recorder.placer(now);
    let row = created_at(invitation("ref-pace", "p13@example.com", "EMAIL"), now);
    let next = match store
        .create_invitation(new_invitation(row), &place)
        .await
        .unwrap()
    {
        CreateOutcome::Created(row) => *row,
        other => panic!("expected Created, got {other:?}"),
    };
    assert_eq!(recorder.last().day_count(day), in_day(&rows, day));
    assert_eq!(recorder.last().hour_count(hour), 10);
    assert_eq!(next.scheduled_for, Some(hour + Duration::hours(1)));
    let other = created(
        store,
        new_invitation(created_at(
            invitation("ref-pace-2", "p0@example.com", "EMAIL"),
            now,
        )),
    )
    .await;
    assert_eq!(other.scheduled_for, Some(now));
    assert_eq!(queued(store, "ref-pace").await, 13);
    assert_eq!(queued(store, "ref-pace-2").await, 1);

    let mut want = vec!["invitation.created"; 12];
    want.extend([
        "invitation.cancelled",
        "invitation.created",
        "invitation.created",
        "invitation.sent",
        "invitation.created",
        "invitation.created",
    ]);
    assert_log(store, &want).await;
}

async fn create_invitation_queue_full<S: Harness>(store: &S) {
    // The contract refuses only "more than max_queued" queued: with a limit of 3, the 4th is
    // still accepted (3 were queued) and the 5th refused (4 are).
    let with_limit = |row: InvitationRow| NewInvitation {
        max_queued: 3,
        ..new_invitation(row)
    };
    let mut accepted = Vec::new();
    for i in 0..4 {
        accepted.push(
            created(
                store,
                with_limit(invitation("ref-q", &format!("q{i}@example.com"), "EMAIL")),
            )
            .await,
        );
    }
    assert_eq!(queued(store, "ref-q").await, 4);
    let events_before = log_events(store).await.len();

    let refused = invitation("ref-q", "q4@example.com", "EMAIL");
    match create(store, with_limit(refused.clone())).await {
        CreateOutcome::QueueFull { queued } => assert_eq!(queued, 4),
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(store.get_invitation(&refused.id).await.unwrap(), None);
    assert_eq!(store.get_code(&refused.code).await.unwrap(), None);
    assert_eq!(queued(store, "ref-q").await, 4);
    assert_eq!(log_events(store).await.len(), events_before);

    // Invitations we do not send are not queued and never refused.
    created(store, with_limit(invitation("ref-q", "link@example.com", "LINK"))).await;
    // Sending or cancelling one makes room again.
    applied(store, &accepted[0].id, "CANCELLED", ids::now()).await;
    assert_eq!(queued(store, "ref-q").await, 3);
    created(store, with_limit(invitation("ref-q", "q5@example.com", "EMAIL"))).await;
    assert!(matches!(
        create(store, with_limit(invitation("ref-q", "q6@example.com", "EMAIL"))).await,
        CreateOutcome::QueueFull { queued: 4 }
    ));
    applied(store, &accepted[1].id, "SENT", ids::now()).await;
    assert_eq!(queued(store, "ref-q").await, 3);
    created(store, with_limit(invitation("ref-q", "q7@example.com", "EMAIL"))).await;
    assert_eq!(queued(store, "ref-q").await, 4);

    let mut want = vec!["invitation.created"; 4];
    want.extend([
        "invitation.created",
        "invitation.sent",
        "invitation.cancelled",
        "invitation.created",
        "invitation.sent",
        "invitation.created",
    ]);
    assert_log(store, &want).await;
}

async fn create_invitation_code_taken<S: Harness>(store: &S) {
    let taken = code_row("ref-other");
    assert!(insert_code(store, &taken).await);
    let events_before = log_events(store).await.len();

    // Paced: the queue count and the send slot taken before the code clash roll back.
    let recorder = RecordingPlacer::default();
    let clash = InvitationRow {
        code: taken.code.clone(),
        ..invitation("ref-ct", "c@example.com", "EMAIL")
    };
    let place = recorder.placer(clash.created_at);
    assert!(matches!(
        store
            .create_invitation(new_invitation(clash.clone()), &place)
            .await
            .unwrap(),
        CreateOutcome::CodeTaken
    ));
    assert_eq!(store.get_invitation(&clash.id).await.unwrap(), None);
    assert_eq!(store.get_code(&taken.code).await.unwrap(), Some(taken.clone()));
    assert_eq!(queued(store, "ref-ct").await, 0);
    assert_eq!(log_events(store).await.len(), events_before);

    // Unpaced: same answer.
    let clash_link = InvitationRow {
        code: taken.code.clone(),
        ..invitation("ref-ct", "d@example.com", "LINK")
    };
    assert!(matches!(
        create(store, new_invitation(clash_link.clone())).await,
        CreateOutcome::CodeTaken
    ));
    assert_eq!(store.get_invitation(&clash_link.id).await.unwrap(), None);

    // The retry with a fresh code succeeds, and sees no slot used by the failed attempt.
    let retry = InvitationRow {
        code: new_code(),
        ..clash
    };
    let place = recorder.placer(retry.created_at);
    assert!(matches!(
        store
            .create_invitation(new_invitation(retry.clone()), &place)
            .await
            .unwrap(),
        CreateOutcome::Created(_)
    ));
    let usage = recorder.last();
    assert!(
        usage.hours.values().all(|n| *n == 0) && usage.days.values().all(|n| *n == 0),
        "the failed attempt's slot was rolled back: {usage:?}"
    );
    assert_eq!(queued(store, "ref-ct").await, 1);

    // Another invitation's code is taken too.
    let clash_inv = InvitationRow {
        code: retry.code.clone(),
        ..invitation("ref-ct", "e@example.com", "EMAIL")
    };
    assert!(matches!(
        create(store, new_invitation(clash_inv)).await,
        CreateOutcome::CodeTaken
    ));
    assert_eq!(queued(store, "ref-ct").await, 1);

    assert_log(store, &["referral_code.created", "invitation.created"]).await;
}

async fn transitions<S: Harness>(store: &S) {
    let mut want = Vec::new();
    // SENT sets sent_at and the 30-day expiry, and frees the queue slot.
    let e = created(
        store,
        new_invitation(invitation("ref-tr", "t@example.com", "EMAIL")),
    )
    .await;
    want.push("invitation.created");
    assert_eq!((e.sent_at, e.expires_at), (None, None));
    assert_eq!(queued(store, "ref-tr").await, 1);
    let sent_at = ids::now();
    let sent = applied(store, &e.id, "SENT", sent_at).await;
    want.push("invitation.sent");
    assert_eq!(sent.status, "SENT");
    assert_eq!(sent.sent_at, Some(sent_at));
    assert_eq!(sent.expires_at, Some(sent_at + Duration::days(30)));
    assert_eq!(get_invitation(store, &e.id).await, sent);
    assert_eq!(queued(store, "ref-tr").await, 0);
    // A repeated SENT is a no-op and keeps the first send time.
    match transition(store, &e.id, "SENT", sent_at + Duration::hours(1)).await {
        TransitionOutcome::Ignored(row) => assert_eq!(row.sent_at, Some(sent_at)),
        other => panic!("expected Ignored, got {other:?}"),
    }
    assert_eq!(get_invitation(store, &e.id).await, sent);

    // Forward only: a late DELIVERED never overwrites CLICKED.
    applied(store, &e.id, "DELIVERED", ids::now()).await;
    let clicked = applied(store, &e.id, "CLICKED", ids::now()).await;
    want.extend(["invitation.delivered", "invitation.clicked"]);
    for late in ["DELIVERED", "OPENED", "SCHEDULED"] {
        match transition(store, &e.id, late, ids::now()).await {
            TransitionOutcome::Ignored(row) => assert_eq!(row.status, "CLICKED"),
            other => panic!("{late} after CLICKED: expected Ignored, got {other:?}"),
        }
    }
    assert_eq!(get_invitation(store, &e.id).await, clicked);

    // Cancelling after SENT is refused with a reason, and changes nothing.
    match transition(store, &e.id, "CANCELLED", ids::now()).await {
        TransitionOutcome::Rejected { row, reason } => {
            assert_eq!(row.status, "CLICKED");
            assert!(reason.contains("cancel"), "reason: {reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(get_invitation(store, &e.id).await, clicked);
    // So is an unknown status.
    assert!(matches!(
        transition(store, &e.id, "LOST", ids::now()).await,
        TransitionOutcome::Rejected { .. }
    ));

    // Cancelling frees the queue count, once.
    let p1 = created(
        store,
        new_invitation(invitation("ref-tr", "p1@example.com", "EMAIL")),
    )
    .await;
    let p2 = created(
        store,
        new_invitation(invitation("ref-tr", "p2@example.com", "SMS")),
    )
    .await;
    want.extend(["invitation.created", "invitation.created"]);
    assert_eq!(queued(store, "ref-tr").await, 2);
    let cancelled = applied(store, &p1.id, "CANCELLED", ids::now()).await;
    want.push("invitation.cancelled");
    assert_eq!(cancelled.status, "CANCELLED");
    assert_eq!(get_invitation(store, &p1.id).await, cancelled);
    assert_eq!(queued(store, "ref-tr").await, 1);
    assert!(matches!(
        transition(store, &p1.id, "CANCELLED", ids::now()).await,
        TransitionOutcome::Ignored(_)
    ));
    assert_eq!(
        queued(store, "ref-tr").await,
        1,
        "a repeated cancel frees nothing"
    );
    assert!(matches!(
        transition(store, &p1.id, "SENT", ids::now()).await,
        TransitionOutcome::Rejected { .. }
    ));
    assert_eq!(status_of(store, &p1.id).await, "CANCELLED");
    assert_eq!(status_of(store, &p2.id).await, "SCHEDULED");

    // Held for review, then blocked: the queue count is freed as well.
    let review = InvitationRow {
        status: "PENDING_REVIEW".into(),
        ..invitation("ref-tr", "r@example.com", "EMAIL")
    };
    created(store, new_invitation(review.clone())).await;
    want.push("invitation.created");
    assert_eq!(queued(store, "ref-tr").await, 2);
    let blocked = store
        .transition(&review.id, "BLOCKED", "fraud: velocity", ids::now())
        .await
        .unwrap();
    want.push("invitation.blocked");
    match blocked {
        TransitionOutcome::Applied(row) => {
            assert_eq!(
                (row.status.as_str(), row.status_reason.as_str()),
                ("BLOCKED", "fraud: velocity")
            );
        }
        other => panic!("expected Applied, got {other:?}"),
    }
    assert_eq!(queued(store, "ref-tr").await, 1);

    assert!(matches!(
        transition(store, "no-such-invitation", "SENT", ids::now()).await,
        TransitionOutcome::NotFound
    ));

    let events = assert_log(store, &want).await;
    let t = transition_payload(&events[1]);
    assert_eq!(t.invitation_id, e.id);
    assert_eq!(t.referrer_id, "ref-tr");
    assert_eq!(t.from, convert::status("SCHEDULED") as i32);
    assert_eq!(t.to, convert::status("SENT") as i32);
    assert_eq!(t.at, Some(ids::to_ts(sent_at)));
    assert_eq!(t.invitation_created_at, Some(ids::to_ts(e.created_at)));
    assert_eq!(
        transition_payload(events.last().unwrap()).reason,
        "fraud: velocity"
    );
}

async fn list_invitations<S: Harness>(store: &S) {
    let channel = |i: usize| if i.is_multiple_of(2) { "EMAIL" } else { "LINK" };
    let mut all = Vec::new();
    for i in 0..7 {
        all.push(
            created(
                store,
                new_invitation(invitation("ref-list", &format!("l{i}@example.com"), channel(i))),
            )
            .await,
        );
    }
    for i in 0..3 {
        created(
            store,
            new_invitation(invitation(
                "ref-list-other",
                &format!("o{i}@example.com"),
                "EMAIL",
            )),
        )
        .await;
    }

    // Page through three at a time, adding rows between page reads.
    let first = store.list_invitations("ref-list", None, None, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    let mut got: Vec<InvitationRow> = first;
    for i in 7..11 {
        all.push(
            created(
                store,
                new_invitation(invitation("ref-list", &format!("l{i}@example.com"), channel(i))),
            )
            .await,
        );
    }
    let mut pages = 1;
    loop {
        let after = got.last().map(|r| r.id.clone());
        let page = store
            .list_invitations("ref-list", None, after.as_deref(), 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        pages += 1;
        let last = page.len() < 3;
        got.extend(page);
        if pages == 2 {
            // Another row between the second and third pages.
            all.push(
                created(
                    store,
                    new_invitation(invitation("ref-list", "l11@example.com", "EMAIL")),
                )
                .await,
            );
        }
        if last {
            break;
        }
    }
    let mut want_ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    want_ids.sort();
    let got_ids: Vec<String> = got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(got_ids, want_ids, "every row once, in id order, across pages");
    assert_eq!(pages, 5);
    for row in &got {
        assert_eq!(row, all.iter().find(|r| r.id == row.id).unwrap());
    }

    // With a status filter, two at a time, adding a matching row between pages.
    let mut scheduled = Vec::new();
    let mut after: Option<String> = None;
    let mut added: Option<InvitationRow> = None;
    loop {
        let page = store
            .list_invitations("ref-list", Some("SCHEDULED"), after.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.iter().all(|r| r.status == "SCHEDULED"));
        let last = page.len() < 2;
        after = page.last().map(|r| r.id.clone()).or(after);
        scheduled.extend(page.into_iter().map(|r| r.id));
        if added.is_none() {
            let row = created(
                store,
                new_invitation(invitation("ref-list", "l12@example.com", "SMS")),
            )
            .await;
            all.push(row.clone());
            added = Some(row);
        }
        if last {
            break;
        }
    }
    let mut want_scheduled: Vec<String> = all
        .iter()
        .filter(|r| r.status == "SCHEDULED")
        .map(|r| r.id.clone())
        .collect();
    want_scheduled.sort();
    assert_eq!(scheduled, want_scheduled);
    assert_eq!(scheduled.len(), 8);

    let sent = store
        .list_invitations("ref-list", Some("SENT"), None, 100)
        .await
        .unwrap();
    assert_eq!(sent.len(), 5);
    assert!(
        sent.iter()
            .all(|r| r.status == "SENT" && r.referrer_id == "ref-list")
    );
    assert!(
        store
            .list_invitations("ref-list", Some("CANCELLED"), None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .list_invitations("ref-list-other", None, None, 100)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        store
            .list_invitations("nobody", None, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Only the row added during the filtered read lies after the first read's last id.
    let tail = store
        .list_invitations("ref-list", None, want_ids.last().map(String::as_str), 100)
        .await
        .unwrap();
    assert_eq!(tail, added.into_iter().collect::<Vec<_>>());

    // 13 for ref-list (8 EMAIL/SMS, 5 LINK with a sent event each) and 3 for the other.
    assert_eq!(log_events(store).await.len(), 13 + 5 + 3);
}

async fn clicks<S: Harness>(store: &S) {
    let code = code_row("ref-click");
    assert!(insert_code(store, &code).await);
    let inv = created(
        store,
        new_invitation(invitation("ref-click", "c@example.com", "LINK")),
    )
    .await;

    let k1 = click(&code.code, "click-1");
    let k2 = ClickRow {
        previous_click_id: "click-1".into(),
        ..click(&inv.code, "click-2")
    };
    let outcome = store
        .record_clicks(&[click("NOPE-222222", "click-0"), k1.clone(), k2.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ClicksOutcome {
            recorded: 2,
            unknown_codes: 1
        }
    );
    assert_eq!(store.get_click("click-0").await.unwrap(), None);
    assert_eq!(
        store.get_click("click-1").await.unwrap(),
        Some(ClickRow {
            referrer_id: "ref-click".into(),
            ..k1.clone()
        })
    );
    assert_eq!(
        store.get_click("click-2").await.unwrap(),
        Some(ClickRow {
            referrer_id: "ref-click".into(),
            invitation_id: Some(inv.id.clone()),
            ..k2.clone()
        })
    );
    assert_eq!(
        store
            .get_click("click-2")
            .await
            .unwrap()
            .unwrap()
            .previous_click_id,
        "click-1"
    );
    assert_eq!(code_counts(store, &code.code).await, (1, 0, 0));
    assert_eq!(code_counts(store, &inv.code).await, (1, 0, 0));
    assert_eq!(status_of(store, &inv.id).await, "CLICKED");

    // Replays are not counted again.
    let again = store.record_clicks(&[k1.clone(), k2.clone()]).await.unwrap();
    assert_eq!(again, ClicksOutcome::default());
    let twice = store
        .record_clicks(&[click(&code.code, "click-3"), click(&code.code, "click-3")])
        .await
        .unwrap();
    assert_eq!(
        twice,
        ClicksOutcome {
            recorded: 1,
            unknown_codes: 0
        }
    );
    assert_eq!(code_counts(store, &code.code).await, (2, 0, 0));
    assert_eq!(code_counts(store, &inv.code).await, (1, 0, 0));

    // A second click on the invitation's code counts, and the invitation stays CLICKED.
    let k4 = click(&inv.code, "click-4");
    assert_eq!(store.record_clicks(&[k4]).await.unwrap().recorded, 1);
    assert_eq!(code_counts(store, &inv.code).await, (2, 0, 0));
    assert_eq!(status_of(store, &inv.id).await, "CLICKED");

    let events = assert_log(
        store,
        &[
            "referral_code.created",
            "invitation.created",
            "invitation.sent",
            "click.recorded",
            "click.recorded",
            "invitation.clicked",
            "click.recorded",
            "click.recorded",
        ],
    )
    .await;
    let Some(Payload::ClickRecorded(c)) = &events[4].payload else {
        panic!("expected ClickRecorded")
    };
    assert_eq!(c.click_id, "click-2");
    assert_eq!(c.code, inv.code);
    assert_eq!(c.referrer_id, "ref-click");
    assert_eq!(c.invitation_id, inv.id);
    assert_eq!(transition_payload(&events[5]).invitation_id, inv.id);

    // `?inv=` on a personal code is believed for the same referrer's invitation only; on an
    // invitation's own code, the code's invitation stands whatever is named.
    let other = created(
        store,
        new_invitation(invitation("ref-other", "o@example.com", "LINK")),
    )
    .await;
    let named = |code: &str, id: &str, inv: &str| ClickRow {
        invitation_id: Some(inv.to_string()),
        ..click(code, id)
    };
    let batch = [
        named(&code.code, "click-own", &inv.id),
        named(&code.code, "click-foreign", &other.id),
        named(&inv.code, "click-swapped", &other.id),
    ];
    assert_eq!(store.record_clicks(&batch).await.unwrap().recorded, 3);
    let invitation_of =
        |id: &'static str| async move { store.get_click(id).await.unwrap().unwrap().invitation_id };
    assert_eq!(invitation_of("click-own").await, Some(inv.id.clone()));
    assert_eq!(invitation_of("click-foreign").await, None);
    assert_eq!(invitation_of("click-swapped").await, Some(inv.id.clone()));
    assert_eq!(
        status_of(store, &other.id).await,
        "SENT",
        "a foreign click moves nothing"
    );
}

async fn signups<S: Harness>(store: &S) {
    let inv = created(
        store,
        new_invitation(invitation("ref-s", "bride@example.com", "LINK")),
    )
    .await;
    let first = attributed_signup("user-1", &inv);
    assert_eq!(store.insert_signup(&first).await.unwrap(), first);
    assert_eq!(store.find_signup("user-1").await.unwrap(), Some(first.clone()));
    assert_eq!(status_of(store, &inv.id).await, "SIGNED_UP");
    assert_eq!(code_counts(store, &inv.code).await, (0, 1, 0));

    // Once per user: a second signup returns the first, unchanged, and writes nothing.
    let events_before = log_events(store).await.len();
    let second = unattributed_signup("user-1", "someone@example.com");
    assert_eq!(store.insert_signup(&second).await.unwrap(), first);
    assert_eq!(store.find_signup("user-1").await.unwrap(), Some(first.clone()));
    let replay = SignupRow {
        id: ids::new_id(),
        ..first.clone()
    };
    assert_eq!(store.insert_signup(&replay).await.unwrap(), first);
    assert_eq!(code_counts(store, &inv.code).await, (0, 1, 0));
    assert_eq!(log_events(store).await.len(), events_before);
    assert_eq!(store.find_signup("nobody").await.unwrap(), None);

    // Unattributed: recorded, nothing else moves.
    let plain = unattributed_signup("user-2", "guest@example.com");
    assert_eq!(store.insert_signup(&plain).await.unwrap(), plain);
    assert_eq!(store.find_signup("user-2").await.unwrap(), Some(plain));

    // The referrer's own e-mail, if they signed up through us.
    assert_eq!(store.referrer_email("ref-s").await.unwrap(), None);
    store
        .insert_signup(&unattributed_signup("ref-s", "anna@example.com"))
        .await
        .unwrap();
    assert_eq!(
        store.referrer_email("ref-s").await.unwrap(),
        Some(email_key("anna@example.com")),
        "the keyed hash, never the address"
    );
    store
        .insert_signup(&unattributed_signup("ref-no-email", ""))
        .await
        .unwrap();
    assert_eq!(store.referrer_email("ref-no-email").await.unwrap(), None);
    assert_eq!(store.referrer_email("ref-unknown").await.unwrap(), None);

    let events = assert_log(
        store,
        &[
            "invitation.created",
            "invitation.sent",
            "invitation.signed_up",
            "signup.recorded",
            "signup.recorded",
            "signup.recorded",
            "signup.recorded",
        ],
    )
    .await;
    assert_eq!(transition_payload(&events[2]).invitation_id, inv.id);
    let Some(Payload::SignupRecorded(s)) = &events[3].payload else {
        panic!("expected SignupRecorded")
    };
    assert_eq!(s.signup_id, first.id);
    assert_eq!(s.user_id, "user-1");
    assert!(s.attributed);
    assert_eq!(s.invitation_id, inv.id);
    assert_eq!(s.code, inv.code);
    assert_eq!(s.referrer_id, "ref-s");
    assert_eq!(s.invitation_created_at, Some(ids::to_ts(inv.created_at)));
    assert_eq!(s.channel, convert::channel("LINK") as i32);
    let Some(Payload::SignupRecorded(s)) = &events[4].payload else {
        panic!("expected SignupRecorded")
    };
    assert!(!s.attributed);
    assert_eq!((s.user_id.as_str(), s.invitation_id.as_str()), ("user-2", ""));
}

async fn open_invitations<S: Harness>(store: &S) {
    let now = ids::now();
    let groom = "groom@example.com";
    let key = &email_key(groom);
    let sent = |referrer: &str, age: Duration| created_at(invitation(referrer, groom, "LINK"), now - age);
    let a = created(store, new_invitation(sent("ref-o1", Duration::hours(3)))).await;
    let b = created(store, new_invitation(sent("ref-o2", Duration::hours(1)))).await;
    // Newer, but no longer open: cancelled, expired, signed up.
    let c = created(
        store,
        new_invitation(created_at(
            invitation("ref-o3", groom, "EMAIL"),
            now - Duration::minutes(30),
        )),
    )
    .await;
    applied(store, &c.id, "CANCELLED", now).await;
    let d = created(store, new_invitation(sent("ref-o4", Duration::minutes(20)))).await;
    applied(store, &d.id, "EXPIRED", now).await;
    let e = created(store, new_invitation(sent("ref-o5", Duration::minutes(10)))).await;
    applied(store, &e.id, "SIGNED_UP", now).await;
    // Another recipient.
    let other = created(
        store,
        new_invitation(invitation("ref-o6", "other@example.com", "LINK")),
    )
    .await;

    let open = |since: DateTime<Utc>| store.open_invitation_for(key, since);
    assert_eq!(
        open(now - Duration::days(30)).await.unwrap().map(|r| r.id),
        Some(b.id.clone())
    );
    assert_eq!(open(now - Duration::minutes(90)).await.unwrap(), Some(b.clone()));
    assert_eq!(
        open(b.created_at).await.unwrap(),
        None,
        "only invitations after `since`"
    );
    assert_eq!(
        store
            .open_invitation_for(&email_key("other@example.com"), now - Duration::days(1))
            .await
            .unwrap()
            .map(|r| r.id),
        Some(other.id)
    );
    assert_eq!(
        store
            .open_invitation_for(&email_key("nobody@example.com"), now - Duration::days(1))
            .await
            .unwrap(),
        None
    );

    // Once B is taken, A is the newest open one.
    applied(store, &b.id, "CLICKED", now).await;
    assert_eq!(
        open(now - Duration::days(1)).await.unwrap().map(|r| r.id),
        Some(b.id.clone())
    );
    applied(store, &b.id, "SIGNED_UP", now).await;
    assert_eq!(
        open(now - Duration::days(1)).await.unwrap().map(|r| r.id),
        Some(a.id.clone())
    );
    assert_eq!(open(now - Duration::hours(2)).await.unwrap(), None);

    assert_log(
        store,
        &[
            "invitation.created",
            "invitation.sent",
            "invitation.created",
            "invitation.sent",
            "invitation.created",
            "invitation.cancelled",
            "invitation.created",
            "invitation.sent",
            "invitation.expired",
            "invitation.created",
            "invitation.sent",
            "invitation.signed_up",
            "invitation.created",
            "invitation.sent",
            "invitation.clicked",
            "invitation.signed_up",
        ],
    )
    .await;
}

async fn conversions<S: Harness>(store: &S) {
    let inv = created(
        store,
        new_invitation(invitation("ref-v", "couple@example.com", "LINK")),
    )
    .await;
    let signup = attributed_signup("user-v", &inv);
    store.insert_signup(&signup).await.unwrap();
    let mut want = vec![
        "invitation.created",
        "invitation.sent",
        "invitation.signed_up",
        "signup.recorded",
    ];

    // FREE (or zero) is never the first paid one; attribution is copied from the signup.
    let free = record_conversion(store, conversion("user-v", 0, "FREE")).await;
    want.push("conversion.recorded");
    assert!(!free.first_paid);
    assert!(free.attributed);
    assert_eq!(free.referrer_id.as_deref(), Some("ref-v"));
    assert_eq!(free.invitation_id.as_deref(), Some(inv.id.as_str()));
    assert_eq!(free.flow.as_deref(), Some("SUPPLIER_TO_COUPLE"));
    assert_eq!(status_of(store, &inv.id).await, "SIGNED_UP");
    assert_eq!(code_counts(store, &inv.code).await, (0, 1, 0));

    let paid = record_conversion(store, conversion("user-v", 2500, "STARTER")).await;
    want.extend(["invitation.converted", "conversion.recorded"]);
    assert!(paid.first_paid);
    assert!(paid.attributed);
    assert_eq!(paid.referrer_id.as_deref(), Some("ref-v"));
    assert_eq!(paid.invitation_id.as_deref(), Some(inv.id.as_str()));
    assert_eq!(status_of(store, &inv.id).await, "CONVERTED");
    assert_eq!(code_counts(store, &inv.code).await, (0, 1, 1));

    let later = record_conversion(store, conversion("user-v", 9900, "PROFESSIONAL")).await;
    want.push("conversion.recorded");
    assert!(!later.first_paid);
    assert!(later.attributed, "later ones are still recorded for revenue");
    assert_eq!(code_counts(store, &inv.code).await, (0, 1, 1));

    // No signup at all: unattributed; free or zero-value ones never count as first paid.
    let free_plan = record_conversion(store, conversion("user-x", 500, "FREE")).await;
    let zero = record_conversion(store, conversion("user-x", 0, "STARTER")).await;
    let first = record_conversion(store, conversion("user-x", 100, "STARTER")).await;
    let second = record_conversion(store, conversion("user-x", 100, "STARTER")).await;
    want.extend(["conversion.recorded"; 4]);
    assert_eq!(
        [
            free_plan.first_paid,
            zero.first_paid,
            first.first_paid,
            second.first_paid
        ],
        [false, false, true, false]
    );
    for row in [&free_plan, &zero, &first, &second] {
        assert!(!row.attributed);
        assert_eq!(
            (&row.referrer_id, &row.invitation_id, &row.flow),
            (&None, &None, &None)
        );
    }

    // An unattributed signup copies nothing.
    store
        .insert_signup(&unattributed_signup("user-y", "y@example.com"))
        .await
        .unwrap();
    let y = record_conversion(store, conversion("user-y", 4900, "SCALE")).await;
    want.extend(["signup.recorded", "conversion.recorded"]);
    assert!(y.first_paid && !y.attributed && y.referrer_id.is_none());

    let events = assert_log(store, &want).await;
    let conversions: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::ConversionRecorded(c)) => Some(c),
            _ => None,
        })
        .collect();
    let flags: Vec<bool> = conversions.iter().map(|c| c.first_paid).collect();
    assert_eq!(flags, [false, true, false, false, false, true, false, true]);
    let c = conversions[1];
    assert_eq!(c.conversion_id, paid.id);
    assert_eq!(c.user_id, "user-v");
    assert_eq!(
        c.value.as_ref().map(|m| (m.amount_minor, m.currency.as_str())),
        Some((2500, "GBP"))
    );
    assert_eq!(c.plan, convert::plan("STARTER") as i32);
    assert!(c.attributed);
    assert_eq!(c.referrer_id, "ref-v");
    assert_eq!(c.invitation_id, inv.id);
    assert_eq!(c.click_at, signup.click_at.map(ids::to_ts));
    let converted = transition_payload(&events[5]);
    assert_eq!(converted.invitation_id, inv.id);
    assert_eq!(converted.to, convert::status("CONVERTED") as i32);
}

async fn expire_due<S: Harness>(store: &S) {
    let now = ids::now();
    let sent_days_ago = |referrer: &str, days: i64| {
        created_at(
            invitation(referrer, &format!("{referrer}@example.com"), "LINK"),
            now - Duration::days(days),
        )
    };
    let a = created(store, new_invitation(sent_days_ago("ref-ea", 31))).await;
    let d = created(store, new_invitation(sent_days_ago("ref-ed", 32))).await;
    applied(store, &d.id, "CLICKED", now - Duration::days(20)).await;
    let b = created(store, new_invitation(sent_days_ago("ref-eb", 29))).await;
    let c = created(
        store,
        new_invitation(invitation("ref-ec", "ec@example.com", "EMAIL")),
    )
    .await;
    let e = created(store, new_invitation(sent_days_ago("ref-ee", 33))).await;
    applied(store, &e.id, "SIGNED_UP", now - Duration::days(10)).await;
    let mut want = vec![
        "invitation.created",
        "invitation.sent",
        "invitation.created",
        "invitation.sent",
        "invitation.clicked",
        "invitation.created",
        "invitation.sent",
        "invitation.created",
        "invitation.created",
        "invitation.sent",
        "invitation.signed_up",
    ];

    // Oldest expiry first, `limit` at a time.
    assert_eq!(store.expire_due(now, 1).await.unwrap(), 1);
    assert_eq!(status_of(store, &d.id).await, "EXPIRED");
    assert_eq!(status_of(store, &a.id).await, "SENT");
    assert_eq!(store.expire_due(now, 100).await.unwrap(), 1);
    want.extend(["invitation.expired", "invitation.expired"]);
    let expired = get_invitation(store, &a.id).await;
    assert_eq!(expired.status, "EXPIRED");
    assert!(!expired.status_reason.is_empty());
    assert_eq!(expired.sent_at, a.sent_at);
    assert_eq!(store.expire_due(now, 100).await.unwrap(), 0);
    assert_eq!(status_of(store, &b.id).await, "SENT");
    assert_eq!(status_of(store, &c.id).await, "SCHEDULED");
    assert_eq!(status_of(store, &e.id).await, "SIGNED_UP");

    // B's window closes a day later.
    assert_eq!(store.expire_due(now + Duration::days(2), 100).await.unwrap(), 1);
    want.push("invitation.expired");
    assert_eq!(status_of(store, &b.id).await, "EXPIRED");
    assert_eq!(status_of(store, &c.id).await, "SCHEDULED");
    assert_eq!(status_of(store, &e.id).await, "SIGNED_UP");

    let events = assert_log(store, &want).await;
    let t = transition_payload(&events[11]);
    assert_eq!(t.invitation_id, d.id);
    assert_eq!(t.from, convert::status("CLICKED") as i32);
    assert_eq!(t.at, Some(ids::to_ts(now)));
    assert_eq!(transition_payload(&events[12]).invitation_id, a.id);
    assert_eq!(transition_payload(&events[13]).invitation_id, b.id);
}

/// The relay (not the test) numbers events: after a mixed run, the head reaches n by
/// itself, and reads page through the log from any offset.
async fn outbox_relay<S: Harness>(store: &S) {
    let code = code_row("ref-ob");
    assert!(insert_code(store, &code).await);
    store
        .set_tier("ref-ob", "PREMIUM", &tier_audit("ref-ob"))
        .await
        .unwrap();
    let link = created(
        store,
        new_invitation(invitation("ref-ob", "x@example.com", "LINK")),
    )
    .await;
    let email = created(
        store,
        new_invitation(invitation("ref-ob", "y@example.com", "EMAIL")),
    )
    .await;
    applied(store, &email.id, "SENT", ids::now()).await;
    store
        .record_clicks(&[click(&link.code, "ob-click")])
        .await
        .unwrap();
    store
        .insert_signup(&attributed_signup("ob-user", &link))
        .await
        .unwrap();
    store
        .record_conversion(conversion("ob-user", 1000, "STARTER"))
        .await
        .unwrap();
    let want = [
        ("referral_code.created", code.code.as_str()),
        ("referrer.tier_changed", "ref-ob"),
        ("invitation.created", link.id.as_str()),
        ("invitation.sent", link.id.as_str()),
        ("invitation.created", email.id.as_str()),
        ("invitation.sent", email.id.as_str()),
        ("click.recorded", "ob-click"),
        ("invitation.clicked", link.id.as_str()),
        ("invitation.signed_up", link.id.as_str()),
        ("signup.recorded", ""),
        ("invitation.converted", link.id.as_str()),
        ("conversion.recorded", ""),
    ];
    let n = want.len() as i64;

    let mut head = store.outbox().head();
    tokio::time::timeout(StdDuration::from_secs(10), head.wait_for(|h| *h >= n))
        .await
        .expect("the relay numbers committed events by itself")
        .expect("relay alive");
    let log = store.log();
    let rows = log.read_after(0, 1000).await.unwrap();
    assert_eq!(rows.len() as i64, n);
    let events: Vec<Event> = rows
        .iter()
        .map(|(offset, bytes)| events::decode(bytes, *offset).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = events
        .iter()
        .zip(&want)
        .map(|(e, (_, agg))| {
            (
                events::event_type(e),
                if agg.is_empty() {
                    ""
                } else {
                    e.aggregate_id.as_str()
                },
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_log(store, &want.map(|(t, _)| t)).await;

    // Reading from an offset returns what follows it, in order.
    let page: Vec<i64> = log
        .read_after(5, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(page, [6, 7, 8]);
    assert!(log.read_after(n, 10).await.unwrap().is_empty());

    // flush() waits for the next commit's offset.
    let more = created(
        store,
        new_invitation(invitation("ref-ob", "z@example.com", "EMAIL")),
    )
    .await;
    store.outbox().flush().await;
    tokio::time::timeout(StdDuration::from_secs(10), head.wait_for(|h| *h > n))
        .await
        .expect("the relay numbers the next commit")
        .expect("relay alive");
    let tail = log.read_after(n, 10).await.unwrap();
    assert_eq!(tail.len(), 1);
    let event = events::decode(&tail[0].1, tail[0].0).unwrap();
    assert_eq!(
        (event.offset, events::event_type(&event)),
        (n + 1, "invitation.created")
    );
    assert_eq!(event.aggregate_id, more.id);
}

/// The "late commit" trap: writers commit concurrently (a row inserted earlier may commit
/// later) while a reader follows the log with `assign_offsets` + `read_after(cursor)`. The
/// reader must see every event exactly once, in offset order, without gaps.
async fn concurrent_commits_are_not_skipped<S: Harness>(store: &S) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 25;
    let channel = |i: usize| if i.is_multiple_of(2) { "LINK" } else { "EMAIL" };
    // LINK invitations write two events (created, sent), EMAIL ones one.
    let per_task = (0..PER_TASK)
        .map(|i| if channel(i) == "LINK" { 2 } else { 1 })
        .sum::<i64>();
    let total = per_task * TASKS as i64;

    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..PER_TASK {
                    let row = invitation(
                        &format!("ref-conc-{t}"),
                        &format!("r{t}-{i}@example.com"),
                        channel(i),
                    );
                    ids.push(created(&store, new_invitation(row)).await.id);
                }
                ids
            })
        })
        .collect();

    let log = store.log();
    let follow = async {
        let mut cursor = 0i64;
        let mut seen_ids = HashSet::new();
        let mut created_ids = HashSet::new();
        loop {
            let writers_done = writers.iter().all(|w| w.is_finished());
            log.assign_offsets().await.expect("assign_offsets");
            let rows = log.read_after(cursor, 37).await.expect("read_after");
            for (offset, bytes) in &rows {
                assert_eq!(*offset, cursor + 1, "no gap after offset {cursor}");
                let event = events::decode(bytes, *offset).expect("decodable");
                assert!(seen_ids.insert(event.id.clone()), "event {} seen twice", event.id);
                if let Some(Payload::InvitationCreated(c)) = &event.payload {
                    created_ids.insert(c.invitation.as_ref().unwrap().invitation_id.clone());
                }
                cursor = *offset;
            }
            if writers_done && rows.is_empty() {
                break;
            }
            if rows.is_empty() {
                tokio::time::sleep(StdDuration::from_millis(1)).await;
            }
        }
        (cursor, seen_ids, created_ids)
    };
    let (cursor, seen_ids, created_ids) = tokio::time::timeout(StdDuration::from_secs(120), follow)
        .await
        .expect("the reader catches up");
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.expect("writer task"));
    }
    assert_eq!(written.len(), TASKS * PER_TASK);
    assert_eq!(cursor, total, "the reader reached the head");
    assert_eq!(seen_ids.len() as i64, total);
    assert_eq!(created_ids, written, "every invitation's creation was seen");

    // And the log as a whole is 1..=n with unique ids.
    let all = log_events(store).await;
    assert_eq!(all.len() as i64, total);
    assert_eq!(all.iter().map(|e| e.id.clone()).collect::<HashSet<_>>(), seen_ids);
}

// ---- delivery ------------------------------------------------------------------------

async fn stored<S: Store>(store: &S, referrer: &str, recipient: &str, channel: &str) -> InvitationRow {
    created(store, new_invitation(invitation(referrer, recipient, channel))).await
}

async fn claim<S: Store>(store: &S, now: DateTime<Utc>) -> Option<super::Claimed> {
    store
        .claim_due(now, now + Duration::seconds(60))
        .await
        .expect("claim_due")
}

/// A send that panicked `park_after` times is parked (audited), listed for admins, never
/// leased; released, it is leased again and leaves the list, the release audited.
async fn parked_sends_are_listed_and_released<S: Harness>(store: &S) {
    use referral_common::audit::{Actor, AuditEntry, action};
    let a = stored(store, "ref-park", "p@example.com", "EMAIL").await;
    let t = ids::now() + Duration::seconds(1);
    let first = claim(store, t).await.expect("a is due");
    assert!(
        !store
            .record_send_panic(&a.id, first.send_attempts, "boom", 2, t, t)
            .await
            .unwrap(),
        "one panic of two"
    );
    let second = claim(store, t).await.expect("retried");
    assert!(
        store
            .record_send_panic(&a.id, second.send_attempts, "boom again", 2, t, t)
            .await
            .unwrap()
    );
    assert!(claim(store, t).await.is_none(), "a parked row is not leased");
    let listed = store.parked_sends("~", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].invitation_id.as_str(),
            listed[0].reason.as_str(),
            listed[0].attempts
        ),
        (a.id.as_str(), "boom again", 2)
    );
    assert!(
        store.parked_sends(&a.id, 10).await.unwrap().is_empty(),
        "below its own id: none"
    );

    let admin = Actor {
        subject: "root".into(),
        role: "admin".into(),
        request_id: None,
    };
    let entry = AuditEntry::new(&admin, action::PARKED_RETRY, "parked_send", &a.id);
    assert!(store.release_parked_send(&a.id, &entry).await.unwrap());
    assert!(
        !store.release_parked_send(&a.id, &entry).await.unwrap(),
        "released once"
    );
    assert!(store.parked_sends("~", 10).await.unwrap().is_empty());
    let again = claim(store, t).await.expect("leased again once released");
    assert_eq!(again.row.id, a.id);
}

async fn sending_leases_retries_and_bounces<S: Harness>(store: &S) {
    let a = stored(store, "ref-send", "a@example.com", "EMAIL").await;
    let b = stored(store, "ref-send", "+447700900123", "SMS").await;
    let _link = stored(store, "ref-send", "l@example.com", "LINK").await;
    let later = created(
        store,
        new_invitation(created_at(
            invitation("ref-send", "later@example.com", "EMAIL"),
            ids::now() + Duration::days(2),
        )),
    )
    .await;
    assert_eq!(queued(store, "ref-send").await, 3);
    let t = ids::now() + Duration::seconds(1);

    // Each due row once, longest due first; the leased ones, LINK and the future one never.
    let first = claim(store, t).await.expect("a is due");
    assert_eq!((first.row.id.as_str(), first.send_attempts), (a.id.as_str(), 1));
    assert_eq!(first.row.referrer_name, "Ana");
    let second = claim(store, t).await.expect("b is due");
    assert_eq!((second.row.id.as_str(), second.send_attempts), (b.id.as_str(), 1));
    assert!(
        claim(store, t).await.is_none(),
        "leased rows are not handed out twice"
    );

    // Sent: SENT with its time and the InvitationSent event carrying the template.
    let TransitionOutcome::Applied(sent) = store.record_sent(&a.id, 1, "250 queued as X1", t).await.unwrap()
    else {
        panic!("record_sent applies SENT")
    };
    assert_eq!(sent.status, "SENT");
    assert_eq!(sent.sent_at, Some(t));
    assert_eq!(sent.expires_at, Some(t + Duration::days(30)));

    // A transient failure waits for its retry time, then is handed out as attempt 2.
    store
        .record_send_failure(&b.id, 1, "421 try later", Some(t + Duration::seconds(30)), t)
        .await
        .unwrap();
    assert_eq!(status_of(store, &b.id).await, "SCHEDULED");
    assert!(
        claim(store, t + Duration::seconds(10)).await.is_none(),
        "not before its retry time"
    );
    let retry = claim(store, t + Duration::seconds(31)).await.expect("b again");
    assert_eq!((retry.row.id.as_str(), retry.send_attempts), (b.id.as_str(), 2));
    // A stale attempt's outcome changes nothing; the holder's permanent failure bounces it.
    store
        .record_send_failure(&b.id, 1, "late news", None, t)
        .await
        .unwrap();
    assert_eq!(status_of(store, &b.id).await, "SCHEDULED");
    store
        .record_send_failure(&b.id, 2, "bounced: 550 no such user", None, t)
        .await
        .unwrap();
    let bounced = get_invitation(store, &b.id).await;
    assert_eq!(bounced.status, "BOUNCED");
    assert_eq!(bounced.status_reason, "bounced: 550 no such user");
    assert_eq!(queued(store, "ref-send").await, 1, "only `later` is still queued");

    // A sender that died holding a lease: the row comes back when the lease ends.
    let due_later = later.scheduled_for.expect("scheduled");
    let held = claim(store, due_later).await.expect("later is due then");
    assert_eq!(held.send_attempts, 1);
    // While a sender holds it, it may already be with the provider: no cancelling.
    assert!(matches!(
        store.transition(&later.id, "CANCELLED", "", due_later).await.unwrap(),
        TransitionOutcome::Rejected { ref reason, .. } if reason.contains("being sent")
    ));
    assert!(claim(store, due_later + Duration::seconds(59)).await.is_none());
    let taken_over = claim(store, due_later + Duration::seconds(61))
        .await
        .expect("lease ended");
    assert_eq!(
        (taken_over.row.id.as_str(), taken_over.send_attempts),
        (later.id.as_str(), 2)
    );

    let events = assert_log(
        store,
        &[
            "invitation.created",
            "invitation.created",
            "invitation.created",
            "invitation.sent",
            "invitation.created",
            "invitation.sent",
            "invitation.bounced",
        ],
    )
    .await;
    let sent_event = transition_payload(&events[5]);
    assert_eq!(sent_event.invitation_id, a.id);
    assert_eq!(
        (
            sent_event.template_id.as_str(),
            sent_event.template_variant.as_str()
        ),
        ("tpl-1", "A")
    );
}

async fn provider_events_are_applied_once<S: Harness>(store: &S) {
    use crate::domain::webhooks::{Outcome, ProviderEvent};
    let at = ids::now();
    let d = stored(store, "ref-hook", "d@example.com", "LINK").await;
    let e = stored(store, "ref-hook", "e@example.com", "LINK").await;
    let event = |id: &str, inv: Option<&str>, outcome: Outcome| ProviderEvent {
        event_id: id.into(),
        invitation_id: inv.map(str::to_string),
        kind: format!("{outcome:?}").to_lowercase(),
        outcome,
    };
    let apply = |events: Vec<ProviderEvent>| async move {
        store
            .apply_provider_events("resend", &events, &Default::default(), at)
            .await
            .expect("apply_provider_events")
    };
    let t = apply(vec![event("ev1", Some(&d.id), Outcome::Delivered)]).await;
    assert_eq!((t.recorded, t.ignored, t.duplicates), (1, 0, 0));
    assert_eq!(status_of(store, &d.id).await, "DELIVERED");
    let t = apply(vec![event("ev1", Some(&d.id), Outcome::Delivered)]).await;
    assert_eq!(
        (t.recorded, t.ignored, t.duplicates),
        (0, 0, 1),
        "a replay is a no-op"
    );
    // The same id from another provider is another event.
    let other = store
        .apply_provider_events(
            "postmark",
            &[event("ev1", Some(&d.id), Outcome::Opened)],
            &Default::default(),
            at,
        )
        .await
        .unwrap();
    assert_eq!(other.recorded, 1);
    let t = apply(vec![
        event("ev2", Some(&d.id), Outcome::Clicked),
        event("ev3", Some(&d.id), Outcome::Delivered),
        event("ev4", Some("no-such-invitation"), Outcome::Delivered),
        event("ev5", None, Outcome::Opened),
        event("ev6", Some(&d.id), Outcome::Ignored),
        event("ev7", Some(&e.id), Outcome::Complained),
    ])
    .await;
    assert_eq!((t.recorded, t.ignored, t.duplicates), (2, 4, 0));
    assert_eq!(
        status_of(store, &d.id).await,
        "CLICKED",
        "a late delivery never moves it back"
    );
    let complained = get_invitation(store, &e.id).await;
    assert_eq!(complained.status, "DELIVERED");
    assert!(
        complained.status_reason.contains("spam"),
        "{}",
        complained.status_reason
    );
    let t = apply(vec![event("ev8", Some(&e.id), Outcome::Bounced)]).await;
    assert_eq!(t.recorded, 1);
    assert_eq!(status_of(store, &e.id).await, "BOUNCED");
    assert_log(
        store,
        &[
            "invitation.created",
            "invitation.sent",
            "invitation.created",
            "invitation.sent",
            "invitation.delivered",
            "invitation.opened",
            "invitation.clicked",
            "invitation.delivered",
            "invitation.bounced",
        ],
    )
    .await;
}

/// Counts what it is asked to send; with `hang`, never answers (a replica that dies mid-send).
#[derive(Default)]
struct TestSender {
    sent: Mutex<Vec<String>>,
    hang: bool,
}

#[tonic::async_trait]
impl crate::adapters::sender::EmailSender for TestSender {
    async fn send_email(
        &self,
        e: &crate::adapters::sender::OutgoingEmail,
    ) -> Result<crate::adapters::sender::Receipt, crate::domain::delivery::SendFailure> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        // Long enough for another replica to look at the same rows meanwhile.
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        self.sent.lock().unwrap().push(e.invitation_id.clone());
        Ok(Default::default())
    }
}

#[tonic::async_trait]
impl crate::adapters::sender::SmsSender for TestSender {
    async fn send_sms(
        &self,
        s: &crate::adapters::sender::OutgoingSms,
    ) -> Result<crate::adapters::sender::Receipt, crate::domain::delivery::SendFailure> {
        self.sent.lock().unwrap().push(s.invitation_id.clone());
        Ok(Default::default())
    }
}

fn test_scheduler<S: Store>(
    store: S,
    sender: Arc<TestSender>,
    clock: crate::app::clock::Clock,
) -> crate::scheduler::Scheduler<S> {
    use crate::domain::templates::{Catalog, DEFAULT_CATALOG};
    let settings = crate::scheduler::SchedulerSettings {
        tick: StdDuration::from_millis(10),
        lease: Duration::seconds(60),
        retry: Default::default(),
        public_url: "http://127.0.0.1:8080".into(),
        park_after: 5,
        fault: Default::default(),
        consent: crate::app::consent::ConsentSettings::for_tests(),
    };
    let senders = crate::adapters::sender::Senders {
        email: sender.clone(),
        sms: sender,
        from: "Test <t@example.com>".parse().unwrap(),
    };
    let catalog = Arc::new(Catalog::parse(DEFAULT_CATALOG).unwrap());
    crate::scheduler::Scheduler::new(store, senders, catalog, clock, settings)
}

/// A replica dies while its provider call hangs: nothing is lost, and no other replica
/// sends the message until the lease ends; then one does, once.
async fn a_crashed_sender_is_taken_over_after_its_lease<S: Harness>(store: &S) {
    let inv = stored(store, "ref-crash", "c@example.com", "EMAIL").await;
    let clock = crate::app::clock::Clock::system();
    let dead = Arc::new(TestSender {
        hang: true,
        ..Default::default()
    });
    let dying = test_scheduler(store.clone(), dead.clone(), clock.clone());
    let task = tokio::spawn(async move { dying.send_next().await });
    // With nothing to send it would return at once; it hangs, so it holds the row (the
    // attempt recorded before the provider call). Then the replica dies.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(
        !task.is_finished(),
        "the dying replica is inside the provider call"
    );
    task.abort();
    let alive = Arc::new(TestSender::default());
    let survivor = test_scheduler(store.clone(), alive.clone(), clock.clone());
    assert!(
        !survivor.send_next().await.unwrap(),
        "nothing to send while the lease holds"
    );
    assert!(alive.sent.lock().unwrap().is_empty());
    clock.set(ids::now() + Duration::seconds(61));
    assert!(
        survivor.send_next().await.unwrap(),
        "taken over when the lease ends"
    );
    assert!(!survivor.send_next().await.unwrap(), "and only once");
    assert_eq!(*alive.sent.lock().unwrap(), vec![inv.id.clone()]);
    assert_eq!(status_of(store, &inv.id).await, "SENT");
    assert!(dead.sent.lock().unwrap().is_empty());
}

/// Replicas racing: two schedulers on two connections to the same database send every due
/// invitation exactly once.
async fn two_schedulers_send_each_invitation_once<S: Store>(a: S, b: S) {
    let mut ids_created = HashSet::new();
    for i in 0..30 {
        let mut row = invitation(
            &format!("ref-race-{}", i % 3),
            &format!("r{i}@example.com"),
            "EMAIL",
        );
        row.template_id = "supplier-to-couple".into();
        ids_created.insert(created(&a, new_invitation(row)).await.id);
    }
    let sender = Arc::new(TestSender::default());
    let clock = crate::app::clock::Clock::system();
    let one = test_scheduler(a.clone(), sender.clone(), clock.clone());
    let two = test_scheduler(b, sender.clone(), clock);
    let drain =
        |s: crate::scheduler::Scheduler<S>| async move { while s.send_next().await.expect("send_next") {} };
    tokio::join!(drain(one), drain(two));
    let sent = sender.sent.lock().unwrap().clone();
    let unique: HashSet<String> = sent.iter().cloned().collect();
    assert_eq!(sent.len(), 30, "30 sends for 30 invitations: {sent:?}");
    assert_eq!(unique, ids_created, "each invitation exactly once");
    for id in &ids_created {
        assert_eq!(status_of(&a, id).await, "SENT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_schedulers_send_each_invitation_once() {
    let db = TestDb::sqlite(SqliteStore::SERVICE);
    let url = db.url().to_string();
    referral_test_support::run_on(db, async |store: &SqliteStore| {
        let replica = SqliteStore::connect(&url, pii())
            .await
            .expect("second connection");
        two_schedulers_send_each_invitation_once(store.clone(), replica).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_two_schedulers_send_each_invitation_once() {
    let test = "pg_two_schedulers_send_each_invitation_once";
    let Some(db) = TestDb::postgres(PgStore::SERVICE, test) else {
        return;
    };
    let (url, schema) = (db.url().to_string(), db.schema().to_string());
    referral_test_support::run_on(db, async |store: &PgStore| {
        let replica = PgStore::connect(&url, &schema, pii()).await.expect("second pool");
        two_schedulers_send_each_invitation_once(store.clone(), replica.clone()).await;
        replica.pool().close().await;
    })
    .await;
}

async fn provider_events_are_forgotten_after_retention<S: Harness>(store: &S) {
    use crate::domain::webhooks::{Outcome, ProviderEvent};
    let d = stored(store, "ref-retain", "r@example.com", "LINK").await;
    let event = |id: &str| ProviderEvent {
        event_id: id.into(),
        invitation_id: Some(d.id.clone()),
        kind: "delivered".into(),
        outcome: Outcome::Delivered,
    };
    let now = ids::now();
    let old = now - chrono::Duration::days(40);
    for (id, at) in [("old-1", old), ("old-2", old), ("old-3", old), ("new-1", now)] {
        store
            .apply_provider_events("resend", &[event(id)], &Default::default(), at)
            .await
            .expect("apply");
    }
    let cutoff = now - chrono::Duration::days(30);
    // Bounded: two now, the third on the next call, then nothing.
    assert_eq!(store.forget_provider_events(cutoff, 2).await.expect("forget"), 2);
    assert_eq!(store.forget_provider_events(cutoff, 2).await.expect("forget"), 1);
    assert_eq!(store.forget_provider_events(cutoff, 2).await.expect("forget"), 0);
    // The recent id still guards against its replay; a forgotten one is no longer known as a
    // duplicate, and applying it again changes nothing (the status only moves forward).
    let t = store
        .apply_provider_events(
            "resend",
            &[event("new-1"), event("old-1")],
            &Default::default(),
            now,
        )
        .await
        .expect("apply");
    assert_eq!((t.recorded, t.ignored, t.duplicates), (0, 1, 1));
    assert_eq!(status_of(store, &d.id).await, "DELIVERED");
}

// ---- audit ----------------------------------------------------------------------------

/// A tier change and an admin's cancellation commit with their audit rows; a refused
/// cancellation and a referrer's own cancellation write none.
async fn audited_changes_commit_with_their_row<S: Harness>(store: &S) {
    store
        .set_tier("ref-a", "PREMIUM", &tier_audit("ref-a"))
        .await
        .unwrap();
    store
        .set_tier("ref-a", "SUPER_CONNECTOR", &tier_audit("ref-a"))
        .await
        .unwrap();
    let rows = audit_rows(store).await;
    assert_eq!(rows.len(), 2);
    let json = |v: &Option<pbjson_types::Value>| serde_json::to_value(v).unwrap();
    assert_eq!(rows[1].action, "referrer.tier.set");
    assert_eq!(
        (rows[1].actor.as_str(), rows[1].actor_role.as_str()),
        ("admin-1", "admin")
    );
    assert_eq!(rows[1].request_id, "req-audit");
    assert_eq!(json(&rows[1].before), serde_json::json!({"tier": "REGULAR"}));
    assert_eq!(json(&rows[1].after), serde_json::json!({"tier": "PREMIUM"}));
    assert_eq!(json(&rows[0].before), serde_json::json!({"tier": "PREMIUM"}));
    assert_eq!(
        json(&rows[0].after),
        serde_json::json!({"tier": "SUPER_CONNECTOR"})
    );

    let scheduled = created(
        store,
        new_invitation(invitation("ref-a", "c@example.com", "EMAIL")),
    )
    .await;
    let entry = AuditEntry::new(&admin(), action::INVITATION_CANCEL, "invitation", &scheduled.id);
    let out = store
        .cancel(&scheduled.id, "cancelled by admin-1", ids::now(), Some(&entry))
        .await
        .unwrap();
    assert!(matches!(out, TransitionOutcome::Applied(_)), "{out:?}");
    let rows = audit_rows(store).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0].action.as_str(), rows[0].subject_id.as_str()),
        ("invitation.cancel", scheduled.id.as_str())
    );
    assert_eq!(json(&rows[0].before)["status"], "SCHEDULED");
    assert_eq!(json(&rows[0].after)["status"], "CANCELLED");
    assert_eq!(rows[0].note, "cancelled by admin-1");

    // Refused (already sent): no change, so no row.
    let sent = created(
        store,
        new_invitation(invitation("ref-a", "d@example.com", "LINK")),
    )
    .await;
    let entry = AuditEntry::new(&admin(), action::INVITATION_CANCEL, "invitation", &sent.id);
    let out = store
        .cancel(&sent.id, "cancelled by admin-1", ids::now(), Some(&entry))
        .await
        .unwrap();
    assert!(matches!(out, TransitionOutcome::Rejected { .. }), "{out:?}");
    // The referrer's own cancellation is not an admin action.
    let own = created(
        store,
        new_invitation(invitation("ref-a", "e@example.com", "EMAIL")),
    )
    .await;
    let out = store
        .cancel(&own.id, "cancelled by ref-a", ids::now(), None)
        .await
        .unwrap();
    assert!(matches!(out, TransitionOutcome::Applied(_)), "{out:?}");
    assert_eq!(audit_rows(store).await.len(), 3);
}
