//! The store conformance suite: one set of cases, written once against the `Store` trait,
//! run on SQLite always (a fresh file per test) and on Postgres when `TEST_DATABASE_URL` is
//! set (a fresh schema per test). The concurrency cases race real tasks against one store.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Duration, Utc};
use referral_common::{
    audit::{Actor, AuditEntry, action},
    events as common_events, ids,
    outbox::EventLogStore,
};
use referral_proto::{
    common::v1::{FraudAction, PartyKind},
    events::v1::Event,
    incentive::v1::RewardProgram,
};
use sqlx::{PgPool, SqlitePool};

use super::{CampaignRow, Consumed, Decision, EntryRow, PayoutOutcome, PgStore, SqliteStore, Store, Work};
use crate::{
    app::apply_events::apply,
    domain::{program, rewards::Conversion},
    store::events as incentive_events,
};

// ---- harness -------------------------------------------------------------------------

trait Harness: Store {
    type Log: EventLogStore;
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
    "incentive": SqliteStore, PgStore;
    ready(store) { crate::seed(&store).await.expect("seed") }
}

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 4;
    programs_are_data: sqlite_programs_are_data, pg_programs_are_data;
    conversions_book_rewards_milestones_and_badges_once: sqlite_conversions_book_rewards_milestones_and_badges_once, pg_conversions_book_rewards_milestones_and_badges_once;
    the_scheduler_makes_rewards_eligible_then_expired: sqlite_the_scheduler_makes_rewards_eligible_then_expired, pg_the_scheduler_makes_rewards_eligible_then_expired;
    a_campaign_never_pays_past_its_cap_under_concurrency: sqlite_a_campaign_never_pays_past_its_cap_under_concurrency, pg_a_campaign_never_pays_past_its_cap_under_concurrency;
    concurrent_payouts_pay_once: sqlite_concurrent_payouts_pay_once, pg_concurrent_payouts_pay_once;
    fraud_holds_voids_releases_and_claws_back_in_either_order: sqlite_fraud_holds_voids_releases_and_claws_back_in_either_order, pg_fraud_holds_voids_releases_and_claws_back_in_either_order;
    past_conversions_feed_simulations: sqlite_past_conversions_feed_simulations, pg_past_conversions_feed_simulations;
    erasure_keeps_the_books_under_pseudonyms: sqlite_erasure_keeps_the_books_under_pseudonyms, pg_erasure_keeps_the_books_under_pseudonyms;
}

// ---- fixtures ------------------------------------------------------------------------

static OFFSET: AtomicI64 = AtomicI64::new(1);

fn consumed(work: Work) -> Consumed {
    Consumed {
        event_id: ids::new_id(),
        offset: OFFSET.fetch_add(1, Ordering::Relaxed),
        work,
    }
}

fn conversion(referrer: &str, referee: &str, value: i64, at: DateTime<Utc>) -> Conversion {
    Conversion {
        conversion_id: format!("conv-{referee}"),
        referee_id: referee.into(),
        referee_kind: PartyKind::Couple,
        referrer_id: referrer.into(),
        referrer_kind: PartyKind::Supplier,
        value_minor: value,
        currency: "GBP".into(),
        at,
    }
}

fn converted(referrer: &str, referee: &str, value: i64) -> Consumed {
    consumed(Work::Conversion(
        Box::new(conversion(referrer, referee, value, ids::now())),
        FraudAction::Approve,
    ))
}

fn decision(
    subject_type: &str,
    subject_id: &str,
    referee: &str,
    action: FraudAction,
    resolution: bool,
) -> Consumed {
    consumed(Work::Decision(Decision {
        subject_type: subject_type.into(),
        subject_id: subject_id.into(),
        referee_id: referee.into(),
        action,
        resolution,
        at: ids::now(),
        origin: resolution.then(|| "admin-rev".to_string()),
    }))
}

async fn entries<S: Store>(store: &S, referrer: &str) -> Vec<EntryRow> {
    store.entries(referrer, None, 500).await.expect("entries")
}

fn summary(es: &[EntryRow]) -> Vec<(String, i64, String)> {
    es.iter()
        .map(|e| (e.kind.clone(), e.amount_minor, e.state.clone()))
        .collect()
}

