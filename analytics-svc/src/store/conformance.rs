//! The store conformance suite: one set of cases, written once against the `Store` trait,
//! run on SQLite always (a fresh file per test) and on Postgres when `TEST_DATABASE_URL` is
//! set (a fresh schema per test). Events go in as the real protos (through
//! `domain::rollup::change_of`, as the consumer applies them) and the reports come out
//! compared with counts made by hand.

use chrono::{DateTime, Utc};
use referral_common::{events::new_event, ids::to_ts};
use referral_proto::{
    common::v1::{AttributionModel, FraudAction, Money, PartyKind, VendorType},
    events::v1::{
        ConversionRecorded, Event, FraudAssessed, FraudResolved, InvitationCreated, InvitationFacts,
        InvitationTransition, RewardGranted, SignupRecorded, event::Payload,
    },
    fraud::v1::{Assessment, SubjectType},
    incentive::v1::{Badge, LedgerEntry},
    invite::v1::{Channel, InvitationStatus, Touchpoint},
};

use super::{Consumed, CreditKey, PgStore, Ranking, SqliteStore, Store, Window};
use crate::{
    app::reports,
    domain::{DAY_SECONDS, attribution::Model, rollup::change_of, scope},
};

// ---- harness -------------------------------------------------------------------------

referral_test_support::conformance_stores! {
    "analytics": SqliteStore, PgStore;
    ready(_store) {}
}

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 2;
    the_viral_loop_by_hand: sqlite_the_viral_loop_by_hand, pg_the_viral_loop_by_hand;
    events_apply_once: sqlite_events_apply_once, pg_events_apply_once;
    distinct_referrers_whatever_the_order: sqlite_distinct_referrers_whatever_the_order, pg_distinct_referrers_whatever_the_order;
    a_rebuild_gives_the_same_numbers: sqlite_a_rebuild_gives_the_same_numbers, pg_a_rebuild_gives_the_same_numbers;
    attribution_connectors_and_rejections: sqlite_attribution_connectors_and_rejections, pg_attribution_connectors_and_rejections;
    distinct_referrers_over_a_long_history: sqlite_distinct_referrers_over_a_long_history, pg_distinct_referrers_over_a_long_history;
    backfills_match_the_live_rollups: sqlite_backfills_match_the_live_rollups, pg_backfills_match_the_live_rollups;
    experiments_take_the_filters: sqlite_experiments_take_the_filters, pg_experiments_take_the_filters;
    rejected_conversions_are_taken_back: sqlite_rejected_conversions_are_taken_back, pg_rejected_conversions_are_taken_back;
    fraud_read_first_gives_the_same_numbers: sqlite_fraud_read_first_gives_the_same_numbers, pg_fraud_read_first_gives_the_same_numbers;
    revenue_in_every_currency: sqlite_revenue_in_every_currency, pg_revenue_in_every_currency;
    activity_feeds_the_last_stages: sqlite_activity_feeds_the_last_stages, pg_activity_feeds_the_last_stages;
    erasure_leaves_every_report_as_it_was: sqlite_erasure_leaves_every_report_as_it_was, pg_erasure_leaves_every_report_as_it_was;
    networks_are_bounded_and_pseudonymous: sqlite_networks_are_bounded_and_pseudonymous, pg_networks_are_bounded_and_pseudonymous;
    webhook_bodies_are_pseudonymous_and_erased: sqlite_webhook_bodies_are_pseudonymous_and_erased, pg_webhook_bodies_are_pseudonymous_and_erased;
}

/// Raw SQL on a backend, for the cases that compare tables with what a migration fills.
trait Raw {
    /// The backend's backfilling migrations: 0003 (active_since), 0004 (experiment_cohorts).
    const MIGRATIONS: [&str; 2];
    fn raw_exec(&self, sql: &str) -> impl Future<Output = ()>;
    /// The non-zero rows of `active_since` or `experiment_cohorts`, as text, sorted.
    fn raw_rows(&self, table: &str) -> impl Future<Output = Vec<String>>;
}

fn rows_sql(table: &str) -> &'static str {
    if table == "active_since" {
        "SELECT scope || '/' || CAST(since_day AS TEXT) || '/' || CAST(day AS TEXT) || '=' || CAST(referrers AS TEXT)
         FROM active_since WHERE referrers <> 0"
    } else {
        "SELECT template_id || '/' || variant || '/' || CAST(day AS TEXT) || '/' || flow || '/' || referrer_kind || '/'
           || vendor_type || '=' || CAST(sent AS TEXT) || ',' || CAST(signups AS TEXT)
         FROM experiment_cohorts WHERE sent <> 0 OR signups <> 0"
    }
}

macro_rules! raw {
    ($store:ty, $dir:literal) => {
        impl Raw for $store {
            const MIGRATIONS: [&str; 2] = [
                include_str!(concat!("../../migrations/", $dir, "/0003_active_since.sql")),
                include_str!(concat!(
                    "../../migrations/",
                    $dir,
                    "/0004_experiment_cohorts.sql"
                )),
            ];
            async fn raw_exec(&self, sql: &str) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(self.pool())
                    .await
                    .expect(sql);
            }
            async fn raw_rows(&self, table: &str) -> Vec<String> {
                let mut rows: Vec<String> = sqlx::query_scalar(rows_sql(table))
                    .fetch_all(self.pool())
                    .await
                    .unwrap();
                rows.sort();
                rows
            }
        }
    };
}
raw!(SqliteStore, "sqlite");
raw!(PgStore, "postgres");

// ---- fixtures ------------------------------------------------------------------------

/// Day 0 of the scenarios (2026-01-05, a Monday), 10:00 UTC.
const D: i64 = 20_458;

fn at(days: f64) -> DateTime<Utc> {
    DateTime::from_timestamp(D * DAY_SECONDS + 36_000 + (days * DAY_SECONDS as f64) as i64, 0)
        .expect("instant")
}

fn window(from: i64, to: i64) -> Window {
    Window {
        from_day: D + from,
        to_day: D + to,
        ..Window::default()
    }
}

struct Invite<'a> {
    id: &'a str,
    referrer: &'a str,
    supplier: bool,
    vendor: Option<VendorType>,
    day: f64,
    template: &'a str,
    variant: &'a str,
}

fn created(i: &Invite) -> Event {
    let (kind, referee, flow) = if i.supplier {
        (
            PartyKind::Supplier,
            PartyKind::Couple,
            referral_proto::common::v1::Flow::SupplierToCouple,
        )
    } else {
        (
            PartyKind::Couple,
            PartyKind::Supplier,
            referral_proto::common::v1::Flow::CoupleToSupplier,
        )
    };
    new_event(
        "invite",
        i.id,
        at(i.day),
        Payload::InvitationCreated(InvitationCreated {
            invitation: Some(InvitationFacts {
                invitation_id: i.id.into(),
                referrer_id: i.referrer.into(),
                referrer_kind: kind as i32,
                referee_kind: referee as i32,
                flow: flow as i32,
                channel: Channel::Email as i32,
                vendor_type: i.vendor.map(|v| v as i32),
                template_id: i.template.into(),
                template_variant: i.variant.into(),
                created_at: Some(to_ts(at(i.day))),
                ..Default::default()
            }),
            status: InvitationStatus::Scheduled as i32,
            ..Default::default()
        }),
    )
}

fn moved(invitation: &str, to: InvitationStatus, day: f64) -> Event {
    let t = InvitationTransition {
        invitation_id: invitation.into(),
        to: to as i32,
        at: Some(to_ts(at(day))),
        ..Default::default()
    };
    let payload = match to {
        InvitationStatus::Converted => Payload::InvitationConverted(t),
        InvitationStatus::Sent => Payload::InvitationSent(t),
        InvitationStatus::Delivered => Payload::InvitationDelivered(t),
        InvitationStatus::Opened => Payload::InvitationOpened(t),
        InvitationStatus::Clicked => Payload::InvitationClicked(t),
        _ => Payload::InvitationSignedUp(t),
    };
    new_event("invite", invitation, at(day), payload)
}

