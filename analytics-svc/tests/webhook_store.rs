//! The webhook store's conformance suite: the same cases on SQLite always and on Postgres
//! when TEST_DATABASE_URL is set (each case in a schema of its own). Fan-out (subscriptions,
//! an endpoint hears only what happens after its creation, a replayed batch adds nothing),
//! leases (two dispatchers never hold the same delivery; a lost lease records nothing), the
//! retry and disable bookkeeping, and paging of the delivery log.

use analytics_svc::{
    domain::webhooks::retry::RetryPolicy,
    store::{
        PgStore, SqliteStore,
        webhooks::{Attempted, Fanout, NewEndpoint, WebhookStore},
    },
};
use chrono::{DateTime, Duration, Utc};
use referral_common::audit::action;
use referral_common::ids;

const SQLITE_SCHEMA: &str = include_str!("../migrations/sqlite/0002_webhooks.sql");
const PG_SCHEMA: &str = include_str!("../migrations/postgres/0002_webhooks.sql");

async fn sqlite() -> SqliteStore {
    let path = std::env::temp_dir().join(format!("webhooks-{}.db", ids::new_id()));
    let pool = referral_common::db::connect_sqlite(&format!("sqlite:{}", path.display()))
        .await
        .expect("sqlite");
    sqlx::raw_sql(SQLITE_SCHEMA).execute(&pool).await.expect("schema");
    // Endpoint writes are audited in the same transaction: the audit table must exist.
    sqlx::raw_sql(referral_common::audit::SQLITE_SCHEMA)
        .execute(&pool)
        .await
        .expect("audit schema");
    SqliteStore::from_pool(pool)
}

async fn postgres(case: &str) -> Option<PgStore> {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!("skipping pg_{case}: TEST_DATABASE_URL is not set");
            return None;
        }
    };
    let schema = referral_common::db::test_schema("webhooks");
    let pool = referral_common::db::connect_postgres(&url, &schema, 8)
        .await
        .expect("postgres");
    sqlx::raw_sql(PG_SCHEMA).execute(&pool).await.expect("schema");
    sqlx::raw_sql(referral_common::audit::POSTGRES_SCHEMA)
        .execute(&pool)
        .await
        .expect("audit schema");
    Some(PgStore::from_pool(pool))
}

async fn endpoint<W: WebhookStore>(store: &W, types: &[&str], created_at: DateTime<Utc>) -> String {
    let id = ids::new_id();
    store
        .create_endpoint(
            NewEndpoint {
                id: id.clone(),
                url: "http://127.0.0.1:9/hook".into(),
                event_types: types.iter().map(|t| t.to_string()).collect(),
                description: String::new(),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                created_at,
            },
            &audit(action::WEBHOOK_ENDPOINT_CREATE, &id),
        )
        .await
        .expect("create endpoint");
    id
}

fn event(kind: &str, at: DateTime<Utc>) -> Fanout {
    Fanout {
        event_id: ids::new_id(),
        event_type: kind.into(),
        occurred_at: at,
        payload: format!("{{\"type\":\"{kind}\"}}"),
    }
}

async fn fan_out_follows_subscriptions_creation_time_and_drops_replays<W: WebhookStore>(store: W) {
    let now = ids::now();
    let created = endpoint(&store, &["invitation.created"], now).await;
    let all = endpoint(&store, &["*"], now).await;
    let before = event("invitation.created", now - Duration::seconds(5));
    let a = event("invitation.created", now + Duration::seconds(1));
    let b = event("payout.paid", now + Duration::seconds(2));
    let n = store
        .fan_out("invite", 3, vec![before.clone(), a.clone(), b.clone()])
        .await
        .expect("fan out");
    assert_eq!(
        n, 3,
        "a to both, b to the catch-all, nothing from before creation"
    );
    assert_eq!(store.webhook_offset("invite").await.unwrap(), 3);
    assert_eq!(
        store.webhook_offset("fraud").await.unwrap(),
        0,
        "offsets are per source"
    );
    // The same batch again (a crash before the consumer saw its commit): nothing new.
    assert_eq!(
        store
            .fan_out("invite", 3, vec![a.clone(), b.clone()])
            .await
            .unwrap(),
        0
    );
    // An older offset never moves the stored one back.
    store.fan_out("invite", 2, vec![]).await.unwrap();
    assert_eq!(store.webhook_offset("invite").await.unwrap(), 3);
    let mine = store.list_deliveries(&created, None, 50).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].event_id, a.event_id);
    assert_eq!(mine[0].state, "PENDING");
    assert_eq!(mine[0].attempts, 0);
    assert_eq!(store.list_deliveries(&all, None, 50).await.unwrap().len(), 2);
    // A deleted endpoint gets nothing more.
    store
        .delete_endpoint(&all, now, &audit(action::WEBHOOK_ENDPOINT_DELETE, &all))
        .await
        .unwrap()
        .expect("deleted");
    assert!(store.get_endpoint(&all).await.unwrap().is_none());
    let c = event("payout.paid", now + Duration::seconds(3));
    assert_eq!(store.fan_out("incentive", 1, vec![c]).await.unwrap(), 0);
}