async fn log_events<S: Harness>(store: &S) -> Vec<Event> {
    let log = store.log();
    let head = log.assign_offsets().await.expect("assign_offsets");
    let rows = log.read_after(0, 10_000).await.expect("read_after");
    assert_eq!(rows.len() as i64, head, "the head offset is the number of events");
    let mut seen = HashSet::new();
    rows.iter()
        .map(|(offset, bytes)| {
            let event = common_events::decode(bytes, *offset).expect("decodable event");
            assert!(seen.insert(event.id.clone()), "event ids are unique");
            assert_eq!(event.source, incentive_events::SOURCE);
            event
        })
        .collect()
}

fn count_of(events: &[Event], ty: &str) -> usize {
    events
        .iter()
        .filter(|e| common_events::event_type(e) == ty)
        .count()
}

/// `n` conversions of 200.00 by referees `{prefix}-1..` for `referrer` under a short hold,
/// made eligible.
async fn eligible_conversions<S: Store>(store: &S, referrer: &str, prefix: &str, n: usize) {
    short_hold(store).await;
    let batch: Vec<Consumed> = (1..=n)
        .map(|i| converted(referrer, &format!("{prefix}-{i}"), 20_000))
        .collect();
    apply(store, "invite", batch).await.expect("apply");
    store
        .advance(ids::now() + Duration::minutes(2), 100)
        .await
        .expect("advance");
}

/// A supplier program with a short hold, replacing the default for suppliers.
async fn short_hold<S: Store>(store: &S) {
    let mut p: RewardProgram = program::default_supplier();
    p.id = "supplier-fast".into();
    p.hold_period = Some(pbjson_types::Duration {
        seconds: 60,
        nanos: 0,
    });
    store
        .put_program(p, ids::now(), &audit_by_admin(action::REWARD_PROGRAM_PUT))
        .await
        .expect("put");
}

// ---- cases ---------------------------------------------------------------------------

async fn programs_are_data<S: Harness>(store: &S) {
    let listed = store.list_programs(None, 10).await.expect("list");
    let ids: Vec<_> = listed.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["couple-default", "supplier-default"]);
    // Seeding again (a restart) keeps what an admin changed.
    let mut changed = program::default_supplier();
    changed.name = "Changed".into();
    let first = store
        .put_program(changed, ids::now(), &audit_by_admin(action::REWARD_PROGRAM_PUT))
        .await
        .expect("put");
    crate::seed(store).await.expect("seed again");
    let got = store
        .get_program("supplier-default")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.name, "Changed");
    assert_eq!(got.created_at, listed[1].created_at, "created_at kept on replace");
    assert_eq!(got.updated_at, first.updated_at);
    // The most recently written active program of a kind is the one rewards use.
    short_hold(store).await;
    let active = store
        .active_program("SUPPLIER")
        .await
        .expect("active")
        .expect("one");
    assert_eq!(
        (active.id.as_str(), active.hold),
        ("supplier-fast", Duration::seconds(60))
    );
    let mut off = store.get_program("supplier-fast").await.unwrap().unwrap();
    off.active = Some(false);
    store
        .put_program(off, ids::now(), &audit_by_admin(action::REWARD_PROGRAM_PUT))
        .await
        .expect("put");
    let active = store.active_program("SUPPLIER").await.unwrap().unwrap();
    assert_eq!(active.id, "supplier-default");
    let page = store
        .list_programs(Some("couple-default"), 1)
        .await
        .expect("page");
    assert_eq!(page[0].id, "supplier-default");
    assert!(store.get_program("nope").await.unwrap().is_none());
}

