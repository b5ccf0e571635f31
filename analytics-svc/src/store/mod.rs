//! analytics-svc storage: the rollups' `Store` trait and the outbound webhooks'
//! `webhooks::WebhookStore`, both implemented by one Postgres and one SQLite store chosen by
//! the database URL. The SQL is written once (sql.rs, `sql_store!`) and instantiated for
//! both backends.
//!
//! What is kept (migrations/*/0001_analytics.sql says it table by table): rollups keyed by
//! cohort day and dimensions (`daily`, `referrer_days`, `experiment_cohorts`,
//! `attribution_days`), per-referrer totals (`referrers`), exact distinct-referrer counts
//! per window start (`active_since`, windows up to 92 days) and as gap histograms
//! (`active_gaps`, longer windows), both fed by `active_days`, and the per-invitation,
//! per-referred-user and per-conversion rows a later event needs to find its cohort. Queries read rollups
//! only: never raw events, never per-invitation rows.
//!
//! Consumed events are applied in one transaction per batch together with the source's new
//! offset and the ids of the events applied (duplicates dropped by id). Applies are
//! serialised (SQLite: BEGIN IMMEDIATE; Postgres: a transaction-scoped advisory lock), so a
//! rebuild running beside the live consumer cannot interleave with it.

mod postgres;
pub mod privacy;
mod sql;
mod sqlite;
pub mod webhooks;

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

/// A window of cohort days and the dimension filters (None: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub from_day: i64,
    pub to_day: i64,
    pub flow: Option<String>,
    pub referrer_kind: Option<String>,
    pub vendor_type: Option<String>,
}

/// Rollup sums of one cohort day and flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct DaySums {
    pub day: i64,
    pub flow: String,
    pub invitations: i64,
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub signed_up: i64,
    pub converted: i64,
    pub activated: i64,
    pub signups: i64,
    pub conversions: i64,
    pub revenue_minor: i64,
    pub cycle_seconds: i64,
    pub cycle_signups: i64,
}

impl DaySums {
    /// SENT .. ACTIVATED (RETAINED is ACTIVATED less churn, which `daily` does not hold).
    pub fn stages(&self) -> [i64; 7] {
        [
            self.sent,
            self.delivered,
            self.opened,
            self.clicked,
            self.signed_up,
            self.converted,
            self.activated,
        ]
    }

    /// Adds another row's sums (the day and flow stay).
    pub fn add(&mut self, o: &DaySums) {
        self.invitations += o.invitations;
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.opened += o.opened;
        self.clicked += o.clicked;
        self.signed_up += o.signed_up;
        self.converted += o.converted;
        self.activated += o.activated;
        self.signups += o.signups;
        self.conversions += o.conversions;
        self.revenue_minor += o.revenue_minor;
        self.cycle_seconds += o.cycle_seconds;
        self.cycle_signups += o.cycle_signups;
    }
}

/// A referrer's sums over a period, with its tier and badges.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ReferrerSums {
    pub referrer_id: String,
    pub referrer_kind: String,
    pub tier: String,
    pub badges: String,
    pub invitations: i64,
    pub signups: i64,
    pub conversions: i64,
    pub revenue_minor: i64,
    pub stage_sum: i64,
    pub last_day: i64,
    pub second_order_reach: i64,
}

/// Which ranking a leaderboard asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    Referrals,
    Revenue,
    ConversionRate,
}

/// One credited row of an attribution model: a referrer or a channel, in one currency.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Credit {
    pub key: String,
    pub currency: String,
    pub revenue_minor: i64,
    pub conversions: f64,
}

/// A referrer's conversion revenue in one currency over a period, summed per rate period:
/// `rate` is the rate effective on those days (None: no rate), exact as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueRow {
    pub referrer_id: String,
    pub referrer_kind: String,
    pub tier: String,
    pub badges: String,
    pub currency: String,
    /// The rate's effective day and text.
    pub rate: Option<(i64, String)>,
    /// Exact sum (i128: any number of amounts).
    pub amount_minor: i128,
}

/// One admin-managed exchange rate.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FxRateRow {
    pub currency: String,
    pub effective_day: i64,
    pub rate: String,
    pub updated_at: i64,
}

/// A referred user's activity, as the marketplace reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Activated,
    Churned,
}

