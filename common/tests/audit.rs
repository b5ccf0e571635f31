//! The audit log's mechanism on both backends (SQLite always, Postgres when
//! TEST_DATABASE_URL is set): a row commits with its change or not at all, the database
//! refuses UPDATE and DELETE, and reads filter and page newest first without gaps or repeats.

use chrono::Duration;
use referral_common::{
    audit::{self, Actor, AuditEntry, AuditQuery, AuditStore, Cursor, action},
    db, ids,
};
use referral_proto::common::v1::ListAuditEntriesRequest;
use serde_json::json;
use sqlx::{PgPool, SqlitePool};

async fn sqlite() -> SqlitePool {
    let pool = db::connect_sqlite("sqlite::memory:").await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(audit::SQLITE_SCHEMA))
        .execute(&pool)
        .await
        .unwrap();
    // The change being audited.
    sqlx::query("CREATE TABLE tiers (id TEXT PRIMARY KEY, tier TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

async fn postgres(url: &str, schema: &str) -> PgPool {
    let pool = db::connect_postgres(url, schema, 2).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(audit::POSTGRES_SCHEMA))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE tiers (id TEXT PRIMARY KEY, tier TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

fn admin() -> Actor {
    Actor {
        subject: "admin-ä".into(),
        role: "admin".into(),
        request_id: Some("req-1".into()),
    }
}

fn entry(subject: &str) -> AuditEntry {
    AuditEntry::new(&admin(), action::REFERRER_TIER_SET, "referrer", subject)
        .before(json!({"tier": "REGULAR"}))
        .after(json!({"tier": "PREMIUM"}))
        .note("asked nicely")
}

fn query() -> AuditQuery {
    AuditQuery::from_request(&ListAuditEntriesRequest::default()).unwrap()
}

/// The cases, written once over a pool of either backend.
macro_rules! cases {
    ($pool:expr) => {{
        let pool = $pool;
        // Committed together.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO tiers (id, tier) VALUES ('r1', 'PREMIUM')")
            .execute(&mut *tx)
            .await
            .unwrap();
        let first = entry("r1");
        audit::record(&mut *tx, &first).await.unwrap();
        tx.commit().await.unwrap();

        // A change that fails (duplicate key) takes its audit row down with it.
        let mut tx = pool.begin().await.unwrap();
        audit::record(&mut *tx, &entry("r1")).await.unwrap();
        let failed = sqlx::query("INSERT INTO tiers (id, tier) VALUES ('r1', 'GOLD')")
            .execute(&mut *tx)
            .await;
        assert!(failed.is_err());
        drop(tx);
        // And one rolled back on purpose.
        let mut tx = pool.begin().await.unwrap();
        audit::record(&mut *tx, &entry("r2")).await.unwrap();
        tx.rollback().await.unwrap();

        let page = pool.list_audit(&query()).await.unwrap();
        assert_eq!(page.entries.len(), 1, "only the committed change is audited");
        assert!(!page.more);
        let got = &page.entries[0];
        assert_eq!(got.id, first.id);
        assert_eq!(got.actor, "admin-ä");
        assert_eq!(got.actor_role, "admin");
        assert_eq!(got.request_id, "req-1");
        assert_eq!(got.action, "referrer.tier.set");
        assert_eq!((got.subject_kind.as_str(), got.subject_id.as_str()), ("referrer", "r1"));
        assert_eq!(got.note, "asked nicely");
        assert_eq!(got.occurred_at, Some(ids::to_ts(first.occurred_at)));
        assert_eq!(serde_json::to_value(&got.before).unwrap(), json!({"tier": "REGULAR"}));
        assert_eq!(serde_json::to_value(&got.after).unwrap(), json!({"tier": "PREMIUM"}));

        // No update or delete path, even in raw SQL.
        assert!(sqlx::query("UPDATE audit_log SET note = 'rewritten'").execute(&pool).await.is_err());
        assert!(sqlx::query("DELETE FROM audit_log").execute(&pool).await.is_err());
        let page = pool.list_audit(&query()).await.unwrap();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].note, "asked nicely");

        // Paging: 7 more, newest first, pages of 3, no gaps or repeats even as rows are added.
        let mut written = vec![first.id.clone()];
        for i in 0..7 {
            let mut e = AuditEntry::new(&Actor::system(), action::PAYOUT_CREATE, "payout", &format!("p{i}"));
            // Two rows share an instant: the id breaks the tie.
            e.occurred_at = first.occurred_at + Duration::seconds(1 + i / 2);
            let mut tx = pool.begin().await.unwrap();
            audit::record(&mut *tx, &e).await.unwrap();
            tx.commit().await.unwrap();
            written.push(e.id);
        }
        let mut seen = Vec::new();
        let mut q = query();
        q.page_size = 3;
        loop {
            let page = pool.list_audit(&q).await.unwrap();
            seen.extend(page.entries.iter().map(|e| e.id.clone()));
            if seen.len() == 3 {
                // A newer row arriving mid-read sorts before the cursor: not on later pages.
                let mut late = AuditEntry::new(&Actor::system(), action::PAYOUT_CREATE, "payout", "late");
                late.occurred_at = first.occurred_at + Duration::seconds(60);
                let mut tx = pool.begin().await.unwrap();
                audit::record(&mut *tx, &late).await.unwrap();
                tx.commit().await.unwrap();
            }
            if !page.more {
                break;
            }
            let last = page.entries.last().unwrap();
            q.after = Some(Cursor {
                at: ids::from_ts(last.occurred_at.as_ref().unwrap()).unwrap(),
                id: last.id.clone(),
            });
        }
        let mut want: Vec<_> = written.clone();
        want.reverse();
        assert_eq!(seen, want, "newest first by (time, id), each once");

        // Filters.
        let mut q = query();
        q.actor = Some("admin-ä".into());
        assert_eq!(pool.list_audit(&q).await.unwrap().entries.len(), 1);
        let mut q = query();
        q.action = Some(action::PAYOUT_CREATE.into());
        assert_eq!(pool.list_audit(&q).await.unwrap().entries.len(), 8);
        let mut q = query();
        q.subject = Some("p3".into());
        let only = pool.list_audit(&q).await.unwrap().entries;
        assert_eq!(only.len(), 1);
        assert_eq!(serde_json::to_value(&only[0].before).unwrap(), serde_json::Value::Null);
        let mut q = query();
        q.since = Some(first.occurred_at + Duration::seconds(2));
        q.until = Some(first.occurred_at + Duration::seconds(4));
        // p2, p3 (2 s) and p4, p5 (3 s); until is exclusive.
        assert_eq!(pool.list_audit(&q).await.unwrap().entries.len(), 4);
    }};
}