async fn conversions_book_rewards_milestones_and_badges_once<S: Harness>(store: &S) {
    let batch: Vec<Consumed> = (1..=5)
        .map(|i| converted("sup", &format!("couple-{i}"), 20_000))
        .collect();
    let s = apply(store, "invite", batch.clone()).await.expect("apply");
    assert_eq!((s.applied, s.booked), (5, 7));
    // Redelivered after a crash: every event is a duplicate.
    let again = apply(store, "invite", batch).await.expect("apply");
    assert_eq!((again.applied, again.duplicates, again.booked), (0, 5, 0));
    // The same referee converting again under a new event id earns nothing more.
    let later = converted("sup", "couple-3", 90_000);
    // Its own offset, not the shared counter's: other cases draw from it in parallel.
    let last = later.offset;
    let s = apply(store, "invite", vec![later]).await.expect("apply");
    assert_eq!(s.booked, 0);
    assert_eq!(store.last_offset("invite").await.unwrap(), last);

    let es = entries(store, "sup").await;
    let conv: Vec<_> = es.iter().filter(|e| e.kind == "CONVERSION_REWARD").collect();
    assert_eq!(conv.len(), 5);
    assert!(
        conv.iter()
            .all(|e| e.amount_minor == 3_000 && e.state == "PENDING")
    );
    let ms: Vec<_> = es
        .iter()
        .filter(|e| e.kind == "MILESTONE_REWARD")
        .map(|e| (e.milestone, e.amount_minor, e.badge.as_str()))
        .collect();
    assert_eq!(ms, [(1, 2_500, ""), (5, 10_000, "BRONZE")]);
    let st = store.standing("sup").await.expect("standing");
    assert_eq!(
        (st.pending_minor, st.eligible_minor, st.paid_minor),
        (5 * 3_000 + 12_500, 0, 0)
    );
    assert_eq!(
        (st.successful_referrals, st.badges.clone()),
        (5, vec!["BRONZE".to_string()])
    );
    assert_eq!(st.referrer_kind.as_deref(), Some("SUPPLIER"));
    let events = log_events(store).await;
    assert_eq!(count_of(&events, "reward.granted"), 7);
}

async fn the_scheduler_makes_rewards_eligible_then_expired<S: Harness>(store: &S) {
    short_hold(store).await;
    apply(store, "invite", vec![converted("sup", "c1", 10_000)])
        .await
        .expect("apply");
    let now = ids::now();
    assert_eq!(
        store.advance(now, 100).await.unwrap().eligible,
        0,
        "still on hold"
    );
    let done = store.advance(now + Duration::seconds(61), 100).await.unwrap();
    assert_eq!((done.eligible, done.expired), (2, 0));
    assert!(entries(store, "sup").await.iter().all(|e| e.state == "ELIGIBLE"));
    assert_eq!(store.standing("sup").await.unwrap().eligible_minor, 1_500 + 2_500);
    let done = store.advance(now + Duration::days(366), 100).await.unwrap();
    assert_eq!((done.eligible, done.expired), (0, 2));
    let st = store.standing("sup").await.unwrap();
    assert_eq!((st.pending_minor, st.eligible_minor), (0, 0));
    let events = log_events(store).await;
    assert_eq!(
        (
            count_of(&events, "reward.eligible"),
            count_of(&events, "reward.expired")
        ),
        (2, 2)
    );
    assert!(matches!(
        store
            .create_payout("sup", now, &audit_by_admin(action::PAYOUT_CREATE))
            .await
            .unwrap(),
        PayoutOutcome::NothingToPay
    ));
}

