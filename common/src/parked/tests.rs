//! The consumer's isolation of a poison event, on an in-memory SQLite database: a sink
//! that fails on one event id (an error) and one that panics on another.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use referral_proto::{
    common::v1::{ListParkedRequest, ParkedKind, RetryOutcome},
    events::v1::{Event, SignupRecorded, event::Payload},
};
use sqlx::SqlitePool;

use super::*;
use crate::{
    audit::Actor,
    auth::{ServiceCredentials, ServiceKeys},
    config::Secret,
    consumer::{ConsumerConfig, deliver},
};

/// Records what it applied; fails on `err-…` ids, panics on `panic-…` ids while `broken`.
#[derive(Default)]
struct Picky {
    applied: Mutex<Vec<String>>,
    broken: AtomicBool,
}

impl EventSink for Picky {
    async fn last_offset(&self, _source: &str) -> anyhow::Result<i64> {
        Ok(0)
    }

    async fn apply(&self, _source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            for e in &events {
                anyhow::ensure!(!e.id.starts_with("err-"), "cannot apply {}", e.id);
                if e.id.starts_with("panic-") {
                    panic!("boom on {}", e.id);
                }
            }
        }
        // All or nothing, as a transaction would.
        self.applied
            .lock()
            .unwrap()
            .extend(events.into_iter().map(|e| e.id));
        Ok(())
    }
}

fn event(id: &str, offset: i64) -> Event {
    Event {
        id: id.into(),
        offset,
        payload: Some(Payload::SignupRecorded(SignupRecorded {
            user_id: format!("u-{offset}"),
            ..Default::default()
        })),
        ..Default::default()
    }
}

async fn database() -> SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    for schema in [
        SQLITE_SCHEMA,
        crate::audit::SQLITE_SCHEMA,
        "CREATE TABLE consumer_offsets (source TEXT PRIMARY KEY, last_offset BIGINT NOT NULL);",
    ] {
        sqlx::raw_sql(schema).execute(&pool).await.unwrap();
    }
    pool
}

fn config(parking: &Parking) -> ConsumerConfig {
    let keys = ServiceKeys::new(&Secret::new("test-secret-test-secret-test-secret"));
    ConsumerConfig {
        source: "invite".into(),
        consumer: "tests".into(),
        channel: tonic::transport::Channel::from_static("http://127.0.0.1:9").connect_lazy(),
        credentials: ServiceCredentials::new(&keys, "tests"),
        max_batch: 10,
        max_backoff: Duration::from_millis(50),
        parking: parking.clone(),
    }
}

fn parking(pool: &SqlitePool, park_after: u32) -> Parking {
    let supervision = SupervisionConfig {
        consumer_park_after: park_after,
        ..Default::default()
    };
    Parking::new(pool.clone(), &supervision)
}

async fn offset(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT last_offset FROM consumer_offsets WHERE source = 'invite'")
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_failing_and_a_panicking_event_are_parked_and_the_others_applied() {
    let pool = database().await;
    let parking = parking(&pool, 3);
    let config = config(&parking);
    let sink = Arc::new(Picky::default());
    sink.broken.store(true, Ordering::SeqCst);
    parking.register("tests", "invite", sink.clone());
    let batch = vec![
        event("a", 1),
        event("err-b", 2),
        event("c", 3),
        event("panic-d", 4),
        event("e", 5),
    ];
    deliver(&config, &sink, batch).await.expect("parking works");
    assert_eq!(
        *sink.applied.lock().unwrap(),
        ["a", "c", "e"],
        "the good events, in order"
    );
    assert_eq!(
        offset(&pool).await,
        4,
        "the offset moved past the last parked event"
    );

    let rows = parking.db().list(before(None), 10).await.unwrap();
    let mut parked: Vec<_> = rows
        .iter()
        .map(|r| (r.event_id.as_str(), r.attempts, r.offset, r.event_type.as_str()))
        .collect();
    parked.sort();
    assert_eq!(
        parked,
        [
            ("err-b", 3, 2, "signup.recorded"),
            ("panic-d", 3, 4, "signup.recorded")
        ]
    );
    let reason = |id: &str| rows.iter().find(|r| r.event_id == id).unwrap().reason.clone();
    assert!(
        reason("err-b").contains("cannot apply err-b"),
        "{}",
        reason("err-b")
    );
    assert!(
        reason("panic-d").contains("panicked: boom on panic-d"),
        "{}",
        reason("panic-d")
    );
    assert!(
        rows.iter()
            .all(|r| r.event().is_some_and(|e| e.offset == r.offset))
    );
    let parks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'event.park'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parks, 2, "each parking is audited");
}

