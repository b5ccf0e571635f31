//! The retention job on an in-memory SQLite database: what each shared rule deletes and
//! keeps, dry runs, bounded batches, the consumer's high-water mark after its dedupe ids are
//! pruned, and idempotency records that outlive the process.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use referral_proto::events::v1::{Event, SignupRecorded, event::Payload};
use sqlx::SqlitePool;
use tonic::{Code, Status, metadata::MetadataMap};

use super::*;
use crate::{
    auth::{ServiceCredentials, ServiceKeys},
    config::Secret,
    consumer::{ConsumerConfig, EventSink, deliver},
    idempotency::Idempotency,
    parked::Parking,
    pii::PiiKeys,
    supervisor::SupervisionConfig,
};

async fn database() -> SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    for schema in [
        include_str!("../event_tables/sqlite.sql"),
        crate::parked::SQLITE_SCHEMA,
        crate::audit::SQLITE_SCHEMA,
        SQLITE_SCHEMA,
    ] {
        sqlx::raw_sql(schema).execute(&pool).await.unwrap();
    }
    pool
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn now() -> DateTime<Utc> {
    crate::ids::now()
}

/// Outbox rows at offsets 1..=n, created `age_days` ago.
async fn outbox(pool: &SqlitePool, n: i64, age_days: i64) {
    for i in 1..=n {
        sqlx::query("INSERT INTO outbox (event_id, event_type, log_offset, payload, created_at) VALUES ($1, 't', $2, x'00', $3)")
            .bind(format!("e{i}"))
            .bind(i)
            .bind(now() - chrono::Duration::days(age_days))
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn offsets(pool: &SqlitePool) -> Vec<i64> {
    sqlx::query_scalar("SELECT log_offset FROM outbox ORDER BY log_offset")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn job(pool: &SqlitePool, args: &RetentionArgs) -> RetentionJob {
    RetentionJob::new("test-svc", pool.clone(), args, Vec::new())
}

fn outcome(outcomes: &[Outcome], kind: &str) -> Outcome {
    outcomes.iter().find(|o| o.kind == kind).cloned().unwrap()
}

#[tokio::test]
async fn the_outbox_is_purged_only_below_every_durable_consumer_and_after_the_grace() {
    let pool = database().await;
    outbox(&pool, 10, 30).await;
    let args = RetentionArgs::default();
    let db = RetentionDb::from(pool.clone());

    // Nobody has said how far it read: nothing may go.
    job(&pool, &args).tick(now()).await.unwrap();
    assert_eq!(offsets(&pool).await.len(), 10);

    record_consumer(&db, "fraud-svc", 5, now()).await.unwrap();
    record_consumer(&db, "analytics-svc", 8, now()).await.unwrap();
    let out = job(&pool, &args).tick(now()).await.unwrap();
    assert_eq!(outcome(&out, "outbox").rows, 5);
    assert_eq!(offsets(&pool).await, (6..=10).collect::<Vec<_>>());

    // Everyone past everything: the newest row stays (new offsets are numbered after it).
    record_consumer(&db, "fraud-svc", 10, now()).await.unwrap();
    record_consumer(&db, "analytics-svc", 10, now()).await.unwrap();
    job(&pool, &args).tick(now()).await.unwrap();
    assert_eq!(offsets(&pool).await, vec![10]);
}

#[tokio::test]
async fn rows_inside_the_grace_and_a_stale_consumer_hold_the_outbox() {
    let pool = database().await;
    outbox(&pool, 4, 30).await;
    outbox_fresh(&pool).await;
    let db = RetentionDb::from(pool.clone());
    record_consumer(&db, "invite-svc", 100, now()).await.unwrap();
    // Unseen for 60 days, still at 2.
    record_consumer(&db, "gone-svc", 2, now() - chrono::Duration::days(60))
        .await
        .unwrap();

    let args = RetentionArgs::default();
    job(&pool, &args).tick(now()).await.unwrap();
    assert_eq!(
        offsets(&pool).await,
        vec![3, 4, 5],
        "the stale consumer holds the log without OUTBOX_CONSUMER_EXPIRY"
    );

    let expiring = RetentionArgs {
        outbox_consumer_expiry: Some(days(30)),
        ..RetentionArgs::default()
    };
    job(&pool, &expiring).tick(now()).await.unwrap();
    // 5 is inside the grace (and the newest).
    assert_eq!(offsets(&pool).await, vec![5]);
}

/// One more outbox row, offset 5, created now.
async fn outbox_fresh(pool: &SqlitePool) {
    sqlx::query("INSERT INTO outbox (event_id, event_type, log_offset, payload, created_at) VALUES ('fresh', 't', 5, x'00', $1)")
        .bind(now())
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dry_run_counts_and_changes_nothing_and_work_per_tick_is_bounded() {
    let pool = database().await;
    for i in 0..7 {
        sqlx::query("INSERT INTO processed_events (event_id, processed_at) VALUES ($1, $2)")
            .bind(format!("p{i}"))
            .bind(now() - chrono::Duration::days(10))
            .execute(&pool)
            .await
            .unwrap();
    }
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM processed_events")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let dry = RetentionArgs {
        dry_run: true,
        ..RetentionArgs::default()
    };
    let out = job(&pool, &dry).tick(now()).await.unwrap();
    assert_eq!(outcome(&out, "processed_events").rows, 7);
    assert!(outcome(&out, "processed_events").dry_run);
    assert_eq!(count().await, 7);

    let small = RetentionArgs {
        batch: 2,
        max_batches: 2,
        ..RetentionArgs::default()
    };
    let out = job(&pool, &small).tick(now()).await.unwrap();
    assert_eq!(
        (
            outcome(&out, "processed_events").rows,
            outcome(&out, "processed_events").more
        ),
        (4, true)
    );
    assert_eq!(count().await, 3);
    let out = job(&pool, &small).tick(now()).await.unwrap();
    assert_eq!(
        (
            outcome(&out, "processed_events").rows,
            outcome(&out, "processed_events").more
        ),
        (3, false)
    );
    assert_eq!(count().await, 0);
}

/// A sink like the services': effects, offset and dedupe ids in one transaction.
struct Counting {
    pool: SqlitePool,
}

impl EventSink for Counting {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        let mut conn = self.pool.acquire().await?;
        Ok(crate::consumer::sqlite::load_offset(&mut conn, source).await?)
    }

    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut last = 0;
        for e in events {
            last = last.max(e.offset);
            if !crate::consumer::sqlite::first_time(&mut tx, &e.id).await? {
                continue;
            }
            sqlx::query("UPDATE effects SET n = n + 1")
                .execute(&mut *tx)
                .await?;
        }
        crate::consumer::sqlite::save_offset(&mut tx, source, last).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn event(i: i64) -> Event {
    Event {
        id: format!("ev-{i}"),
        offset: i,
        payload: Some(Payload::SignupRecorded(SignupRecorded {
            user_id: format!("u-{i}"),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn pruned_dedupe_ids_do_not_let_a_redelivered_event_apply_twice() {
    let pool = database().await;
    sqlx::raw_sql("CREATE TABLE effects (n INTEGER NOT NULL); INSERT INTO effects VALUES (0);")
        .execute(&pool)
        .await
        .unwrap();
    let keys = ServiceKeys::new(&Secret::new("x".repeat(32)));
    let config = ConsumerConfig {
        source: "invite".into(),
        consumer: "test-svc".into(),
        channel: tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
        credentials: ServiceCredentials::new(&keys, "test-svc"),
        max_batch: 100,
        max_backoff: Duration::from_millis(10),
        parking: Parking::new(pool.clone(), &SupervisionConfig::default()),
    };
    let sink = Counting { pool: pool.clone() };
    let effects = || async {
        sqlx::query_scalar::<_, i64>("SELECT n FROM effects")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    deliver(&config, &sink, (1..=5).map(event).collect())
        .await
        .unwrap();
    assert_eq!(effects().await, 5);

    // The dedupe window passes: every id is forgotten.
    let args = RetentionArgs {
        dedupe_window: Duration::ZERO,
        ..RetentionArgs::default()
    };
    let out = job(&pool, &args)
        .tick(now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(outcome(&out, "processed_events").rows, 5);

    // The producer sends the same events again (and two new ones): only the new apply.
    deliver(&config, &sink, (1..=7).map(event).collect())
        .await
        .unwrap();
    assert_eq!(effects().await, 7);
    deliver(&config, &sink, vec![event(3)]).await.unwrap();
    assert_eq!(effects().await, 7);
}

fn md(key: &str) -> MetadataMap {
    let mut m = MetadataMap::new();
    m.insert(crate::auth::IDEMPOTENCY_KEY, key.parse().unwrap());
    m
}

#[tokio::test]
async fn idempotency_records_outlive_the_process_sealed_and_expire_with_retention() {
    let pool = database().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let work = |runs: Arc<AtomicUsize>| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Status>("couple@example.com".to_string())
    };
    let req = "create".to_string();
    let first = Idempotency::database(pool.clone(), "invite", PiiKeys::for_tests())
        .run(&md("k1"), "user-1", "Create", &req, work(runs.clone()))
        .await
        .unwrap();
    // A new process on the same database.
    let again = Idempotency::database(pool.clone(), "invite", PiiKeys::for_tests());
    let second = again
        .run(&md("k1"), "user-1", "Create", &req, work(runs.clone()))
        .await
        .unwrap();
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("couple@example.com", "couple@example.com")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let other = again
        .run(
            &md("k1"),
            "user-1",
            "Create",
            &"other".to_string(),
            work(runs.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);

    // Neither the answer nor the caller is stored in clear.
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT slot, record FROM idempotency_records")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].0.contains("user-1") && !rows[0].1.contains("couple"));
    assert!(!rows[0].1.contains("Done"));

    // Another key cannot open it: an error, not a second run.
    let foreign = PiiKeys::parse(
        &Secret::new("t9:another-pii-key-0123456789abcdef0123456789"),
        &Secret::new("another-lookup-key-0123456789abcdef0123"),
    )
    .unwrap();
    let e = Idempotency::database(pool.clone(), "invite", foreign)
        .run(&md("k1"), "user-1", "Create", &req, work(runs.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // 24 hours later the retention job deletes it; the key is free again.
    let out = job(&pool, &RetentionArgs::default())
        .tick(now() + chrono::Duration::hours(25))
        .await
        .unwrap();
    assert_eq!(outcome(&out, "idempotency_records").rows, 1);
    again
        .run(&md("k1"), "user-1", "Create", &req, work(runs.clone()))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn consumer_names_are_bounded() {
    assert!(consumers::valid_consumer_name("analytics-svc"));
    assert!(!consumers::valid_consumer_name(""));
    assert!(!consumers::valid_consumer_name(&"a".repeat(65)));
    assert!(!consumers::valid_consumer_name("bad name"));
    assert!(!consumers::valid_consumer_name("naïve"));
}