async fn a_campaign_never_pays_past_its_cap_under_concurrency<S: Harness>(store: &S) {
    let now = ids::now();
    store
        .create_campaign(
            CampaignRow {
                id: "double".into(),
                name: "Double weekend".into(),
                starts_at: now - Duration::hours(1),
                ends_at: now + Duration::days(2),
                multiplier: 2.0,
                referrer_kind: Some("SUPPLIER".into()),
                cap_minor: Some(5_000),
                cap_currency: Some("GBP".into()),
                created_at: now,
                spent_hi: 0,
                spent_lo: 0,
            },
            &audit_by_admin(action::CAMPAIGN_CREATE),
        )
        .await
        .expect("campaign");
    // Twelve conversions of twelve suppliers land at once, one consumer batch each.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                apply(
                    &store,
                    "invite",
                    vec![converted(&format!("sup-{i}"), &format!("cp-{i}"), 20_000)],
                )
                .await
                .expect("apply")
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let campaigns = store.list_campaigns(Some(true), now, None, 10).await.unwrap();
    assert_eq!(campaigns[0].spent_minor(), 5_000, "spent exactly the cap");
    let mut bonus = 0;
    for i in 0..12 {
        for e in entries(store, &format!("sup-{i}")).await {
            bonus += e.campaign_bonus_minor;
            assert_eq!(
                e.amount_minor - e.campaign_bonus_minor,
                if e.milestone == 1 { 2_500 } else { 3_000 }
            );
        }
    }
    assert_eq!(bonus, 5_000, "never beyond the cap");
    assert!(
        store
            .list_campaigns(Some(false), now, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_payouts_pay_once<S: Harness>(store: &S) {
    eligible_conversions(store, "sup", "p", 3).await;
    let eligible = store.standing("sup").await.unwrap().eligible_minor;
    assert_eq!(eligible, 3 * 3_000 + 2_500);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_payout("sup", ids::now(), &audit_by_admin(action::PAYOUT_CREATE))
                    .await
                    .expect("payout")
            })
        })
        .collect();
    let mut paid = Vec::new();
    for t in tasks {
        if let PayoutOutcome::Paid(v) = t.await.expect("task") {
            paid.push(v);
        }
    }
    assert_eq!(paid.len(), 1, "exactly one payout");
    assert_eq!(paid[0].payout.amount_minor, eligible);
    assert_eq!(paid[0].entries.len(), 4);
    let st = store.standing("sup").await.unwrap();
    assert_eq!((st.eligible_minor, st.paid_minor), (0, eligible));
    let got = store
        .get_payout(&paid[0].payout.id)
        .await
        .unwrap()
        .expect("payout");
    assert_eq!(got, paid[0]);
    assert_eq!(count_of(&log_events(store).await, "payout.paid"), 1);
}

async fn fraud_holds_voids_releases_and_claws_back_in_either_order<S: Harness>(store: &S) {
    short_hold(store).await;
    // The assessment comes first (REVIEW), then the conversion: booked HELD.
    let early = decision("CONVERSION", "conv-u1", "u1", FraudAction::Review, false);
    apply(store, "fraud", vec![early]).await.unwrap();
    apply(store, "invite", vec![converted("sup", "u1", 20_000)])
        .await
        .unwrap();
    let states: Vec<_> = summary(&entries(store, "sup").await);
    assert_eq!(
        states,
        [
            ("CONVERSION_REWARD".to_string(), 3_000, "HELD".to_string()),
            ("MILESTONE_REWARD".to_string(), 2_500, "PENDING".to_string())
        ]
    );
    // A reviewer approves: released to PENDING, then eligible after the hold.
    let approve = decision("CONVERSION", "conv-u1", "", FraudAction::Approve, true);
    apply(store, "fraud", vec![approve]).await.unwrap();
    assert_eq!(entries(store, "sup").await[0].state, "PENDING");

    // The conversion comes first, then a REJECT: voided.
    apply(store, "invite", vec![converted("sup", "u2", 20_000)])
        .await
        .unwrap();
    let reject = decision("CONVERSION", "conv-u2", "u2", FraudAction::Reject, false);
    apply(store, "fraud", vec![reject]).await.unwrap();
    let u2: Vec<_> = entries(store, "sup")
        .await
        .into_iter()
        .filter(|e| e.referee_id == "u2" && e.kind == "CONVERSION_REWARD")
        .collect();
    assert_eq!(u2[0].state, "VOIDED");
    assert_eq!(store.standing("sup").await.unwrap().successful_referrals, 1);

    // A signup rejected before its conversion arrives: nothing is booked.
    let signup = decision("SIGNUP", "signup-u3", "u3", FraudAction::Reject, false);
    apply(store, "fraud", vec![signup]).await.unwrap();
    let s = apply(store, "invite", vec![converted("sup", "u3", 20_000)])
        .await
        .unwrap();
    assert_eq!(s.booked, 0);

    // Paid, then rejected on review: a negative clawback entry, the payment stays PAID.
    store
        .advance(ids::now() + Duration::minutes(2), 100)
        .await
        .unwrap();
    let PayoutOutcome::Paid(paid) = store
        .create_payout("sup", ids::now(), &audit_by_admin(action::PAYOUT_CREATE))
        .await
        .unwrap()
    else {
        panic!("something to pay");
    };
    assert_eq!(paid.payout.amount_minor, 3_000 + 2_500);
    let late = decision("CONVERSION", "conv-u1", "", FraudAction::Reject, true);
    let s = apply(store, "fraud", vec![late]).await.unwrap();
    assert_eq!(s.booked, 1);
    let es = entries(store, "sup").await;
    let claw: Vec<_> = es.iter().filter(|e| e.kind == "CLAWBACK").collect();
    assert_eq!(claw.len(), 1);
    assert_eq!(
        (claw[0].amount_minor, claw[0].state.as_str()),
        (-3_000, "ELIGIBLE")
    );
    assert!(claw[0].reason.contains(&paid.payout.id), "{}", claw[0].reason);
    let st = store.standing("sup").await.unwrap();
    assert_eq!((st.paid_minor, st.eligible_minor), (5_500, -3_000));
    // A repeat of the same rejection claws back nothing more.
    let again = decision("CONVERSION", "conv-u1", "", FraudAction::Reject, true);
    assert_eq!(apply(store, "fraud", vec![again]).await.unwrap().booked, 0);
    let events = log_events(store).await;
    assert_eq!(count_of(&events, "reward.voided"), 2, "the void and the clawback");
}