fn signup(
    user: &str,
    referrer: &str,
    invitation: &str,
    supplier_referrer: bool,
    day: f64,
    invited_day: f64,
) -> Event {
    let (kind, flow) = if supplier_referrer {
        (
            PartyKind::Supplier,
            referral_proto::common::v1::Flow::SupplierToCouple,
        )
    } else {
        (
            PartyKind::Couple,
            referral_proto::common::v1::Flow::CoupleToSupplier,
        )
    };
    new_event(
        "invite",
        user,
        at(day),
        Payload::SignupRecorded(SignupRecorded {
            signup_id: format!("s-{user}"),
            user_id: user.into(),
            attributed: true,
            referrer_id: referrer.into(),
            invitation_id: invitation.into(),
            flow: Some(flow as i32),
            referrer_kind: kind as i32,
            at: Some(to_ts(at(day))),
            invitation_created_at: Some(to_ts(at(invited_day))),
            channel: Channel::Email as i32,
            ..Default::default()
        }),
    )
}

fn conversion(
    user: &str,
    referrer: &str,
    minor: i64,
    currency: &str,
    first_paid: bool,
    day: f64,
    touches: &[(&str, f64)],
) -> Event {
    new_event(
        "invite",
        user,
        at(day),
        Payload::ConversionRecorded(ConversionRecorded {
            conversion_id: format!("c-{user}-{minor}"),
            user_id: user.into(),
            value: Some(Money {
                amount_minor: minor,
                currency: currency.into(),
            }),
            attributed: true,
            first_paid,
            referrer_id: referrer.into(),
            flow: Some(referral_proto::common::v1::Flow::SupplierToCouple as i32),
            referrer_kind: PartyKind::Supplier as i32,
            at: Some(to_ts(at(day))),
            touchpoints: touches
                .iter()
                .map(|(r, d)| Touchpoint {
                    kind: "INVITATION".into(),
                    referrer_id: (*r).into(),
                    channel: Channel::Email as i32,
                    at: Some(to_ts(at(*d))),
                    ..Default::default()
                })
                .collect(),
            signup_action: FraudAction::Approve as i32,
            ..Default::default()
        }),
    )
}

async fn apply<S: Store>(store: &S, source: &str, events: &[Event], first_offset: i64) {
    let items = events
        .iter()
        .enumerate()
        .map(|(i, e)| Consumed {
            event_id: e.id.clone(),
            offset: first_offset + i as i64,
            change: change_of(e),
        })
        .collect();
    store.apply_events(source, items, "GBP").await.expect("apply");
}

