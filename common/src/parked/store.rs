//! `parked_events` in the consuming service's own database. Parking writes the row, the
//! consumer's new offset (past the event) and a system audit row in ONE transaction, so an
//! event is never both skipped and lost; a retry's outcome (row removed, or the new reason
//! and attempts) is written with its audit row in one transaction too.

use chrono::{DateTime, Utc};
use prost::Message;
use referral_proto::events::v1::Event;
use serde_json::json;
use sqlx::{PgPool, SqlitePool};

use crate::{
    audit::{self, AuditEntry, action},
    events, ids,
};

/// The database a service's parked events live in (the one its consumers write to).
#[derive(Clone)]
pub enum ParkedDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl From<PgPool> for ParkedDb {
    fn from(pool: PgPool) -> Self {
        ParkedDb::Postgres(pool)
    }
}

impl From<SqlitePool> for ParkedDb {
    fn from(pool: SqlitePool) -> Self {
        ParkedDb::Sqlite(pool)
    }
}

/// An event given up on, as the consumer parks it.
pub struct NewParked<'a> {
    pub consumer: &'a str,
    pub source: &'a str,
    /// The consumer's offsets table (`consumer_offsets`, or the webhooks' own).
    pub offsets_table: &'static str,
    pub event: &'a Event,
    pub reason: &'a str,
    pub attempts: i64,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
}

/// One stored parked event.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedRow {
    /// UUIDv7, given when parked.
    pub id: String,
    pub consumer: String,
    pub source: String,
    pub offset: i64,
    pub event_id: String,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub attempts: i64,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
}

impl ParkedRow {
    /// The event as it was consumed; `None` if the stored bytes are not one.
    pub fn event(&self) -> Option<Event> {
        Event::decode(self.payload.as_slice()).ok()
    }
}

/// The longest reason kept: a panic message can be anything.
pub const MAX_REASON: usize = 1_000;

fn clip(reason: &str) -> String {
    reason.chars().take(MAX_REASON).collect()
}

const COLUMNS: &str = "SELECT id, consumer, source, event_offset, event_id, event_type, payload, reason, attempts, \
     first_failed_at, last_failed_at FROM parked_events";
const INSERT: &str = "INSERT INTO parked_events (id, consumer, source, event_offset, event_id, event_type, payload, \
     reason, attempts, first_failed_at, last_failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (consumer, source, event_id) DO UPDATE SET reason = excluded.reason, \
     attempts = parked_events.attempts + excluded.attempts, last_failed_at = excluded.last_failed_at";
const DELETE: &str = "DELETE FROM parked_events WHERE id = $1";
const REFAIL: &str =
    "UPDATE parked_events SET reason = $2, attempts = attempts + 1, last_failed_at = $3 WHERE id = $1";

/// The consumer's offset moves past the parked event (never backwards).
fn save_offset_sql(table: &'static str) -> String {
    debug_assert!(table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    format!(
        "INSERT INTO {table} (source, last_offset) VALUES ($1, $2) ON CONFLICT (source) DO UPDATE \
         SET last_offset = excluded.last_offset WHERE {table}.last_offset < excluded.last_offset"
    )
}

fn park_entry(id: &str, p: &NewParked<'_>) -> AuditEntry {
    AuditEntry::new(&audit::Actor::system(), action::EVENT_PARK, "parked_event", id).after(json!({
        "consumer": p.consumer,
        "source": p.source,
        "eventId": p.event.id,
        "eventType": events::event_type(p.event),
        "offset": p.event.offset,
        "reason": clip(p.reason),
        "attempts": p.attempts,
    }))
}

// The Postgres and SQLite bodies below are the same SQL; they differ in how instants are
// bound (TIMESTAMPTZ, integer microseconds) and how a writer begins (SQLite: BEGIN IMMEDIATE,
// its one-writer lock).

/// A stored row as read, its two instants in the backend's own type.
type Row<T> = (
    String,
    String,
    String,
    i64,
    String,
    String,
    Vec<u8>,
    String,
    i64,
    T,
    T,
);
type PgRow = Row<DateTime<Utc>>;
type SqliteRow = Row<i64>;

fn row<T>(r: Row<T>, at: impl Fn(T) -> sqlx::Result<DateTime<Utc>>) -> sqlx::Result<ParkedRow> {
    Ok(ParkedRow {
        id: r.0,
        consumer: r.1,
        source: r.2,
        offset: r.3,
        event_id: r.4,
        event_type: r.5,
        payload: r.6,
        reason: r.7,
        attempts: r.8,
        first_failed_at: at(r.9)?,
        last_failed_at: at(r.10)?,
    })
}

/// A SQLite instant (microseconds since the epoch); one out of chrono's range is a corrupt
/// row, refused rather than shown as 1970.
fn from_micros(us: i64) -> sqlx::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| sqlx::Error::Decode(format!("parked event instant {us} is out of range").into()))
}

