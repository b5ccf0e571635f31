//! analytics-svc storage: one trait, a Postgres and a SQLite implementation chosen by the
//! database URL. The SQL is written once (sql.rs) and instantiated for both backends.
//!
//! What is kept (migrations/*/0001_analytics.sql says it table by table): rollups keyed by
//! cohort day and dimensions (`daily`, `referrer_days`, `experiment_days`,
//! `attribution_days`), per-referrer totals (`referrers`), exact distinct-referrer counts
//! as gap histograms (`active_gaps`, fed by `active_days`), and the per-invitation and
//! per-referred-user rows a later event needs to find its cohort. Queries read rollups
//! only: never raw events, never per-invitation rows.
//!
//! Consumed events are applied in one transaction per batch together with the source's new
//! offset and the ids of the events applied (duplicates dropped by id). Applies are
//! serialised (SQLite: BEGIN IMMEDIATE; Postgres: a transaction-scoped advisory lock), so a
//! rebuild running beside the live consumer cannot interleave with it.

mod postgres;
mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::rollup::Change;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for referral_common::ApiError {
    fn from(e: StoreError) -> Self {
        referral_common::ApiError::Internal(e.into())
    }
}

/// One consumed event, already turned into what it changes.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub event_id: String,
    pub offset: i64,
    pub change: Change,
}

/// What a batch of consumed events did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub applied: u32,
    pub duplicates: u32,
}

/// Everything analytics-svc keeps.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies consumed events in one transaction with the new offset of `source`,
    /// dropping events already applied (by id). `currency` is the reporting currency.
    fn apply_events(
        &self,
        source: &str,
        items: Vec<Consumed>,
        currency: &str,
    ) -> impl Future<Output = StoreResult<ApplySummary>> + Send;
    fn last_offset(&self, source: &str) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Empties every rollup, offset and applied-event id (`analytics-svc rebuild`), in one
    /// transaction.
    fn truncate_rollups(&self) -> impl Future<Output = StoreResult<()>> + Send;
}
