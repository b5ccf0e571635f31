//! The producer's record of its durable consumers: on `EventLog/Subscribe` a durable
//! consumer (one that stores its offset and resumes from it: [`crate::consumer::run`])
//! marks its request with the [`DURABLE_CONSUMER`] metadata, and the log server stores its
//! name, the `after_offset` it asked from (everything up to it is applied and committed on
//! its side) and when. Consumers re-subscribe every few minutes
//! ([`crate::consumer::RESUBSCRIBE_AFTER`]), so the position follows them. One-off readers
//! (a rebuild's replay, the live feed, tests, the load generator) do not mark their
//! requests and hold nothing back.

use chrono::{DateTime, Utc};

use super::RetentionDb;

/// Request metadata a durable consumer sends with `Subscribe` (value `1`).
pub const DURABLE_CONSUMER: &str = "x-durable-consumer";

/// Longest consumer name recorded.
pub const MAX_CONSUMER_NAME: usize = 64;

const RECORD: &str = "INSERT INTO event_log_consumers (consumer, acked_offset, seen_at) VALUES ($1, $2, $3)
ON CONFLICT (consumer) DO UPDATE SET acked_offset = excluded.acked_offset, seen_at = excluded.seen_at";

/// A name the producer may store: 1 to 64 of ASCII letters, digits, `-`, `_`, `.`.
pub fn valid_consumer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CONSUMER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Stores `consumer`'s position (it may move back: a consumer that was reset replays).
pub async fn record_consumer(
    db: &RetentionDb,
    consumer: &str,
    acked_offset: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    crate::on_retention_db!(db, pool => {
        sqlx::query(RECORD)
            .bind(consumer)
            .bind(acked_offset)
            .bind(at)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The recorded consumers and positions, by name (tests, diagnostics).
pub async fn consumers(db: &RetentionDb) -> sqlx::Result<Vec<(String, i64)>> {
    const LIST: &str = "SELECT consumer, acked_offset FROM event_log_consumers ORDER BY consumer";
    crate::on_retention_db!(db, pool => sqlx::query_as(LIST).fetch_all(pool).await)
}