async fn leases_keep_two_dispatchers_apart<W: WebhookStore>(store: W) {
    let now = ids::now();
    let ep = endpoint(&store, &["*"], now - Duration::seconds(10)).await;
    let events: Vec<Fanout> = (0..10)
        .map(|i| event("invitation.sent", now - Duration::seconds(i)))
        .collect();
    store.fan_out("invite", 10, events).await.unwrap();
    // Deliveries are due from their creation on.
    let now = ids::now();
    let until = now + Duration::seconds(30);
    let (a, b) = tokio::join!(
        store.claim_due("a", now, until, 6),
        store.claim_due("b", now, until, 6)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 10, "every due delivery claimed once");
    assert!(a.iter().all(|x| b.iter().all(|y| x.id != y.id)), "never by both");
    assert!(
        store.claim_due("c", now, until, 10).await.unwrap().is_empty(),
        "all leased"
    );
    // The leases run out: c may take the deliveries, and a can no longer record them.
    let later = until + Duration::seconds(1);
    let retaken = store
        .claim_due("c", later, later + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 10);
    let policy = RetryPolicy::default();
    let stale = store
        .record_attempt(&a[0], "a", Attempted::Delivered { status: 200 }, later, &policy)
        .await
        .unwrap();
    assert!(!stale, "a lost its lease: nothing recorded");
    let fresh = retaken.iter().find(|c| c.id == a[0].id).expect("retaken");
    assert!(
        store
            .record_attempt(fresh, "c", Attempted::Delivered { status: 204 }, later, &policy)
            .await
            .unwrap()
    );
    let rows = store.list_deliveries(&ep, None, 50).await.unwrap();
    let done = rows.iter().find(|d| d.id == a[0].id).unwrap();
    assert_eq!(
        (done.state.as_str(), done.attempts, done.last_status),
        ("DELIVERED", 1, 204)
    );
    assert!(done.delivered_at.is_some());
    assert_eq!(fresh.url, "http://127.0.0.1:9/hook");
}

async fn failures_are_retried_then_failed_and_twenty_in_a_row_disable<W: WebhookStore>(store: W) {
    let now = ids::now();
    let ep = endpoint(&store, &["*"], now - Duration::seconds(60)).await;
    let events: Vec<Fanout> = (0..25)
        .map(|i| event("click.recorded", now - Duration::seconds(i)))
        .collect();
    store.fan_out("invite", 25, events).await.unwrap();
    let now = ids::now();
    let policy = RetryPolicy::default();
    let claimed = store
        .claim_due("d", now, now + Duration::seconds(30), 25)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 25);
    let retry_at = now + Duration::seconds(5);
    for (i, c) in claimed.iter().enumerate() {
        // The first is given up (no next attempt); the others are scheduled again.
        let next = (i > 0).then_some(retry_at);
        let failed = Attempted::Failed {
            status: 503,
            error: "HTTP 503: busy".into(),
            next,
        };
        assert!(store.record_attempt(c, "d", failed, now, &policy).await.unwrap());
    }
    let ep_row = store.get_endpoint(&ep).await.unwrap().unwrap();
    assert!(!ep_row.enabled, "20 failures in a row disable it");
    assert_eq!(ep_row.consecutive_failures, 20, "counted while enabled only");
    assert!(
        ep_row.disabled_reason.contains("20 consecutive"),
        "{}",
        ep_row.disabled_reason
    );
    let rows = store.list_deliveries(&ep, None, 50).await.unwrap();
    let failed = rows.iter().find(|d| d.id == claimed[0].id).unwrap();
    assert_eq!((failed.state.as_str(), failed.last_status), ("FAILED", 503));
    assert_eq!(failed.last_error, "HTTP 503: busy");
    let pending = rows.iter().find(|d| d.id == claimed[1].id).unwrap();
    assert_eq!(pending.state, "PENDING");
    assert_eq!(pending.next_attempt_at, Some(retry_at));
    // Disabled: nothing of it is due any more.
    let later = retry_at + Duration::seconds(1);
    assert!(
        store
            .claim_due("d", later, later + Duration::seconds(60), 50)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_success_resets_the_run_of_failures<W: WebhookStore>(store: W) {
    let now = ids::now();
    let ep = endpoint(&store, &["*"], now - Duration::seconds(60)).await;
    store
        .fan_out(
            "fraud",
            2,
            vec![event("fraud.assessed", now), event("fraud.assessed", now)],
        )
        .await
        .unwrap();
    let now = ids::now();
    let policy = RetryPolicy::default();
    let claimed = store
        .claim_due("e", now, now + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let failed = Attempted::Failed {
        status: 0,
        error: "connection refused".into(),
        next: Some(now),
    };
    store
        .record_attempt(&claimed[0], "e", failed, now, &policy)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_endpoint(&ep)
            .await
            .unwrap()
            .unwrap()
            .consecutive_failures,
        1
    );
    store
        .record_attempt(
            &claimed[1],
            "e",
            Attempted::Delivered { status: 200 },
            now,
            &policy,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_endpoint(&ep)
            .await
            .unwrap()
            .unwrap()
            .consecutive_failures,
        0
    );
}

async fn the_delivery_log_pages_in_creation_order<W: WebhookStore>(store: W) {
    let now = ids::now();
    let ep = endpoint(&store, &["*"], now - Duration::seconds(60)).await;
    let events: Vec<Fanout> = (0..7).map(|_| event("signup.recorded", now)).collect();
    store.fan_out("invite", 7, events).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_deliveries(&ep, after.as_deref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.id.clone());
        seen.extend(page.into_iter().map(|d| d.id));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "ordered, no repeats");
    assert_eq!(seen.len(), 7);
}