/// A leaderboard of referrers of `kind` over `days`, reporting in GBP.
fn board(kind: Option<&'static str>, days: Option<(i64, i64)>) -> reports::Board<'static> {
    reports::Board {
        kind,
        vendor: None,
        days,
        currency: "GBP",
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

/// Six suppliers (three photographers, three venues) invite two couples each on day 0
/// (template t1: `a` the control, `b` variant B); four couples sign up on day 2, two pay;
/// the four and one more couple each invite a supplier on day 3; one signs up on day 4.
fn the_loop() -> Vec<Event> {
    let mut events = Vec::new();
    let suppliers = ["s1", "s2", "s3", "s4", "s5", "s6"];
    let ids: Vec<(String, String)> = suppliers
        .iter()
        .map(|s| (format!("{s}a"), format!("{s}b")))
        .collect();
    for (n, s) in suppliers.iter().enumerate() {
        let vendor = if n < 3 {
            VendorType::Photographer
        } else {
            VendorType::Venue
        };
        for (id, variant) in [(&ids[n].0, "control"), (&ids[n].1, "B")] {
            events.push(created(&Invite {
                id,
                referrer: s,
                supplier: true,
                vendor: Some(vendor),
                day: 0.0,
                template: "t1",
                variant,
            }));
            events.push(moved(id, InvitationStatus::Sent, 0.01));
        }
    }
    for (a, b) in &ids[..4] {
        events.push(moved(a, InvitationStatus::Delivered, 0.1));
        events.push(moved(b, InvitationStatus::Delivered, 0.1));
    }
    for (a, b) in &ids[..3] {
        events.push(moved(a, InvitationStatus::Opened, 0.2));
        events.push(moved(b, InvitationStatus::Opened, 0.2));
        events.push(moved(a, InvitationStatus::Clicked, 0.3));
    }
    events.push(moved("s1b", InvitationStatus::Clicked, 0.3));
    // A late DELIVERED never moves an invitation back.
    events.push(moved("s1a", InvitationStatus::Delivered, 0.4));
    events.push(signup("u1", "s1", "s1a", true, 2.0, 0.0));
    events.push(signup("u2", "s1", "s1b", true, 2.0, 0.0));
    events.push(signup("u3", "s2", "s2a", true, 2.0, 0.0));
    events.push(signup("u4", "s3", "s3a", true, 2.0, 0.0));
    events.push(conversion("u1", "s1", 10_000, "GBP", true, 3.0, &[]));
    events.push(conversion("u1", "s1", 5_000, "GBP", false, 4.0, &[]));
    events.push(conversion("u3", "s2", 2_000, "EUR", true, 3.0, &[]));
    for c in ["u1", "u2", "u3", "u4", "c5"] {
        let id = format!("j{c}");
        events.push(created(&Invite {
            id: &id,
            referrer: c,
            supplier: false,
            vendor: None,
            day: 3.0,
            template: "",
            variant: "",
        }));
        events.push(moved(&id, InvitationStatus::Sent, 3.0));
    }
    events.push(signup("v1", "u1", "ju1", false, 4.0, 3.0));
    events
}

// ---- cases ---------------------------------------------------------------------------

async fn the_viral_loop_by_hand<S: Store>(store: &S) {
    apply(store, "invite", &the_loop(), 1).await;
    let w = window(0, 10);
    let v = reports::viral(store, &w).await.unwrap();
    assert!(!v.suppressed);
    assert_eq!(
        (v.referrers, v.invitations, v.signups, v.conversions),
        (11, 17, 5, 2)
    );
    close(v.invites_per_referrer, 17.0 / 11.0);
    close(v.conversion_rate, 5.0 / 17.0);
    close(v.k_factor, 5.0 / 11.0);
    let s2c = &v.by_flow[0];
    assert_eq!(
        (s2c.referrers, s2c.invitations, s2c.signups, s2c.conversions),
        (6, 12, 4, 2)
    );
    close(s2c.k_factor, 4.0 / 6.0);
    close(s2c.cycle_time_days.unwrap(), 2.0);
    let c2s = &v.by_flow[1];
    assert_eq!((c2s.referrers, c2s.invitations, c2s.signups), (5, 5, 1));
    close(c2s.k_factor, 0.2);
    close(v.loop_k, 4.0 / 6.0 * 0.2);
    close(v.cycle_time_days.unwrap(), 3.0);
    assert_eq!(v.doubling_time_days, None);
    assert_eq!(
        v.growth_status,
        referral_proto::analytics::v1::GrowthStatus::SubViral as i32
    );
    // Flows nobody used: under five people.
    assert!(v.by_flow[2].suppressed && v.by_flow[2].invitations == 0);

    let f = reports::funnel(store, &w, "").await.unwrap();
    let counts: Vec<i64> = f.stages.iter().map(|s| s.count).collect();
    assert_eq!(counts, vec![17, 9, 7, 5, 5, 2, 0, 0]);
    assert_eq!(f.bottleneck, "ACTIVATED");
    close(f.stages[1].step_rate, 9.0 / 17.0);

    // Three venues: fewer than five people, no numbers.
    let venues = Window {
        vendor_type: Some("VENUE".into()),
        ..w.clone()
    };
    let v = reports::viral(store, &venues).await.unwrap();
    assert!(v.suppressed);
    assert_eq!((v.referrers, v.invitations), (0, 0));
    assert!(reports::funnel(store, &venues, "").await.unwrap().suppressed);
    // s1 invited two people: its own funnel is suppressed too.
    assert!(reports::funnel(store, &w, "s1").await.unwrap().suppressed);
    // Suppliers only: six photographers and venues.
    let suppliers = Window {
        referrer_kind: Some("SUPPLIER".into()),
        ..w.clone()
    };
    let v = reports::viral(store, &suppliers).await.unwrap();
    assert_eq!((v.referrers, v.invitations, v.signups), (6, 12, 4));
    // The window counts by invitation day: days 1-10 see only the couples' invitations.
    let later = reports::viral(store, &window(1, 10)).await.unwrap();
    assert_eq!((later.referrers, later.invitations, later.signups), (5, 5, 1));

    // Experiment t1: control 6 sent / 3 signups, B 6 / 1.
    let e = reports::experiment(store, "t1", &w).await.unwrap();
    let b = &e.variants[0];
    let control = &e.variants[1];
    assert_eq!((b.variant.as_str(), b.sent, b.signups), ("B", 6, 1));
    assert!(control.control && control.variant == "control");
    assert_eq!((control.sent, control.signups), (6, 3));
    close(b.lift, (1.0 / 6.0 - 0.5) / 0.5);
    // pooled 1/3, se = sqrt(1/3 × 2/3 × 1/3) = 0.272166, z = -1.224745, p = 0.220671.
    assert!((b.p_value - 0.220_671).abs() < 1e-5, "{}", b.p_value);

    // Leaderboard of all time by referrals: s1 (2), then s2, s3, u1 (1 each) by id.
    let l = reports::leaderboard(store, board(None, None), Ranking::Referrals, 4).await;
    let l = l.unwrap();
    assert!(l.suppressed, "four entries are under five people");
    let l = reports::leaderboard(store, board(None, None), Ranking::Referrals, 10)
        .await
        .unwrap();
    let top: Vec<(&str, f64)> = l
        .entries
        .iter()
        .take(4)
        .map(|e| (e.referrer_id.as_str(), e.value))
        .collect();
    assert_eq!(top, vec![("s1", 2.0), ("s2", 1.0), ("s3", 1.0), ("u1", 1.0)]);
    assert_eq!(l.entries.len(), 10);
    let revenue = reports::leaderboard(
        store,
        board(Some("SUPPLIER"), Some((D, D + 10))),
        Ranking::Revenue,
        10,
    )
    .await
    .unwrap();
    assert_eq!(revenue.entries[0].referrer_id, "s1");
    assert_eq!(revenue.entries[0].value, 15_000.0);
    // s2's EUR has no rate: listed per currency and as unconverted, ranked at 0 (never dropped).
    let s2 = &revenue.entries[1];
    assert_eq!((s2.referrer_id.as_str(), s2.value), ("s2", 0.0));
    let eur: Vec<(String, i64)> = s2
        .revenue_by_currency
        .iter()
        .map(|m| (m.currency.clone(), m.amount_minor))
        .collect();
    assert_eq!(eur, vec![("EUR".to_string(), 2_000)]);
    assert_eq!(s2.unconverted_currencies, vec!["EUR".to_string()]);
    assert_eq!(revenue.unconverted_currencies, vec!["EUR".to_string()]);
    assert_eq!(revenue.currency, "GBP");

    // Cohorts by week: the suppliers' cohort (week of day 0) holds all eleven referrers.
    let c = reports::cohorts(store, &w, crate::domain::metrics::Granularity::Week)
        .await
        .unwrap();
    assert_eq!(c.cohorts.len(), 1);
    assert_eq!(c.cohorts[0].referrers, 11);
    assert_eq!(c.cohorts[0].periods[0].cumulative_signups, 5);
    assert_eq!(c.cohorts[0].periods[0].cumulative_conversions, 2);

    // Time series of invitations per day: 12 on day 0 (six referrers), 5 on day 3 (five).
    let t = reports::timeseries(
        store,
        &window(0, 3),
        crate::domain::metrics::Granularity::Day,
        "invitations",
    )
    .await
    .unwrap();
    let points: Vec<(f64, bool)> = t.points.iter().map(|p| (p.value, p.suppressed)).collect();
    assert_eq!(
        points,
        vec![(12.0, false), (0.0, true), (0.0, true), (5.0, false)]
    );
}

async fn events_apply_once<S: Store>(store: &S) {
    let events = the_loop();
    apply(store, "invite", &events, 1).await;
    let first = reports::viral(store, &window(0, 10)).await.unwrap();
    // The same events again (a replay after a crash): nothing changes.
    apply(store, "invite", &events, 1).await;
    assert_eq!(reports::viral(store, &window(0, 10)).await.unwrap(), first);
    assert_eq!(store.last_offset("invite").await.unwrap(), events.len() as i64);
    assert_eq!(store.last_offset("fraud").await.unwrap(), 0);
}

async fn distinct_referrers_whatever_the_order<S: Store>(store: &S) {
    // r1 invites on days 5, 1, 3 (in that order of arrival), r2 on 3 and 9, r3 on 1.
    let plan = [
        ("r1", 5.0),
        ("r1", 1.0),
        ("r2", 9.0),
        ("r1", 3.0),
        ("r3", 1.0),
        ("r2", 3.0),
        ("r1", 3.5),
    ];
    let events: Vec<Event> = plan
        .iter()
        .enumerate()
        .map(|(n, (r, day))| {
            created(&Invite {
                id: &format!("i{n}"),
                referrer: r,
                supplier: true,
                vendor: Some(VendorType::Florist),
                day: *day,
                template: "",
                variant: "",
            })
        })
        .collect();
    for (n, e) in events.iter().enumerate() {
        apply(store, "invite", std::slice::from_ref(e), n as i64 + 1).await;
    }
    for s in [
        "",
        "k=SUPPLIER",
        "v=FLORIST",
        "f=SUPPLIER_TO_COUPLE",
        "f=SUPPLIER_TO_COUPLE|v=FLORIST",
    ] {
        for from in 0..11 {
            for to in from..11 {
                let rows = store.gap_rows(s, D + from, D + to).await.unwrap();
                let by_hand = ["r1", "r2", "r3"]
                    .iter()
                    .filter(|r| {
                        plan.iter()
                            .any(|(p, d)| p == *r && (from..=to).contains(&(*d as i64)))
                    })
                    .count() as i64;
                assert_eq!(
                    scope::distinct_in(&rows, D + from, D + to),
                    by_hand,
                    "{s:?} [{from}, {to}]"
                );
            }
        }
    }
}

async fn a_rebuild_gives_the_same_numbers<S: Store>(store: &S) {
    let mut events = the_loop();
    events.extend(history_events());
    // Applied in small batches as the consumer would.
    for (n, chunk) in events.chunks(7).enumerate() {
        apply(store, "invite", chunk, (n * 7) as i64 + 1).await;
    }
    let w = window(0, 10);
    let before = (
        reports::viral(store, &w).await.unwrap(),
        reports::funnel(store, &w, "").await.unwrap(),
        reports::leaderboard(store, board(None, None), Ranking::Referrals, 10)
            .await
            .unwrap(),
        distinct_counts(store).await,
    );
    store.truncate_rollups().await.unwrap();
    assert_eq!(store.last_offset("invite").await.unwrap(), 0);
    assert!(reports::viral(store, &w).await.unwrap().suppressed);
    // Replayed in one batch.
    apply(store, "invite", &events, 1).await;
    let after = (
        reports::viral(store, &w).await.unwrap(),
        reports::funnel(store, &w, "").await.unwrap(),
        reports::leaderboard(store, board(None, None), Ranking::Referrals, 10)
            .await
            .unwrap(),
        distinct_counts(store).await,
    );
    assert_eq!(before, after);
}

async fn attribution_connectors_and_rejections<S: Store>(store: &S) {
    let mut events = the_loop();
    // s6 invites twenty more on day 1: 22 connections, a super-connector.
    for n in 0..20 {
        let id = format!("bulk{n}");
        events.push(created(&Invite {
            id: &id,
            referrer: "s6",
            supplier: true,
            vendor: Some(VendorType::Venue),
            day: 1.0,
            template: "",
            variant: "",
        }));
        events.push(moved(&id, InvitationStatus::Sent, 1.0));
    }
    // Conversions touched by five referrers (p1..p5, days 0, 7 and 14 before day 14).
    events.push(conversion(
        "w1",
        "p3",
        10_000,
        "GBP",
        true,
        14.0,
        &[("p1", 0.0), ("p2", 7.0), ("p3", 14.0)],
    ));
    events.push(conversion(
        "w2",
        "p5",
        700,
        "GBP",
        true,
        14.0,
        &[("p4", 14.0), ("p5", 14.0)],
    ));
    events.push(conversion("w3", "p1", 300, "GBP", true, 14.0, &[]));
    apply(store, "invite", &events, 1).await;

    let w = window(14, 14);
    let r = reports::attribution(store, &w, Model::TimeDecay, AttributionModel::TimeDecay)
        .await
        .unwrap();
    assert!(!r.suppressed);
    let credit = |id: &str| {
        r.by_referrer
            .iter()
            .find(|c| c.referrer_id == id)
            .map(|c| (c.revenue.as_ref().unwrap().amount_minor, c.conversions))
            .unwrap()
    };
    // w1 by time decay: 1/7, 2/7, 4/7 of 10 000 -> 1429 (1428.57 rounds up: largest
    // remainder), 2857, 5714; w2: half each; w3: all to p1.
    assert_eq!(credit("p1").0, 1_429 + 300);
    assert_eq!(credit("p2").0, 2_857);
    assert_eq!(credit("p3").0, 5_714);
    assert_eq!((credit("p4").0, credit("p5").0), (350, 350));
    close(credit("p1").1, 1.0 / 7.0 + 1.0);
    let total: i64 = r
        .by_channel
        .iter()
        .map(|c| c.revenue.as_ref().unwrap().amount_minor)
        .sum();
    assert_eq!(total, 11_000);
    let first = reports::attribution(store, &w, Model::FirstTouch, AttributionModel::FirstTouch)
        .await
        .unwrap();
    assert_eq!(first.by_referrer[0].referrer_id, "p1");
    assert_eq!(
        first.by_referrer[0].revenue.as_ref().unwrap().amount_minor,
        10_300
    );

    let c = reports::super_connectors(store, D + 1, 10).await.unwrap();
    assert_eq!(c.connectors.len(), 1);
    let s6 = &c.connectors[0];
    assert_eq!(
        (s6.referrer_id.as_str(), s6.connections, s6.successes),
        ("s6", 22, 0)
    );
    // Every invitation only SENT (stage 1 of 6); active today: boost 2. 22 × 1/6 × 1 × 2.
    close(s6.mean_strength, 1.0 / 6.0);
    close(s6.score, 22.0 / 6.0 * 2.0);
    assert_eq!(s6.tier, "BRONZE");

    // Second-order reach: v1 signed up through u1, whom s1 brought in.
    let before = reports::viral(store, &window(0, 10)).await.unwrap();
    assert_eq!(before.signups, 5);
    let badges = [
        new_event(
            "incentive",
            "e1",
            at(5.0),
            Payload::RewardGranted(RewardGranted {
                entry: Some(LedgerEntry {
                    referrer_id: "s1".into(),
                    badge: Some(Badge::Bronze as i32),
                    ..Default::default()
                }),
            }),
        ),
        // fraud review rejects u2's signup: s1 keeps one referral.
        new_event(
            "fraud",
            "case",
            at(5.0),
            Payload::FraudResolved(FraudResolved {
                subject_type: SubjectType::Signup as i32,
                subject_id: "s-u2".into(),
                decision: FraudAction::Reject as i32,
                ..Default::default()
            }),
        ),
    ];
    apply(store, "incentive", &badges[..1], 1).await;
    apply(store, "fraud", &badges[1..], 1).await;
    let after = reports::viral(store, &window(0, 10)).await.unwrap();
    assert_eq!(after.signups, 4);
    let l = reports::leaderboard(store, board(None, None), Ranking::Referrals, 10)
        .await
        .unwrap();
    let s1 = l.entries.iter().find(|e| e.referrer_id == "s1").unwrap();
    assert_eq!(
        (s1.value, s1.tier.as_str(), s1.badges.clone()),
        (1.0, "BRONZE", vec!["BRONZE".to_string()])
    );
    let all = store.connectors(0).await.unwrap();
    let s1 = all.iter().find(|r| r.referrer_id == "s1").unwrap();
    assert_eq!(s1.second_order_reach, 1);
}

// ---- distinct referrers over a long history ------------------------------------------

/// (referrer, day) of florists inviting over 200 days; x and y as in
/// `scope::tests::active_since_is_exact_up_to_its_reach_and_falls_back_beyond`.
fn history() -> Vec<(&'static str, i64)> {
    vec![
        ("x", 191),
        ("y", 191),
        ("x", 0),
        ("y", 50),
        ("x", 100),
        ("z", 120),
        ("z", 30),
        ("w", 150),
        ("z", 60),
        ("w", 100),
        ("v", 5),
        ("x", 140),
        ("z", 90),
    ]
}

/// The florists' invitations of `history()`.
fn history_events() -> Vec<Event> {
    history()
        .iter()
        .enumerate()
        .map(|(n, (referrer, day))| {
            created(&Invite {
                id: &format!("h{n}"),
                referrer,
                supplier: true,
                vendor: Some(VendorType::Florist),
                day: *day as f64,
                template: "",
                variant: "",
            })
        })
        .collect()
}

const FLORIST_SCOPES: [&str; 5] = [
    "",
    "k=SUPPLIER",
    "v=FLORIST",
    "f=SUPPLIER_TO_COUPLE",
    "f=SUPPLIER_TO_COUPLE|v=FLORIST",
];

/// Windows shorter than, as long as and longer than `scope::SINCE_DAYS` (92 days).
fn long_windows() -> Vec<(i64, i64)> {
    let mut w = vec![
        (150, 191),
        (100, 191),
        (99, 191),
        (0, 91),
        (0, 92),
        (0, 191),
        (30, 121),
        (101, 140),
    ];
    for from in (0..200).step_by(9) {
        for len in [1, 7, 30, 91, 92, 93, 150] {
            w.push((from, from + len - 1));
        }
    }
    w
}

/// Distinct referrers of every florist scope and long window.
async fn distinct_counts<S: Store>(store: &S) -> Vec<(i64, i64, Vec<(String, i64)>)> {
    let scopes: Vec<String> = FLORIST_SCOPES.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    for (from, to) in long_windows() {
        let mut counts = store.distinct_referrers(&scopes, D + from, D + to).await.unwrap();
        counts.sort();
        out.push((from, to, counts));
    }
    out
}

async fn distinct_referrers_over_a_long_history<S: Store>(store: &S) {
    let plan = history();
    let events = history_events();
    // The first five one batch each, the rest (days out of order within it) in one.
    for (n, e) in events[..5].iter().enumerate() {
        apply(store, "invite", std::slice::from_ref(e), n as i64 + 1).await;
    }
    apply(store, "invite", &events[5..], 6).await;
    assert!(scope::since_covers(D + 100, D + 191) && !scope::since_covers(D + 99, D + 191));
    for (from, to, counts) in distinct_counts(store).await {
        let by_hand = ["v", "w", "x", "y", "z"]
            .iter()
            .filter(|r| plan.iter().any(|(p, d)| p == *r && (from..=to).contains(d)))
            .count() as i64;
        for s in FLORIST_SCOPES {
            let n = counts.iter().find(|(c, _)| c == s).map_or(0, |c| c.1);
            assert_eq!(n, by_hand, "{s:?} [{from}, {to}]");
        }
    }
    // [100, 191] (92 days): x on 100, y and w (150, back to 100: not a first) -> x, y, w, z (120).
    let all = store
        .distinct_referrers(&["".into()], D + 100, D + 191)
        .await
        .unwrap();
    assert_eq!(all, vec![(String::new(), 4)]);
}

/// The single SQL statement of `migration` that starts with `start`.
fn statement(migration: &str, start: &str) -> String {
    let rest = &migration[migration.find(start).expect(start)..];
    rest[..=rest.find(';').expect("a statement ends with ;")].to_string()
}

/// What migrations 0003 and 0004 fill for an existing deployment equals what the consumer
/// keeps: the same events, the tables emptied and filled again by the migrations' SQL.
async fn backfills_match_the_live_rollups<S: Store + Raw>(store: &S) {
    let mut events = the_loop();
    events.extend(history_events());
    for (n, chunk) in events.chunks(5).enumerate() {
        apply(store, "invite", chunk, (n * 5) as i64 + 1).await;
    }
    apply(store, "fraud", &[signup_rejected("s-u2")], 1).await;
    for (table, migration) in [
        ("active_since", S::MIGRATIONS[0]),
        ("experiment_cohorts", S::MIGRATIONS[1]),
    ] {
        let live = store.raw_rows(table).await;
        assert!(!live.is_empty(), "{table}");
        store.raw_exec(&format!("DELETE FROM {table}")).await;
        store
            .raw_exec(&statement(migration, &format!("INSERT INTO {table}")))
            .await;
        assert_eq!(store.raw_rows(table).await, live, "{table}");
    }
}

// ---- experiments and fraud rejections -------------------------------------------------

async fn experiments_take_the_filters<S: Store>(store: &S) {
    apply(store, "invite", &the_loop(), 1).await;
    let w = window(0, 10);
    let with = |flow: Option<&str>, kind: Option<&str>, vendor: Option<&str>| Window {
        flow: flow.map(Into::into),
        referrer_kind: kind.map(Into::into),
        vendor_type: vendor.map(Into::into),
        ..w.clone()
    };
    let rows = |v: &[(&str, i64, i64)]| {
        v.iter()
            .map(|(a, b, c)| (a.to_string(), *b, *c))
            .collect::<Vec<_>>()
    };
    let all = rows(&[("B", 6, 1), ("control", 6, 3)]);
    assert_eq!(store.experiment("t1", &w).await.unwrap(), all);
    assert_eq!(
        store
            .experiment("t1", &with(None, Some("SUPPLIER"), None))
            .await
            .unwrap(),
        all
    );
    // Photographers s1-s3 brought in all four signups (u2 through variant B); venues none.
    assert_eq!(
        store
            .experiment("t1", &with(None, None, Some("PHOTOGRAPHER")))
            .await
            .unwrap(),
        rows(&[("B", 3, 1), ("control", 3, 3)])
    );
    assert_eq!(
        store
            .experiment("t1", &with(Some("SUPPLIER_TO_COUPLE"), None, Some("VENUE")))
            .await
            .unwrap(),
        rows(&[("B", 3, 0), ("control", 3, 0)])
    );
    assert_eq!(
        store
            .experiment("t1", &with(Some("COUPLE_TO_SUPPLIER"), None, None))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .experiment("t1", &with(None, Some("COUPLE"), None))
            .await
            .unwrap(),
        vec![]
    );
    // Through the report: three sent per variant is under five people.
    let e = reports::experiment(store, "t1", &with(None, None, Some("VENUE")))
        .await
        .unwrap();
    assert_eq!(e.variants.len(), 2);
    assert!(e.variants.iter().all(|v| v.suppressed && v.sent == 0));
}

fn conversion_rejected(conversion_id: &str) -> Event {
    new_event(
        "fraud",
        conversion_id,
        at(5.0),
        Payload::FraudAssessed(FraudAssessed {
            assessment: Some(Assessment {
                subject_type: SubjectType::Conversion as i32,
                subject_id: conversion_id.into(),
                action: FraudAction::Reject as i32,
                ..Default::default()
            }),
        }),
    )
}

fn case_resolved(subject_type: SubjectType, subject_id: &str, decision: FraudAction) -> Event {
    new_event(
        "fraud",
        subject_id,
        at(6.0),
        Payload::FraudResolved(FraudResolved {
            case_id: format!("case-{subject_id}"),
            subject_type: subject_type as i32,
            subject_id: subject_id.into(),
            decision: decision as i32,
            ..Default::default()
        }),
    )
}

fn signup_rejected(signup_id: &str) -> Event {
    case_resolved(SubjectType::Signup, signup_id, FraudAction::Reject)
}

/// (conversions, funnel stage counts, s1's revenue, last-touch credits by referrer).
async fn conversion_numbers<S: Store>(store: &S) -> (i64, Vec<i64>, f64, Vec<(String, i64, f64)>) {
    let w = window(0, 10);
    let v = reports::viral(store, &w).await.unwrap();
    let f = reports::funnel(store, &w, "").await.unwrap();
    let revenue = reports::leaderboard(
        store,
        board(Some("SUPPLIER"), Some((D, D + 10))),
        Ranking::Revenue,
        10,
    )
    .await
    .unwrap();
    let s1 = revenue
        .entries
        .iter()
        .find(|e| e.referrer_id == "s1")
        .map_or(0.0, |e| e.value);
    let credits = store
        .credits(Model::LastTouch.as_str(), CreditKey::Referrer, &w)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.key, c.revenue_minor, c.conversions))
        .collect();
    (
        v.conversions,
        f.stages.iter().map(|s| s.count).collect(),
        s1,
        credits,
    )
}

async fn rejected_conversions_are_taken_back<S: Store>(store: &S) {
    let events = the_loop();
    apply(store, "invite", &events, 1).await;
    let (conversions, funnel, s1, credits) = conversion_numbers(store).await;
    assert_eq!(
        (conversions, funnel, s1),
        (2, vec![17, 9, 7, 5, 5, 2, 0, 0], 15_000.0)
    );
    assert_eq!(
        credits,
        vec![("s1".into(), 15_000, 1.0), ("s2".into(), 2_000, 1.0)]
    );

    // fraud-svc rejects u1's first paid conversion: u1 no longer converted (its invitation
    // stops at SIGNED_UP) and its 100.00 is taken back; the later 50.00 stays revenue.
    apply(store, "fraud", &[conversion_rejected("c-u1-10000")], 1).await;
    let after = conversion_numbers(store).await;
    assert_eq!(
        after,
        (
            1,
            vec![17, 9, 7, 5, 5, 1, 0, 0],
            5_000.0,
            vec![("s1".into(), 5_000, 0.0), ("s2".into(), 2_000, 1.0)]
        )
    );
    assert_eq!(
        reports::viral(store, &window(0, 10)).await.unwrap().by_flow[0].conversions,
        1
    );
    // A late CONVERTED transition of its invitation does not raise it again, and the case
    // resolved REJECT as well (another event, the same decision) changes nothing.
    let n = events.len() as i64;
    apply(
        store,
        "invite",
        &[moved("s1a", InvitationStatus::Converted, 5.0)],
        n + 1,
    )
    .await;
    apply(
        store,
        "fraud",
        &[case_resolved(
            SubjectType::Conversion,
            "c-u1-10000",
            FraudAction::Reject,
        )],
        2,
    )
    .await;
    assert_eq!(conversion_numbers(store).await, after);

    // u3's referral and its conversion both rejected: its conversion is taken back once.
    apply(
        store,
        "fraud",
        &[signup_rejected("s-u3"), conversion_rejected("c-u3-2000")],
        3,
    )
    .await;
    assert_eq!(
        conversion_numbers(store).await,
        (
            0,
            vec![17, 9, 7, 5, 5, 0, 0, 0],
            5_000.0,
            vec![("s1".into(), 5_000, 0.0)]
        )
    );
    assert_eq!(reports::viral(store, &window(0, 10)).await.unwrap().signups, 4);
}

/// The rejections read before the events they reject (the fraud log ahead of the invite
/// log, as a rebuild replaying both at once may) give the numbers of the other order.
async fn fraud_read_first_gives_the_same_numbers<S: Store>(store: &S) {
    let mut invite = the_loop();
    invite.push(moved("s1a", InvitationStatus::Converted, 5.0));
    let fraud = [
        conversion_rejected("c-u1-10000"),
        signup_rejected("s-u3"),
        conversion_rejected("c-u3-2000"),
        signup_rejected("s-u4"),
        // u1's referral too: its later conversion (not rejected itself) credits nobody.
        signup_rejected("s-u1"),
    ];
    let numbers = || async {
        let w = window(0, 10);
        (
            conversion_numbers(store).await,
            reports::viral(store, &w).await.unwrap(),
            reports::leaderboard(store, board(None, None), Ranking::Referrals, 10)
                .await
                .unwrap(),
            store.experiment("t1", &w).await.unwrap(),
            {
                let mut all = store.connectors(0).await.unwrap();
                all.sort_by(|a, b| a.referrer_id.cmp(&b.referrer_id));
                all
            },
        )
    };
    apply(store, "invite", &invite, 1).await;
    apply(store, "fraud", &fraud, 1).await;
    let invite_first = numbers().await;
    assert_eq!(invite_first.0.0, 0, "u1's and u3's conversions rejected");
    assert_eq!(invite_first.0.2, 0.0, "s1's revenue: u1's referral rejected");
    assert_eq!(invite_first.0.3, vec![], "no credits left");
    store.truncate_rollups().await.unwrap();
    apply(store, "fraud", &fraud, 1).await;
    apply(store, "invite", &invite, 1).await;
    assert_eq!(numbers().await, invite_first);
}

// ---- money in every currency, activity ------------------------------------------------

fn audit() -> referral_common::audit::AuditEntry {
    referral_common::audit::AuditEntry::new(
        &referral_common::audit::Actor::system(),
        referral_common::audit::action::FX_RATE_PUT,
        "fx_rate",
        "test",
    )
}

async fn put_rate<S: Store>(store: &S, currency: &str, day: i64, rate: &str) {
    let row = super::FxRateRow {
        currency: currency.into(),
        effective_day: day,
        rate: rate.into(),
        updated_at: 0,
    };
    store.put_fx_rate(&row, &audit()).await.unwrap();
}

async fn revenue_of<S: Store>(
    store: &S,
    vendor: Option<&'static str>,
) -> referral_proto::analytics::v1::Leaderboard {
    let b = reports::Board {
        vendor,
        ..board(Some("SUPPLIER"), Some((D, D + 10)))
    };
    reports::leaderboard(store, b, Ranking::Revenue, 10)
        .await
        .unwrap()
}

async fn revenue_in_every_currency<S: Store>(store: &S) {
    apply(store, "invite", &the_loop(), 1).await;
    // s2's 20.00 EUR on day 3: no rate yet, then a rate from day 2 (used) and one from
    // day 4 (too late for it).
    let before = revenue_of(store, None).await;
    assert_eq!(before.entries[1].unconverted_currencies, vec!["EUR".to_string()]);
    put_rate(store, "EUR", D + 2, "0.85").await;
    put_rate(store, "EUR", D + 4, "2").await;
    let after = revenue_of(store, None).await;
    let s2 = &after.entries[1];
    assert_eq!((s2.referrer_id.as_str(), s2.value), ("s2", 1_700.0));
    assert_eq!(
        s2.revenue.as_ref().map(|m| (m.amount_minor, m.currency.as_str())),
        Some((1_700, "GBP"))
    );
    assert!(s2.unconverted_currencies.is_empty() && after.unconverted_currencies.is_empty());
    let used: Vec<(String, String, String)> = after
        .rates_used
        .iter()
        .map(|r| (r.currency.clone(), r.rate.clone(), r.effective_from.clone()))
        .collect();
    assert_eq!(
        used,
        vec![("EUR".into(), "0.85".into(), crate::domain::fx::day_text(D + 2))]
    );
    // Replacing the day-2 rate changes the answer (rates are read, not baked in).
    put_rate(store, "EUR", D + 2, "1.5").await;
    assert_eq!(revenue_of(store, None).await.entries[0].value, 15_000.0);
    assert_eq!(revenue_of(store, None).await.entries[1].value, 3_000.0);
    // Photographers against photographers (s1-s3), venues (s4-s6) apart.
    let photographers = revenue_of(store, Some("PHOTOGRAPHER")).await;
    assert!(
        photographers.suppressed,
        "three photographers are under five people"
    );
    let rows = store
        .revenue(Some("SUPPLIER"), Some("PHOTOGRAPHER"), None)
        .await
        .unwrap();
    let mut ids: Vec<&str> = rows.iter().map(|r| r.referrer_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids, vec!["s1", "s2"]);
    assert!(store.revenue(None, Some("VENUE"), None).await.unwrap().is_empty());
    let venues = store
        .leaderboard(None, Some("VENUE"), None, Ranking::Referrals, 0, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = venues.iter().map(|r| r.referrer_id.as_str()).collect();
    assert_eq!(ids, vec!["s4", "s5", "s6"]);
    // A rejected conversion's revenue goes, in its own currency.
    apply(store, "fraud", &[conversion_rejected("c-u3-2000")], 1).await;
    let after = revenue_of(store, None).await;
    assert_eq!(after.entries[1].value, 0.0);
    assert!(after.entries[1].revenue_by_currency.is_empty());
    // Rates are listed by currency and day, paged.
    let all = store.list_fx_rates(None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.effective_day).collect::<Vec<_>>(),
        vec![D + 2, D + 4]
    );
    let next = store
        .list_fx_rates(Some("EUR"), Some(("EUR".into(), D + 2)), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
}

async fn funnel_tail<S: Store>(store: &S, to: i64) -> (Vec<i64>, i64) {
    let f = reports::funnel(store, &window(0, to), "").await.unwrap();
    assert!(!f.suppressed);
    (f.stages.iter().skip(5).map(|s| s.count).collect(), f.churned)
}

async fn activity_feeds_the_last_stages<S: Store>(store: &S) {
    use super::ActivityKind::{Activated, Churned};
    // u3 reports activation before its conversion is read; u2 never converts.
    let early: Vec<Event> = the_loop()
        .into_iter()
        .filter(|e| !is_conversion_of(e, "u3"))
        .collect();
    apply(store, "invite", &early, 1).await;
    let secs = |d: f64| at(d).timestamp();
    assert!(store.record_activity("u3", Activated, secs(3.5)).await.unwrap());
    assert!(store.record_activity("u2", Activated, secs(3.5)).await.unwrap());
    assert!(store.record_activity("u1", Activated, secs(3.5)).await.unwrap());
    // The same report again changes nothing.
    assert!(!store.record_activity("u1", Activated, secs(3.5)).await.unwrap());
    assert_eq!(funnel_tail(store, 10).await, (vec![1, 1, 1], 0));
    let late: Vec<Event> = the_loop()
        .into_iter()
        .filter(|e| is_conversion_of(e, "u3"))
        .collect();
    apply(store, "invite", &late, 1000).await;
    assert_eq!(funnel_tail(store, 10).await, (vec![2, 2, 2], 0));
    // u3 churns on day 6: retained up to day 5, not from day 6.
    assert!(store.record_activity("u3", Churned, secs(6.0)).await.unwrap());
    assert_eq!(funnel_tail(store, 5).await, (vec![2, 2, 2], 0));
    assert_eq!(funnel_tail(store, 6).await, (vec![2, 2, 1], 1));
    let f = reports::funnel(store, &window(0, 10), "").await.unwrap();
    close(f.churn_rate, 0.5);
    // u2 churned without converting: nothing to count.
    assert!(store.record_activity("u2", Churned, secs(6.0)).await.unwrap());
    assert_eq!(funnel_tail(store, 10).await, (vec![2, 2, 1], 1));
    // Fraud rejects u3's conversion: its CONVERTED, ACTIVATED and churn go.
    apply(store, "fraud", &[conversion_rejected("c-u3-2000")], 1).await;
    assert_eq!(funnel_tail(store, 10).await, (vec![1, 1, 1], 0));
    // A rebuild keeps the activity and gives the same numbers.
    store.truncate_rollups().await.unwrap();
    apply(store, "invite", &the_loop(), 1).await;
    apply(store, "fraud", &[conversion_rejected("c-u3-2000")], 1).await;
    assert_eq!(funnel_tail(store, 10).await, (vec![1, 1, 1], 0));
}

fn is_conversion_of(e: &Event, user: &str) -> bool {
    matches!(&e.payload, Some(Payload::ConversionRecorded(c)) if c.user_id == user)
}

// ---- privacy (issue #16) -------------------------------------------------------------

fn subject(person: &str, invitations: &[&str]) -> referral_proto::common::v1::PrivacySubject {
    referral_proto::common::v1::PrivacySubject {
        person_id: person.into(),
        invitation_ids: invitations.iter().map(|i| i.to_string()).collect(),
        ..Default::default()
    }
}

/// Every report over the loop, as text (ids in quotes, so a re-keyed id can be swapped).
/// `shown` names a leaderboard's referrers (before erasure: as they will be after it).
async fn every_report<S: Store>(
    store: &S,
    referrers: &[&str],
    shown: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let w = window(0, 10);
    let mut out = vec![
        format!("{:?}", reports::viral(store, &w).await.unwrap()),
        format!("{:?}", reports::funnel(store, &w, "").await.unwrap()),
        format!(
            "{:?}",
            reports::cohorts(store, &w, crate::domain::metrics::Granularity::Week)
                .await
                .unwrap()
        ),
        format!(
            "{:?}",
            reports::timeseries(store, &w, crate::domain::metrics::Granularity::Day, "signups")
                .await
                .unwrap()
        ),
        format!("{:?}", reports::experiment(store, "t1", &w).await.unwrap()),
        format!("{:?}", reports::super_connectors(store, D + 1, 10).await.unwrap()),
    ];
    for (model, proto) in [
        (Model::FirstTouch, AttributionModel::FirstTouch),
        (Model::LastTouch, AttributionModel::LastTouch),
        (Model::Linear, AttributionModel::Linear),
        (Model::TimeDecay, AttributionModel::TimeDecay),
        (Model::PositionBased, AttributionModel::PositionBased),
    ] {
        out.push(format!(
            "{:?}",
            reports::attribution(store, &w, model, proto).await.unwrap()
        ));
    }
    for ranking in [Ranking::Referrals, Ranking::Revenue, Ranking::ConversionRate] {
        let mut l = reports::leaderboard(store, board(None, None), ranking, 20)
            .await
            .unwrap();
        // Ties are ranked by id, and a pseudonym sorts elsewhere than the id it replaced:
        // the same values in the same order, the same entries (ranks aside).
        let values: Vec<f64> = l.entries.iter().map(|e| e.value).collect();
        l.entries.iter_mut().for_each(|e| {
            e.rank = 0;
            e.referrer_id = shown(&e.referrer_id);
        });
        l.entries.sort_by(|a, b| a.referrer_id.cmp(&b.referrer_id));
        out.push(format!("{values:?} {l:?}"));
    }
    for r in referrers {
        out.push(format!("{:?}", reports::funnel(store, &w, r).await.unwrap()));
    }
    out
}

async fn erasure_leaves_every_report_as_it_was<S: Store>(store: &S) {
    use referral_common::privacy::PersonData;

    use crate::app::privacy::PersonRecords;

    let pii = referral_common::pii::PiiKeys::for_tests();
    let records = PersonRecords::new(store.clone(), pii.clone());
    let mut events = the_loop();
    // A conversion with touchpoints, so attribution has credits to keep.
    events.push(conversion(
        "u2",
        "s1",
        7_000,
        "GBP",
        true,
        3.5,
        &[("s1", 1.0), ("s2", 1.5)],
    ));
    apply(store, "invite", &events, 1).await;
    // A couple: u1 (invited by s1, paid twice, brought in v1) and u2 (invited by s1, paid).
    let couple = [("u1", "s1a"), ("u2", "s1b")];
    let referrers = ["s1", "s2", "u1", "u2"];
    let shown = |id: &str| {
        if couple.iter().any(|(p, _)| *p == id) {
            pii.pseudonym(id)
        } else {
            id.to_string()
        }
    };
    let before = every_report(store, &referrers, &shown).await;

    let (counts, doc) = records.export(&subject("u1", &["s1a"])).await.expect("export");
    assert_eq!(
        (
            counts["signups"],
            counts["conversions"],
            counts["funnelStages"],
            counts["asReferrer"]
        ),
        (1, 2, 1, 1)
    );
    assert_eq!(doc["signups"][0]["referrerId"], "s1");
    assert_eq!(doc["funnelStages"][0]["furthestStage"], "CONVERTED");
    assert_eq!(doc["asReferrer"][0]["signups"], 1);
    assert!(counts["cohorts"] >= 1, "{counts:?}");

    for (person, invitation) in couple {
        let counts = records
            .erase(&subject(person, &[invitation]))
            .await
            .expect("erase");
        assert!(
            counts["referredUsers"] >= 1 && counts["referrerRollups"] >= 1,
            "{person}: {counts:?}"
        );
        let again = records
            .erase(&subject(person, &[invitation]))
            .await
            .expect("again");
        assert!(again.values().all(|n| *n == 0), "idempotent: {again:?}");
        let (counts, _) = records.export(&subject(person, &[])).await.expect("export after");
        assert!(
            counts.values().all(|n| *n == 0),
            "nothing left under {person}: {counts:?}"
        );
    }
    // Identical, but for the erased people's own ids now being their pseudonyms.
    let swap = |text: &str| {
        couple.iter().fold(text.to_string(), |t, (person, _)| {
            t.replace(
                &format!("\"{person}\""),
                &format!("\"{}\"", pii.pseudonym(person)),
            )
        })
    };
    let pseudonymous: Vec<&str> = referrers
        .iter()
        .map(|r| if r.starts_with('u') { "" } else { *r })
        .collect();
    let mut after = every_report(store, &pseudonymous, &|id: &str| id.to_string()).await;
    // Their own funnels, now under their pseudonyms.
    for (i, (person, _)) in couple.iter().enumerate() {
        after[before.len() - 2 + i] = format!(
            "{:?}",
            reports::funnel(store, &window(0, 10), &pii.pseudonym(person))
                .await
                .unwrap()
        );
    }
    let before: Vec<String> = before.iter().map(|r| swap(r)).collect();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    // The graph stays whole: s1's network still reaches v1 through the erased u1.
    let n = store.network("s1", 3, 10).await.expect("network");
    assert_eq!(n.levels, [(1, 2), (2, 1)]);
    assert!(n.first_level.contains(&pii.pseudonym("u1")));
}

async fn networks_are_bounded_and_pseudonymous<S: Store>(store: &S) {
    // s1 -> u1, u2 (the loop); u1 -> v1; and v1 -> w1 -> x1 -> y1, deeper than anyone sees;
    // y1 -> s1 closes a cycle that must not count s1 or loop.
    let mut events = the_loop();
    for (n, (user, referrer)) in [("w1", "v1"), ("x1", "w1"), ("y1", "x1"), ("s1", "y1")]
        .iter()
        .enumerate()
    {
        let inv = format!("deep{n}");
        events.push(created(&Invite {
            id: &inv,
            referrer,
            supplier: false,
            vendor: None,
            day: 5.0,
            template: "",
            variant: "",
        }));
        events.push(signup(user, referrer, &inv, false, 6.0, 5.0));
    }
    apply(store, "invite", &events, 1).await;
    let n = store.network("s1", 3, 10).await.expect("network");
    assert_eq!(n.levels, [(1, 2), (2, 1), (3, 1)], "u1 u2 | v1 | w1");
    let mut first = n.first_level.clone();
    first.sort();
    assert_eq!(first, ["u1", "u2"]);
    assert_eq!(store.network("s1", 1, 10).await.unwrap().levels, [(1, 2)]);
    assert_eq!(
        store.network("v1", 3, 10).await.unwrap().levels,
        [(1, 1), (2, 1), (3, 1)]
    );
    // The list is bounded.
    assert_eq!(store.network("s1", 1, 1).await.unwrap().first_level.len(), 1);
    assert_eq!(store.network("nobody", 3, 10).await.unwrap(), Default::default());

    // What the API answers: members see their own network only, 1 ..= the configured depth,
    // level 1 by pseudonym.
    use referral_common::auth::Principal;
    use referral_proto::analytics::v1::ReferrerNetworkRequest;
    let pii = referral_common::pii::PiiKeys::for_tests();
    let ask = |who: &str, depth: i32| {
        let p = Principal::new(who, referral_common::auth::Role::Member, Some("SUPPLIER".into()));
        let r = ReferrerNetworkRequest {
            referrer_id: "s1".into(),
            depth,
        };
        (p, r)
    };
    let (p, r) = ask("s1", 0);
    let got = crate::app::network::get(store, &pii, 3, &p, &r)
        .await
        .expect("own network");
    assert_eq!(got.depth, 3);
    let people: Vec<i64> = got.levels.iter().map(|l| l.people).collect();
    assert_eq!(
        people,
        [2, 0, 0],
        "levels past the first under five people are suppressed"
    );
    assert!(got.levels[1].suppressed && got.levels[2].suppressed);
    let mut shown = got.first_level.clone();
    shown.sort();
    let mut expected = vec![pii.pseudonym("u1"), pii.pseudonym("u2")];
    expected.sort();
    assert_eq!(shown, expected);
    let (p, r) = ask("s1", 4);
    let e = crate::app::network::get(store, &pii, 3, &p, &r)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("depth"), "{e}");
    let (p, r) = ask("s1", 3);
    let e = crate::app::network::get(store, &pii, 2, &p, &r)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("depth"),
        "a lower configured maximum holds: {e}"
    );
    let (p, r) = ask("s2", 1);
    let e = crate::app::network::get(store, &pii, 3, &p, &r)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
}