/// Cohorts by first active day: their sizes, and their outcomes per cohort day of the
/// invitations behind them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CohortRows {
    /// (first day, referrers)
    pub sizes: Vec<(i64, i64)>,
    /// (first day, day, signups, conversions)
    pub outcomes: Vec<(i64, i64, i64, i64)>,
}

/// Everything analytics-svc keeps.
pub trait Store: privacy::PersonStore + Clone + Send + Sync + 'static {
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

    /// `daily` summed per cohort day and flow inside the window.
    fn day_sums(&self, w: &Window) -> impl Future<Output = StoreResult<Vec<DaySums>>> + Send;
    /// `referrer_days` of one referrer summed per day and flow inside the window.
    fn referrer_day_sums(
        &self,
        referrer_id: &str,
        w: &Window,
    ) -> impl Future<Output = StoreResult<Vec<DaySums>>> + Send;
    /// A scope's gap histogram rows `(day, gap, referrers)` inside `[from_day, to_day]`.
    fn gap_rows(
        &self,
        scope: &str,
        from_day: i64,
        to_day: i64,
    ) -> impl Future<Output = StoreResult<Vec<(i64, i64, i64)>>> + Send;
    /// Distinct referrers with an invitation in `[from_day, to_day]`, per scope asked for
    /// (summed in the database from `active_since`, or the gap histograms for windows
    /// longer than `scope::SINCE_DAYS`: one row per scope comes back).
    fn distinct_referrers(
        &self,
        scopes: &[String],
        from_day: i64,
        to_day: i64,
    ) -> impl Future<Output = StoreResult<Vec<(String, i64)>>> + Send;
    /// Referrers whose first active day in `scope` is inside the window, and their outcomes.
    fn cohort_rows(&self, scope: &str, w: &Window) -> impl Future<Output = StoreResult<CohortRows>> + Send;
    /// The top `limit` referrers by `ranking` over `[from_day, to_day]` (None: all time);
    /// a conversion rate needs at least `min_invitations`.
    fn leaderboard(
        &self,
        kind: Option<&str>,
        vendor: Option<&str>,
        days: Option<(i64, i64)>,
        ranking: Ranking,
        min_invitations: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<ReferrerSums>>> + Send;
    /// Conversion revenue per referrer, currency and rate period, by conversion day inside
    /// `days` (None: all time), of referrers of `kind` and `vendor` (None: any).
    fn revenue(
        &self,
        kind: Option<&str>,
        vendor: Option<&str>,
        days: Option<(i64, i64)>,
    ) -> impl Future<Output = StoreResult<Vec<RevenueRow>>> + Send;
    /// ACTIVATED invitations of the window (and of `referrer_id` when given) whose referee
    /// churned on or before the window's last day.
    fn churned(&self, referrer_id: Option<&str>, w: &Window)
    -> impl Future<Output = StoreResult<i64>> + Send;
    /// Records a user's activity (their first of each kind counts) and moves the invitation
    /// they came through to ACTIVATED or counts its churn; false when it changed nothing.
    fn record_activity(
        &self,
        user_id: &str,
        kind: ActivityKind,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Creates or replaces the rate of `currency` from `effective_day`, with its audit row.
    fn put_fx_rate(
        &self,
        rate: &FxRateRow,
        audit: &referral_common::audit::AuditEntry,
    ) -> impl Future<Output = StoreResult<FxRateRow>> + Send;
    /// Rates by currency then effective day, after `after` (currency, day), at most `limit`.
    fn list_fx_rates(
        &self,
        currency: Option<&str>,
        after: Option<(String, i64)>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<FxRateRow>>> + Send;
    /// Referrers, all time, with at least `min_connections` invitations.
    fn connectors(&self, min_connections: i64)
    -> impl Future<Output = StoreResult<Vec<ReferrerSums>>> + Send;
    /// Credits of `model` inside the window, grouped by `referrer_id` or by `channel`.
    fn credits(
        &self,
        model: &str,
        by: CreditKey,
        w: &Window,
    ) -> impl Future<Output = StoreResult<Vec<Credit>>> + Send;
    /// (variant, sent, signups) of a template's invitations inside the window and its filters.
    fn experiment(
        &self,
        template_id: &str,
        w: &Window,
    ) -> impl Future<Output = StoreResult<Vec<(String, i64, i64)>>> + Send;
}

#[cfg(test)]
mod conformance;

/// How attribution credits are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditKey {
    Referrer,
    Channel,
}