impl ParkedDb {
    /// Parks an event: the row (or, for an event parked before, its new reason and the
    /// attempts added), the consumer's offset past it and an audit row, in one transaction.
    pub async fn park(&self, p: &NewParked<'_>) -> sqlx::Result<String> {
        let id = ids::new_id();
        let entry = park_entry(&id, p);
        let save = save_offset_sql(p.offsets_table);
        macro_rules! body {
            ($tx:ident, $time:expr) => {{
                sqlx::query(INSERT)
                    .bind(&id)
                    .bind(p.consumer)
                    .bind(p.source)
                    .bind(p.event.offset)
                    .bind(&p.event.id)
                    .bind(events::event_type(p.event))
                    .bind(p.event.encode_to_vec())
                    .bind(clip(p.reason))
                    .bind(p.attempts)
                    .bind($time(p.first_failed_at))
                    .bind($time(p.last_failed_at))
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(save))
                    .bind(p.source)
                    .bind(p.event.offset)
                    .execute(&mut *$tx)
                    .await?;
                audit::record(&mut *$tx, &entry).await?;
                $tx.commit().await?;
            }};
        }
        match self {
            ParkedDb::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                body!(tx, |t: DateTime<Utc>| t);
            }
            ParkedDb::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                body!(tx, |t: DateTime<Utc>| t.timestamp_micros());
            }
        }
        Ok(id)
    }

    /// Parked events with an id below `before`, highest (newest) first, at most `limit`.
    pub async fn list(&self, before: &str, limit: i64) -> sqlx::Result<Vec<ParkedRow>> {
        let sql = format!("{COLUMNS} WHERE id < $1 ORDER BY id DESC LIMIT $2");
        Ok(match self {
            ParkedDb::Postgres(pool) => {
                let rows: Vec<PgRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(before)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter()
                    .map(|r| row(r, Ok))
                    .collect::<sqlx::Result<_>>()?
            }
            ParkedDb::Sqlite(pool) => {
                let rows: Vec<SqliteRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(before)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter()
                    .map(|r| row(r, from_micros))
                    .collect::<sqlx::Result<_>>()?
            }
        })
    }

    pub async fn get(&self, id: &str) -> sqlx::Result<Option<ParkedRow>> {
        let sql = format!("{COLUMNS} WHERE id = $1");
        Ok(match self {
            ParkedDb::Postgres(pool) => {
                let r: Option<PgRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                r.map(|r| row(r, Ok)).transpose()?
            }
            ParkedDb::Sqlite(pool) => {
                let r: Option<SqliteRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                r.map(|r| row(r, from_micros)).transpose()?
            }
        })
    }

    /// A retry's outcome on the row — `None`: applied, the row goes; `Some((reason, at))`:
    /// failed again, the new reason and one more attempt — written with `entry` in one
    /// transaction. False when the row is gone (a concurrent retry).
    pub async fn settle(
        &self,
        id: &str,
        failed: Option<(&str, DateTime<Utc>)>,
        entry: &AuditEntry,
    ) -> sqlx::Result<bool> {
        let failed = failed.map(|(reason, at)| (clip(reason), at));
        macro_rules! body {
            ($tx:ident, $time:expr) => {{
                let change = match &failed {
                    None => sqlx::query(DELETE).bind(id),
                    Some((reason, at)) => sqlx::query(REFAIL).bind(id).bind(reason).bind($time(*at)),
                };
                let found = change.execute(&mut *$tx).await?.rows_affected() == 1;
                if found {
                    audit::record(&mut *$tx, entry).await?;
                }
                $tx.commit().await?;
                found
            }};
        }
        Ok(match self {
            ParkedDb::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                body!(tx, |t: DateTime<Utc>| t)
            }
            ParkedDb::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                body!(tx, |t: DateTime<Utc>| t.timestamp_micros())
            }
        })
    }
}