async fn past_conversions_feed_simulations<S: Harness>(store: &S) {
    let now = ids::now();
    let old = consumed(Work::Conversion(
        Box::new(conversion("sup", "old", 10_000, now - Duration::days(200))),
        FraudAction::Approve,
    ));
    let recent: Vec<Consumed> = ["a", "b"]
        .iter()
        .map(|r| {
            consumed(Work::Conversion(
                Box::new(conversion("sup", r, 10_000, now - Duration::days(10))),
                FraudAction::Approve,
            ))
        })
        .collect();
    apply(store, "invite", vec![old]).await.unwrap();
    apply(store, "invite", recent).await.unwrap();
    let reject = decision("CONVERSION", "conv-b", "b", FraudAction::Reject, false);
    apply(store, "fraud", vec![reject]).await.unwrap();
    let before = store.standing("sup").await.unwrap();
    let (past, prior) = store
        .past_conversions("SUPPLIER", now - Duration::days(90), now, 100)
        .await
        .unwrap();
    assert_eq!(past.len(), 2);
    assert_eq!(past.iter().filter(|p| p.rejected).count(), 1);
    assert_eq!(prior, [("sup".to_string(), 1)]);
    assert!(
        store
            .past_conversions("COUPLE", now - Duration::days(90), now, 100)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        store.standing("sup").await.unwrap(),
        before,
        "reading changes nothing"
    );
}

/// An admin's audit entry for a store call (the store completes it).
fn audit_by_admin(action: &str) -> AuditEntry {
    let actor = Actor {
        subject: "admin-1".into(),
        role: "admin".into(),
        request_id: None,
    };
    AuditEntry::new(&actor, action, "", "")
}

// ---- privacy (issue #16) -------------------------------------------------------------

fn subject(person_id: &str) -> referral_proto::common::v1::PrivacySubject {
    referral_proto::common::v1::PrivacySubject {
        person_id: person_id.into(),
        ..Default::default()
    }
}