#[tokio::test]
async fn audit_rows_commit_with_their_change_on_sqlite() {
    cases!(sqlite().await);
}

#[tokio::test]
async fn audit_rows_commit_with_their_change_on_postgres() {
    let Some(url) = db::test_database_url("audit_rows_commit_with_their_change_on_postgres") else {
        return;
    };
    let schema = db::test_schema("audit");
    cases!(postgres(&url, &schema).await);
    db::drop_test_schema(&url, &schema).await;
}

#[test]
fn requests_are_bounded_and_name_the_field() {
    use referral_proto::Timestamp;
    let bad = |req: ListAuditEntriesRequest, field: &str| {
        let e = AuditQuery::from_request(&req).unwrap_err();
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(field), "{field}: {}", status.message());
    };
    bad(
        ListAuditEntriesRequest {
            actor: "a".repeat(201),
            ..Default::default()
        },
        "actor",
    );
    bad(
        ListAuditEntriesRequest {
            action: "a\u{7}".into(),
            ..Default::default()
        },
        "action",
    );
    bad(
        ListAuditEntriesRequest {
            subject: "s".repeat(201),
            ..Default::default()
        },
        "subject",
    );
    bad(
        ListAuditEntriesRequest {
            page_size: -1,
            ..Default::default()
        },
        "pageSize",
    );
    bad(
        ListAuditEntriesRequest {
            page_token: "nope".into(),
            ..Default::default()
        },
        "pageToken",
    );
    bad(
        ListAuditEntriesRequest {
            since: Some(Timestamp {
                seconds: 1,
                nanos: -5,
            }),
            ..Default::default()
        },
        "since",
    );
    bad(
        ListAuditEntriesRequest {
            since: Some(Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            until: Some(Timestamp {
                seconds: 50,
                nanos: 0,
            }),
            ..Default::default()
        },
        "until",
    );
    let q = AuditQuery::from_request(&ListAuditEntriesRequest {
        page_size: 10_000,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(q.page_size, 500);
    assert_eq!(
        AuditQuery::from_request(&ListAuditEntriesRequest::default())
            .unwrap()
            .page_size,
        50
    );
    // A filter of exactly the cap passes.
    assert!(
        AuditQuery::from_request(&ListAuditEntriesRequest {
            actor: "ä".repeat(200),
            ..Default::default()
        })
        .is_ok()
    );
}