async fn webhook_bodies_are_pseudonymous_and_erased<S: Store + crate::store::webhooks::WebhookStore>(
    store: &S,
) {
    use prost::Message;
    use referral_common::{
        audit::{Actor, AuditEntry, action},
        privacy::PersonData,
    };
    use referral_proto::events::v1::PrivacyRequested;

    use crate::{app::privacy::PersonRecords, store::webhooks::NewEndpoint};

    let pii = referral_common::pii::PiiKeys::for_tests();
    let admin = Actor {
        subject: "admin-1".into(),
        role: "admin".into(),
        request_id: None,
    };
    store
        .create_endpoint(
            NewEndpoint {
                id: "ep-1".into(),
                url: "http://127.0.0.1:9/hook".into(),
                event_types: vec!["*".into()],
                description: String::new(),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                created_at: at(-1.0),
            },
            &AuditEntry::new(
                &admin,
                action::WEBHOOK_ENDPOINT_CREATE,
                "webhook_endpoint",
                "ep-1",
            ),
        )
        .await
        .expect("endpoint");
    let signed_up = signup("cpl-9", "sup-9", "inv-9", true, 1.0, 0.0);
    // The privacy request carries contact keys: never delivered.
    let privacy = new_event(
        "invite",
        "req-1",
        at(1.0),
        Payload::PrivacyRequested(PrivacyRequested {
            request_id: "req-1".into(),
            subject: Some(subject("cpl-9", &[])),
            ..Default::default()
        }),
    );
    // A type from a later build (an unknown oneof field, e.g. a future consent.*) decodes
    // with no payload: nothing to judge it by, so it is neither delivered nor counted.
    let mut bytes = new_event(
        "invite",
        "x",
        at(1.0),
        Payload::PrivacyRequested(Default::default()),
    )
    .encode_to_vec();
    let plain = Event {
        payload: None,
        ..Event::decode(bytes.as_slice()).unwrap()
    };
    bytes = plain.encode_to_vec();
    bytes.extend_from_slice(&[0x9A, 0x06, 0x02, b'h', b'i']);
    let unknown = Event::decode(bytes.as_slice()).expect("an unknown field decodes");
    assert!(unknown.payload.is_none());
    let created = crate::app::webhook_fan_out::fan_out(
        store,
        "invite",
        vec![signed_up.clone(), privacy, unknown.clone()],
        &pii,
    )
    .await
    .expect("fan out");
    assert_eq!(created, 1, "only the signup is delivered");
    // The rollups take the unknown event as nothing (and do not stall on it).
    apply(store, "invite", &[signed_up, unknown], 1).await;
    assert_eq!(store.last_offset("invite").await.unwrap(), 2);

    let bodies = store.deliveries_naming("sup-9", "", 10).await.expect("bodies");
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0].payload;
    assert!(body.contains(&pii.pseudonym("cpl-9")), "{body}");
    assert!(!body.contains("\"cpl-9\""), "the referee is pseudonymous: {body}");

    let records = PersonRecords::new(store.clone(), pii.clone());
    let counts = records.erase(&subject("sup-9", &[])).await.expect("erase");
    assert_eq!(counts["webhookDeliveries"], 1);
    let bodies = store
        .deliveries_naming(&pii.pseudonym("sup-9"), "", 10)
        .await
        .expect("bodies");
    assert_eq!(bodies.len(), 1);
    assert!(!bodies[0].payload.contains("\"sup-9\""), "{}", bodies[0].payload);
    let again = records.erase(&subject("sup-9", &[])).await.expect("again");
    assert_eq!(again["webhookDeliveries"], 0);
}
