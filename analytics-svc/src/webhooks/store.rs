//! Webhook storage: endpoints, the delivery log with leases, and the webhook consumer's
//! offsets. The SQL is written once (`webhook_sql!`) for Postgres and SQLite; each backend
//! supplies how a write transaction begins and how the due-delivery claim skips rows another
//! replica is claiming.

use chrono::{DateTime, Utc};
use referral_common::audit::AuditEntry;
use sqlx::{PgPool, SqlitePool};

use super::retry::RetryPolicy;

pub type StoreResult<T> = Result<T, sqlx::Error>;

/// The webhook consumer's offsets, apart from the rollups' (`consumer_offsets`); events it
/// parks move its offset here.
pub const OFFSETS_TABLE: &str = "webhook_offsets";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    /// JSON array of event type names.
    pub event_types: String,
    pub description: String,
    pub secret: String,
    pub enabled: bool,
    pub consecutive_failures: i32,
    pub disabled_reason: String,
    pub created_at: DateTime<Utc>,
}

impl EndpointRow {
    pub fn event_types(&self) -> Vec<String> {
        serde_json::from_str(&self.event_types).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempts: i32,
    pub state: String,
    pub last_status: i32,
    pub last_error: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One event as the consumer hands it over: what every subscribed endpoint gets.
#[derive(Debug, Clone)]
pub struct Fanout {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: String,
}

/// A delivery leased to one dispatcher, with what it needs to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub payload: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub url: String,
    pub secret: String,
}

/// What became of one attempt, decided by the dispatcher (see `retry`).
#[derive(Debug, Clone)]
pub enum Attempted {
    Delivered {
        status: i32,
    },
    /// Failed; retried at `next` or, when None, given up (FAILED).
    Failed {
        status: i32,
        error: String,
        next: Option<DateTime<Utc>>,
    },
}

pub const PENDING: &str = "PENDING";
pub const DELIVERED: &str = "DELIVERED";
pub const FAILED: &str = "FAILED";

pub trait WebhookStore: Clone + Send + Sync + 'static {
    /// Creates an endpoint and writes `audit` (the endpoint, never its secret, as `after`).
    fn create_endpoint(
        &self,
        new: NewEndpoint,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<EndpointRow>> + Send;
    /// A live (not deleted) endpoint.
    fn get_endpoint(&self, id: &str) -> impl Future<Output = StoreResult<Option<EndpointRow>>> + Send;
    /// Deletes an endpoint (its delivery log stays, unsent deliveries stop); the row as it was.
    /// Writes `audit` (the endpoint as `before`) with the deletion; nothing when not found.
    fn delete_endpoint(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<Option<EndpointRow>>> + Send;
    /// An endpoint's deliveries in creation order, after the `after` delivery id.
    fn list_deliveries(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<DeliveryRow>>> + Send;
    fn last_offset(&self, source: &str) -> impl Future<Output = StoreResult<i64>> + Send;
    /// One delivery per subscribed, enabled endpoint (created no later than the event) for
    /// each event, and the new offset, in one transaction. Returns the deliveries created.
    fn fan_out(
        &self,
        source: &str,
        last_offset: i64,
        events: Vec<Fanout>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Leases up to `limit` due deliveries of enabled endpoints to `owner` until `until`.
    fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Claimed>>> + Send;
    /// Records an attempt (only while `owner` still holds the lease) and the endpoint's run of
    /// failures, which disable it when the policy says so. False if the lease was lost.
    fn record_attempt(
        &self,
        claimed: &Claimed,
        owner: &str,
        outcome: Attempted,
        now: DateTime<Utc>,
        policy: &RetryPolicy,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Does an endpoint subscribed to `types` want an event of type `event_type`?
pub fn subscribed(types: &[String], event_type: &str) -> bool {
    types.iter().any(|t| t == "*" || t == event_type)
}

/// Ids of deliveries due at `$1`, not leased, of enabled endpoints.
macro_rules! due_deliveries {
    () => {
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
         WHERE d.state = 'PENDING' AND d.next_attempt_at <= $1 \
         AND (d.lease_until IS NULL OR d.lease_until < $1) \
         AND e.enabled = TRUE AND e.deleted_at IS NULL"
    };
}

/// An endpoint as its audit rows show it: everything but the signing secret.
pub fn audit_view(row: &EndpointRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "url": row.url,
        "eventTypes": row.event_types(),
        "description": row.description,
        "enabled": row.enabled,
    })
}

macro_rules! webhook_sql {
    ($store:ty, $skip_locked:literal) => {
        impl WebhookStore for $store {
            async fn create_endpoint(&self, new: NewEndpoint, audit: &AuditEntry) -> StoreResult<EndpointRow> {
                let types = serde_json::to_string(&new.event_types).unwrap_or_else(|_| "[]".into());
                let mut tx = self.begin_write().await?;
                let row: EndpointRow = sqlx::query_as(
                    "INSERT INTO webhook_endpoints (id, url, event_types, description, secret, enabled, \
                     consecutive_failures, disabled_reason, created_at) VALUES ($1, $2, $3, $4, $5, TRUE, 0, '', $6) \
                     RETURNING id, url, event_types, description, secret, enabled, consecutive_failures, \
                     disabled_reason, created_at",
                )
                .bind(&new.id)
                .bind(&new.url)
                .bind(types)
                .bind(&new.description)
                .bind(&new.secret)
                .bind(new.created_at)
                .fetch_one(&mut *tx)
                .await?;
                referral_common::audit::record(&mut *tx, &audit.clone().after(audit_view(&row))).await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn get_endpoint(&self, id: &str) -> StoreResult<Option<EndpointRow>> {
                sqlx::query_as(
                    "SELECT id, url, event_types, description, secret, enabled, consecutive_failures, \
                     disabled_reason, created_at FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
            }

            async fn delete_endpoint(&self, id: &str, at: DateTime<Utc>, audit: &AuditEntry) -> StoreResult<Option<EndpointRow>> {
                let mut tx = self.begin_write().await?;
                let row: Option<EndpointRow> = sqlx::query_as(
                    "UPDATE webhook_endpoints SET deleted_at = $2, enabled = FALSE \
                     WHERE id = $1 AND deleted_at IS NULL \
                     RETURNING id, url, event_types, description, secret, enabled, consecutive_failures, \
                     disabled_reason, created_at",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = &row {
                    referral_common::audit::record(&mut *tx, &audit.clone().before(audit_view(row))).await?;
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn list_deliveries(&self, endpoint_id: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
                sqlx::query_as(
                    "SELECT id, endpoint_id, event_id, event_type, attempts, state, last_status, last_error, \
                     next_attempt_at, delivered_at, created_at FROM webhook_deliveries \
                     WHERE endpoint_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(endpoint_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
            }

            async fn last_offset(&self, source: &str) -> StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT last_offset FROM webhook_offsets WHERE source = $1")
                    .bind(source)
                    .fetch_optional(&self.pool)
                    .await?
                    .unwrap_or(0))
            }

            async fn fan_out(&self, source: &str, last_offset: i64, events: Vec<Fanout>) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let endpoints: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT id, event_types, created_at FROM webhook_endpoints WHERE enabled = TRUE AND deleted_at IS NULL",
                )
                .fetch_all(&mut *tx)
                .await?;
                let endpoints: Vec<(String, Vec<String>, DateTime<Utc>)> = endpoints
                    .into_iter()
                    .map(|(id, types, created)| (id, serde_json::from_str(&types).unwrap_or_default(), created))
                    .collect();
                let mut created = 0;
                for event in &events {
                    for (endpoint_id, types, endpoint_created) in &endpoints {
                        // An endpoint hears what happens from its creation on, not the past.
                        if event.occurred_at < *endpoint_created || !subscribed(types, &event.event_type) {
                            continue;
                        }
                        let now = referral_common::ids::now();
                        created += sqlx::query(
                            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload, attempts, \
                             state, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 0, 'PENDING', $6, $6) \
                             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                        )
                        .bind(referral_common::ids::new_id())
                        .bind(endpoint_id)
                        .bind(&event.event_id)
                        .bind(&event.event_type)
                        .bind(&event.payload)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                }
                sqlx::query(
                    "INSERT INTO webhook_offsets (source, last_offset) VALUES ($1, $2) \
                     ON CONFLICT (source) DO UPDATE SET last_offset = excluded.last_offset \
                     WHERE webhook_offsets.last_offset < excluded.last_offset",
                )
                .bind(source)
                .bind(last_offset)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn claim_due(
                &self,
                owner: &str,
                now: DateTime<Utc>,
                until: DateTime<Utc>,
                limit: u32,
            ) -> StoreResult<Vec<Claimed>> {
                // A plain read first: an idle dispatcher polls often and must not take the
                // write lock (SQLite has one) just to find nothing due.
                let due: Option<String> = sqlx::query_scalar(concat!(due_deliveries!(), " LIMIT 1"))
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                let ids: Vec<String> = sqlx::query_scalar(concat!(
                    due_deliveries!(),
                    " ORDER BY d.next_attempt_at LIMIT $2",
                    $skip_locked
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                let mut claimed = Vec::with_capacity(ids.len());
                for id in ids {
                    sqlx::query("UPDATE webhook_deliveries SET lease_owner = $2, lease_until = $3 WHERE id = $1")
                        .bind(&id)
                        .bind(owner)
                        .bind(until)
                        .execute(&mut *tx)
                        .await?;
                    let row: Option<Claimed> = sqlx::query_as(
                        "SELECT d.id, d.endpoint_id, d.event_id, d.payload, d.attempts, d.created_at, e.url, e.secret \
                         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
                    )
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    claimed.extend(row);
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn record_attempt(
                &self,
                claimed: &Claimed,
                owner: &str,
                outcome: Attempted,
                now: DateTime<Utc>,
                policy: &RetryPolicy,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let (state, status, error, next, delivered_at) = match &outcome {
                    Attempted::Delivered { status } => (DELIVERED, *status, String::new(), None, Some(now)),
                    Attempted::Failed { status, error, next } => {
                        (if next.is_some() { PENDING } else { FAILED }, *status, error.clone(), *next, None)
                    }
                };
                let updated = sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, last_status = $4, \
                     last_error = $5, next_attempt_at = $6, delivered_at = $7, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND lease_owner = $2 AND state = 'PENDING'",
                )
                .bind(&claimed.id)
                .bind(owner)
                .bind(state)
                .bind(status)
                .bind(&error)
                .bind(next)
                .bind(delivered_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                if matches!(outcome, Attempted::Delivered { .. }) {
                    sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1")
                        .bind(&claimed.endpoint_id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    // Counted while enabled: attempts already under way when it was
                    // disabled do not run the count past the threshold.
                    let failures: Option<i32> = sqlx::query_scalar(
                        "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 \
                         WHERE id = $1 AND enabled = TRUE RETURNING consecutive_failures",
                    )
                    .bind(&claimed.endpoint_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(failures) = failures
                        && policy.disables(u32::try_from(failures).unwrap_or(0))
                    {
                        sqlx::query(
                            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2 \
                             WHERE id = $1 AND enabled = TRUE",
                        )
                        .bind(&claimed.endpoint_id)
                        .bind(format!("disabled after {failures} consecutive failed deliveries; last: {error}"))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

/// Webhooks on analytics-svc's Postgres schema.
#[derive(Clone)]
pub struct PgWebhooks {
    pool: PgPool,
}

impl PgWebhooks {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await
    }
}

/// Webhooks on analytics-svc's SQLite file.
#[derive(Clone)]
pub struct SqliteWebhooks {
    pool: SqlitePool,
}

impl SqliteWebhooks {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// SQLite's one-writer lock up front, so two writers never deadlock upgrading.
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

// Postgres: replicas claiming at once skip each other's rows instead of queueing on them.
webhook_sql!(PgWebhooks, " FOR UPDATE OF d SKIP LOCKED");
// SQLite: BEGIN IMMEDIATE already serialises claims.
webhook_sql!(SqliteWebhooks, "");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_by_name_or_star() {
        let types = vec!["invitation.created".to_string()];
        assert!(subscribed(&types, "invitation.created"));
        assert!(!subscribed(&types, "invitation.sent"));
        assert!(subscribed(&["*".to_string()], "payout.paid"));
        assert!(!subscribed(&[], "payout.paid"));
    }
}