async fn erasure_keeps_the_books_under_pseudonyms<S: Harness>(store: &S) {
    use referral_common::privacy::PersonData;

    use crate::app::privacy::PersonRecords;

    let pii = referral_common::pii::PiiKeys::for_tests();
    let records = PersonRecords::new(store.clone(), pii.clone());
    // "sup" brings in five couples (conversion rewards and the 1 and 5 milestones); one of them,
    // "cpl-1", is erased first, then "sup" itself after a payout.
    eligible_conversions(store, "sup", "cpl", 5).await;
    let PayoutOutcome::Paid(payout) = store
        .create_payout("sup", ids::now(), &audit_by_admin(action::PAYOUT_CREATE))
        .await
        .expect("payout")
    else {
        panic!("something to pay")
    };
    // One more conversion after the payout stays PENDING: three states in the books.
    apply(store, "invite", vec![converted("sup", "cpl-6", 20_000)])
        .await
        .expect("apply");
    let books = store.standing("sup").await.expect("standing");
    let sup_entries = summary(&entries(store, "sup").await);
    assert!(books.paid_minor > 0 && books.pending_minor > 0);

    // The couple's export shows the reward earned for them, not who earned it.
    // (Their conversion's reward and the first milestone it reached.)
    let for_couple = entries(store, "sup")
        .await
        .iter()
        .filter(|e| e.referee_id == "cpl-1")
        .count();
    assert_eq!(for_couple, 2);
    let (counts, doc) = records.export(&subject("cpl-1")).await.expect("export");
    assert_eq!(counts["rewardsEarnedForThem"], 2);
    assert_eq!(counts["rewardsEarned"], 0);
    assert_eq!(counts["conversions"], 1);
    assert_eq!(doc["rewardsEarnedForThem"][0]["kind"], "CONVERSION_REWARD");
    assert_eq!(doc["rewardsEarnedForThem"][0]["amount"]["amountMinor"], "3000");
    assert_eq!(doc["conversions"][0]["role"], "REFEREE");
    assert!(
        !doc.to_string().contains("\"sup\""),
        "no other person's id: {doc}"
    );

    let couple = pii.pseudonym("cpl-1");
    let counts = records.erase(&subject("cpl-1")).await.expect("erase couple");
    assert_eq!(counts["ledgerEntries"], 2);
    assert_eq!(counts["conversions"], 1);
    // The supplier's books are unchanged, amount for amount.
    assert_eq!(store.standing("sup").await.expect("standing"), books);
    assert_eq!(summary(&entries(store, "sup").await), sup_entries);
    let es = entries(store, "sup").await;
    assert!(
        es.iter().any(|e| e.referee_id == couple),
        "the couple's reward re-keyed"
    );
    assert!(es.iter().all(|e| e.referee_id != "cpl-1"));
    let (counts, _) = records.export(&subject("cpl-1")).await.expect("export after");
    assert!(
        counts.values().all(|n| *n == 0),
        "nothing left under the id: {counts:?}"
    );
    // A replayed conversion of the erased couple books nothing twice under its re-keyed key.
    let mut tx = store.begin_ledger().await.expect("tx");
    assert!(
        store
            .entry_by_key(&mut tx, &crate::domain::rewards::conversion_key(&couple))
            .await
            .expect("key")
            .is_some()
    );
    drop(tx);

    // Erasing the supplier moves the whole ledger, payouts included, to their pseudonym.
    let sup = pii.pseudonym("sup");
    let counts = records.erase(&subject("sup")).await.expect("erase supplier");
    assert_eq!(counts["ledgerEntries"], sup_entries.len() as i64);
    assert_eq!(counts["payouts"], 1);
    assert_eq!(counts["conversions"], 6);
    assert_eq!(store.standing(&sup).await.expect("standing"), books);
    assert_eq!(summary(&entries(store, &sup).await), sup_entries);
    assert!(entries(store, "sup").await.is_empty());
    assert_eq!(store.standing("sup").await.expect("standing"), Default::default());
    let got = store
        .get_payout(&payout.payout.id)
        .await
        .unwrap()
        .expect("payout kept");
    assert_eq!(
        (
            got.payout.referrer_id.as_str(),
            got.payout.amount_minor,
            &got.entries
        ),
        (sup.as_str(), payout.payout.amount_minor, &payout.entries)
    );
    let (counts, doc) = records.export(&subject(&sup)).await.expect("pseudonym's ledger");
    assert_eq!(counts["payouts"], 1);
    assert!(!doc.to_string().contains("\"cpl-"), "no referee ids: {doc}");

    // Idempotent: a second erasure finds nothing still personal.
    for person in ["sup", "cpl-1"] {
        let again = records.erase(&subject(person)).await.expect("again");
        assert!(again.values().all(|n| *n == 0), "{person}: {again:?}");
    }
    // A request whose pseudonym differs from ours (other lookup keys) is refused.
    let mut wrong = subject("cpl-2");
    wrong.pseudonym = "anon-000000000000000000000000".into();
    assert!(records.erase(&wrong).await.is_err());
    assert_eq!(
        entries(store, &sup)
            .await
            .iter()
            .filter(|e| e.referee_id == "cpl-2")
            .count(),
        1
    );
}