macro_rules! conformance {
    ($($case:ident: $sqlite:ident, $pg:ident;)*) => {$(
        #[tokio::test]
        async fn $sqlite() {
            $case(sqlite().await).await;
        }

        #[tokio::test]
        async fn $pg() {
            if let Some(store) = postgres(stringify!($case)).await {
                $case(store).await;
            }
        }
    )*};
}

conformance! {
    fan_out_follows_subscriptions_creation_time_and_drops_replays: sqlite_fan_out, pg_fan_out;
    leases_keep_two_dispatchers_apart: sqlite_leases, pg_leases;
    failures_are_retried_then_failed_and_twenty_in_a_row_disable: sqlite_failures_disable, pg_failures_disable;
    a_success_resets_the_run_of_failures: sqlite_success_resets, pg_success_resets;
    the_delivery_log_pages_in_creation_order: sqlite_paging, pg_paging;
}

/// The dispatcher against real sockets: the SSRF guard holds at delivery time (an endpoint
/// registered while loopback was allowed is refused once it is not), and a redirect is a
/// failure, never followed (it could point inside).
mod dispatcher {
    use std::{sync::Arc, time::Duration as StdDuration};

    use analytics_svc::{
        adapters::webhooks::dispatcher::Dispatcher,
        domain::webhooks::{retry::RetryPolicy, target::TargetPolicy},
        store::{SqliteStore, webhooks::WebhookStore},
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        sync::Notify,
    };

    use super::*;

    async fn one_delivery(store: &SqliteStore, url: &str) -> String {
        let now = ids::now();
        let id = ids::new_id();
        store
            .create_endpoint(
                NewEndpoint {
                    id: id.clone(),
                    url: url.into(),
                    event_types: vec!["*".into()],
                    description: String::new(),
                    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                    created_at: now - Duration::seconds(1),
                },
                &audit(action::WEBHOOK_ENDPOINT_CREATE, &id),
            )
            .await
            .unwrap();
        store
            .fan_out("invite", 1, vec![event("invitation.created", now)])
            .await
            .unwrap();
        id
    }

    fn dispatcher(store: &SqliteStore, targets: TargetPolicy) -> Dispatcher<SqliteStore> {
        Dispatcher::new(
            store.clone(),
            targets,
            RetryPolicy::default(),
            StdDuration::from_secs(5),
            Arc::new(Notify::new()),
        )
        .unwrap()
    }

    /// A server answering every request with `status_line` and `headers`; counts requests.
    async fn answering(
        status_line: &'static str,
        headers: &'static str,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status_line}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (format!("http://{addr}/hook"), hits)
    }

    #[tokio::test]
    async fn an_internal_target_is_refused_at_delivery_time() {
        let store = sqlite().await;
        let (url, hits) = answering("204 No Content", "").await;
        let endpoint = one_delivery(&store, &url).await;
        // Loopback is not allowed now (say the setting changed since registration).
        assert_eq!(
            dispatcher(&store, TargetPolicy::default()).pass().await.unwrap(),
            1
        );
        let d = &store.list_deliveries(&endpoint, None, 10).await.unwrap()[0];
        assert_eq!((d.state.as_str(), d.attempts, d.last_status), ("PENDING", 1, 0));
        assert!(d.last_error.contains("loopback"), "{}", d.last_error);
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing was sent"
        );
    }

    #[tokio::test]
    async fn redirects_are_failures_and_not_followed() {
        let store = sqlite().await;
        let (url, _) = answering(
            "302 Found",
            "Location: http://169.254.169.254/latest/meta-data\r\n",
        )
        .await;
        let endpoint = one_delivery(&store, &url).await;
        let loopback = TargetPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(dispatcher(&store, loopback).pass().await.unwrap(), 1);
        let d = &store.list_deliveries(&endpoint, None, 10).await.unwrap()[0];
        assert_eq!((d.state.as_str(), d.attempts, d.last_status), ("PENDING", 1, 302));
        assert!(d.next_attempt_at.is_some());
    }
}

/// An admin's audit entry for an endpoint write.
fn audit(action: &str, endpoint: &str) -> referral_common::audit::AuditEntry {
    let actor = referral_common::audit::Actor {
        subject: "admin-1".into(),
        role: "admin".into(),
        request_id: None,
    };
    referral_common::audit::AuditEntry::new(&actor, action, "webhook_endpoint", endpoint)
}
