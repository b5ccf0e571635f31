//! Webhook storage: endpoints, the delivery log with leases, and the webhook consumer's
//! offsets. A second trait implemented by the same store types as [`super::Store`], its SQL
//! written once in `sql.rs` with the rest (`sql_store!`); each backend supplies how a
//! webhook write transaction begins and how the due-delivery claim skips rows another
//! replica is claiming.

use crate::domain::webhooks::retry::RetryPolicy;
use chrono::{DateTime, Utc};
use referral_common::audit::AuditEntry;

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
    /// The subscribed types. Written only by `create_endpoint` from a `Vec<String>`, so a
    /// column that does not decode is a corrupt row: an error, not "subscribed to nothing".
    pub fn event_types(&self) -> Result<Vec<String>, sqlx::Error> {
        decode_event_types(&self.event_types)
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
    /// Where the webhook consumer of `source` resumes (its own offsets, apart from the
    /// rollups').
    fn webhook_offset(&self, source: &str) -> impl Future<Output = StoreResult<i64>> + Send;
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

/// The `event_types` column (a JSON array of names) decoded.
pub fn decode_event_types(column: &str) -> Result<Vec<String>, sqlx::Error> {
    serde_json::from_str(column).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// An endpoint as its audit rows show it: everything but the signing secret.
pub fn audit_view(row: &EndpointRow) -> Result<serde_json::Value, sqlx::Error> {
    Ok(serde_json::json!({
        "id": row.id,
        "url": row.url,
        "eventTypes": row.event_types()?,
        "description": row.description,
        "enabled": row.enabled,
    }))
}