#[tokio::test]
async fn a_batch_that_fails_once_is_applied_without_parking() {
    let pool = database().await;
    let parking = parking(&pool, 2);
    let config = config(&parking);
    // Fails the first attempt of the batch only (a transient failure).
    let calls = Arc::new(Mutex::new(0));
    let seen = calls.clone();
    let supervision = SupervisionConfig {
        consumer_park_after: 2,
        consumer_fault: ConsumerFault::new(move |_, _, _| {
            let mut n = seen.lock().unwrap();
            *n += 1;
            anyhow::ensure!(*n > 1, "transient");
            Ok(())
        }),
        ..Default::default()
    };
    let config = ConsumerConfig {
        parking: Parking::new(pool.clone(), &supervision),
        ..config
    };
    let sink = Picky::default();
    deliver(&config, &sink, vec![event("a", 1), event("b", 2)])
        .await
        .unwrap();
    assert_eq!(*sink.applied.lock().unwrap(), ["a", "b"]);
    assert!(parking.db().list(before(None), 10).await.unwrap().is_empty());
}

fn admin() -> Actor {
    Actor {
        subject: "root".into(),
        role: "admin".into(),
        request_id: None,
    }
}

#[tokio::test]
async fn a_parked_event_is_listed_and_retried_through_its_sink() {
    let pool = database().await;
    let parking = parking(&pool, 1);
    let config = config(&parking);
    let sink = Arc::new(Picky::default());
    sink.broken.store(true, Ordering::SeqCst);
    parking.register("tests", "invite", sink.clone());
    deliver(&config, &sink, vec![event("panic-x", 7)]).await.unwrap();

    let service = ParkedWorkService::new(parking.clone(), "fraud-svc");
    let page = service.list(&ListParkedRequest::default()).await.unwrap();
    assert_eq!(page.parked.len(), 1);
    let item = page.parked[0].clone();
    assert!(item.id.starts_with("fraud.event."), "{}", item.id);
    assert_eq!(
        (item.kind, item.subject.as_str(), item.attempts),
        (ParkedKind::Event as i32, "panic-x", 1)
    );
    let sends_only = ListParkedRequest {
        kind: ParkedKind::Send as i32,
        ..Default::default()
    };
    assert!(service.list(&sends_only).await.unwrap().parked.is_empty());

    // Still broken: stays parked, one more attempt, the new reason.
    let failed = service.retry(&admin(), &item.id).await.unwrap();
    assert!(!failed.retried);
    assert_eq!(failed.outcome, RetryOutcome::Failed as i32);
    let after = failed.parked.expect("the item as it stands");
    assert_eq!(after.attempts, 2);
    assert!(after.reason.contains("boom on panic-x"), "{}", after.reason);

    sink.broken.store(false, Ordering::SeqCst);
    let applied = service.retry(&admin(), &item.id).await.unwrap();
    assert!(applied.retried);
    assert_eq!(applied.outcome, RetryOutcome::Applied as i32);
    assert_eq!(*sink.applied.lock().unwrap(), ["panic-x"]);
    assert!(
        service
            .list(&ListParkedRequest::default())
            .await
            .unwrap()
            .parked
            .is_empty()
    );
    let retries: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'parked.retry' AND actor_subject = 'root'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(retries, 2, "both retries audited");

    // Gone now; other services' ids and malformed ones are refused.
    let gone = service.retry(&admin(), &item.id).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let other = item.id.replacen("fraud.", "invite.", 1);
    assert_eq!(
        service.retry(&admin(), &other).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    for bad in [
        "",
        "fraud.event",
        "fraud.thing.0192",
        "nope.event.01900000-0000-7000-8000-000000000000",
        "fraud.event.x",
    ] {
        assert_eq!(
            service.retry(&admin(), bad).await.unwrap_err().code(),
            tonic::Code::InvalidArgument,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn listing_pages_newest_first_without_gaps() {
    let pool = database().await;
    let parking = parking(&pool, 1);
    let config = config(&parking);
    let sink = Picky::default();
    sink.broken.store(true, Ordering::SeqCst);
    for i in 0..5 {
        deliver(&config, &sink, vec![event(&format!("err-{i}"), i + 1)])
            .await
            .unwrap();
    }
    let service = ParkedWorkService::new(parking, "incentive-svc");
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = service
            .list(&ListParkedRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.parked.into_iter().map(|p| p.subject));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["err-4", "err-3", "err-2", "err-1", "err-0"]);
    for (field, req) in [
        (
            "service",
            ListParkedRequest {
                service: "mail-svc".into(),
                ..Default::default()
            },
        ),
        (
            "kind",
            ListParkedRequest {
                kind: 9,
                ..Default::default()
            },
        ),
        (
            "pageSize",
            ListParkedRequest {
                page_size: -1,
                ..Default::default()
            },
        ),
        (
            "pageToken",
            ListParkedRequest {
                page_token: "zz".into(),
                ..Default::default()
            },
        ),
    ] {
        let e = service.list(&req).await.unwrap_err();
        let ApiError::Invalid(v) = e else {
            panic!("{field}: {e}")
        };
        assert_eq!(v.0[0].0, field);
    }
}

#[test]
fn ids_name_their_service_and_kind() {
    let id = public_id("analytics-svc", "event", "01900000-0000-7000-8000-00000000000a");
    assert_eq!(id, "analytics.event.01900000-0000-7000-8000-00000000000a");
    assert_eq!(
        parse_id(&id).unwrap(),
        (
            "analytics",
            "event",
            "01900000-0000-7000-8000-00000000000a".to_string()
        )
    );
    assert!(parse_id(&"x".repeat(200)).is_err());
}
