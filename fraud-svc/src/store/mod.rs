//! fraud-svc storage: one trait, a Postgres and a SQLite implementation chosen by the
//! database URL. The SQL is written once for both backends (assess.rs, sql.rs).
//!
//! What is kept:
//! - `assessments` (every decision, with its signals and rules as JSON) and `cases` (every
//!   REVIEW or REJECT, and its resolution);
//! - sliding-window facts in indexed rows: `referral_facts` (one row per referred signup,
//!   keyed by referrer and by referrer + IP), `invitation_facts` (keyed by recipient key and
//!   by device), `identities` (the e-mails and devices a person used, for self-referral).
//!   An assessment reads only the recent window of its own keys through these indexes,
//!   each read bounded by a LIMIT: never a scan of history;
//! - fraud rings as a persisted union-find: `cluster_members` (person -> cluster),
//!   `cluster_links` (shared key -> cluster), `clusters` (size), merged smaller-into-larger
//!   when a new link joins two clusters;
//! - the outbox, `consumer_offsets` and `processed_events`.
//!
//! Every assessment is one transaction: its facts, ring links, assessment, case and
//! `FraudAssessed` outbox row. Assessments are serialised (SQLite: one writer thread, BEGIN
//! IMMEDIATE; Postgres: one transaction-scoped advisory lock) so each one's windows and rings
//! include every earlier one: two simultaneous signups of one referrer cannot both see "10".
//! The assessment path is written once (assess.rs) for both; the reads and case resolution
//! are sqlx (sql.rs).

mod assess;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_writer;

use chrono::{DateTime, Utc};
use referral_common::outbox::Outbox;
use sqlx::FromRow;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use sqlite_writer::STATEMENT_TARGET as SQLITE_STATEMENT_TARGET;

use crate::domain::{Scoring, SubjectKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("encoding: {0}")]
    Encoding(String),
    #[error("the SQLite writer thread stopped")]
    WriterStopped,
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for referral_common::ApiError {
    fn from(e: StoreError) -> Self {
        referral_common::ApiError::Internal(e.into())
    }
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct AssessmentRow {
    pub id: String,
    pub subject_type: String,
    pub subject_id: String,
    /// What makes a repeat of the same question (`user:<id>` for signups, the invitation or
    /// conversion id); `None` when the caller gave no id.
    pub dedupe_key: Option<String>,
    pub referrer_id: String,
    pub referee_id: String,
    pub score: f64,
    pub level: String,
    pub action: String,
    pub signals_json: String,
    pub rules_json: String,
    /// The cluster as it was when assessed (`referral.fraud.v1.Cluster` JSON), or empty.
    pub cluster_json: String,
    pub case_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub assessed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct CaseRow {
    pub id: String,
    /// OPEN or RESOLVED.
    pub state: String,
    pub subject_type: String,
    pub subject_id: String,
    pub referrer_id: String,
    pub referee_id: String,
    pub assessment_id: String,
    /// Whose cluster the case shows (the referee, or an invitation's referrer).
    pub cluster_member: String,
    /// APPROVE or REJECT once resolved.
    pub decision: String,
    pub note: String,
    pub resolved_by: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A fraud ring as shown: its id, true size, and the first members and links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub id: String,
    pub size: i64,
    /// (member id, REFERRER | REFEREE), at most the limit asked for.
    pub members: Vec<(String, String)>,
    pub links: Vec<String>,
}

/// Ring roles.
pub const REFERRER: &str = "REFERRER";
pub const REFEREE: &str = "REFEREE";

/// One question to assess, already validated and normalised.
#[derive(Debug, Clone)]
pub struct AssessInput {
    pub assessment_id: String,
    pub kind: SubjectKind,
    pub subject_id: String,
    /// A second question with the same key answers with the first assessment.
    pub dedupe_key: String,
    pub referrer_id: String,
    /// The referee's user id (signups, conversions).
    pub referee_id: String,
    /// Normalised e-mail (the referee's; an invitation's recipient's) and name.
    pub email: String,
    pub name: String,
    pub ip: String,
    pub device_id: String,
    /// Invitations: the recipient's pseudonymous key.
    pub recipient_key: String,
    pub occurred_at: DateTime<Utc>,
    pub click_at: Option<DateTime<Utc>>,
}

/// The answer of [`Store::assess`]: the stored assessment, and whether this call made it.
#[derive(Debug, Clone)]
pub struct Assessed {
    pub row: AssessmentRow,
    pub fresh: bool,
}

/// What an event tells about a person without asking for a decision (ring links, devices).
#[derive(Debug, Clone)]
pub struct Observation {
    pub person_id: String,
    pub role: &'static str,
    pub email: String,
    pub ip: String,
    pub device_id: String,
    pub at: DateTime<Utc>,
}

/// What one consumed event asks of the store.
#[derive(Debug, Clone)]
pub enum Work {
    Assess(Box<AssessInput>),
    Observe(Observation),
    /// Observe, then assess (a signup left pending while fraud-svc was away).
    ObserveAndAssess(Observation, Box<AssessInput>),
    Nothing,
}

#[derive(Debug, Clone)]
pub struct Consumed {
    pub event_id: String,
    pub offset: i64,
    pub work: Work,
}

/// What a batch of consumed events did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub applied: u32,
    pub duplicates: u32,
    pub assessed: u32,
}

#[derive(Debug)]
pub enum ResolveOutcome {
    Resolved(Box<CaseRow>),
    AlreadyResolved(Box<CaseRow>),
    NotFound,
}

/// Everything fraud-svc keeps. Every method that changes state writes its outbox events in
/// the same transaction and wakes the relay after commit.
pub trait Store: Clone + Send + Sync + 'static {
    fn outbox(&self) -> &Outbox;

    /// Records the question's facts and ring links, gathers its windows, decides with
    /// `scoring`, and stores the assessment, its case (REVIEW / REJECT) and a
    /// `FraudAssessed` event. A repeated question (same dedupe key) returns the first answer.
    fn assess(
        &self,
        input: AssessInput,
        scoring: &Scoring,
    ) -> impl Future<Output = StoreResult<Assessed>> + Send;

    /// Applies consumed events in one transaction with the new offset of `source`,
    /// dropping events already applied (by id).
    fn apply_events(
        &self,
        source: &str,
        items: Vec<Consumed>,
        scoring: &Scoring,
    ) -> impl Future<Output = StoreResult<ApplySummary>> + Send;
    fn last_offset(&self, source: &str) -> impl Future<Output = StoreResult<i64>> + Send;

    fn get_assessment(&self, id: &str) -> impl Future<Output = StoreResult<Option<AssessmentRow>>> + Send;
    /// The assessment of a subject, by its dedupe key.
    fn find_assessment(
        &self,
        kind: SubjectKind,
        dedupe_key: &str,
    ) -> impl Future<Output = StoreResult<Option<AssessmentRow>>> + Send;

    fn get_case(&self, id: &str) -> impl Future<Output = StoreResult<Option<CaseRow>>> + Send;
    /// Cases in id (time) order after `after`, optionally of one state and one referrer.
    fn list_cases(
        &self,
        state: Option<&str>,
        referrer_id: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<CaseRow>>> + Send;
    /// Resolves an open case with a `FraudResolved` event and its audit row (`audit`, by the
    /// resolver, completed with the case before and after); a resolved case stays as it was.
    fn resolve_case(
        &self,
        id: &str,
        decision: &str,
        note: &str,
        audit: &referral_common::audit::AuditEntry,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<ResolveOutcome>> + Send;

    /// The ring a person belongs to now, with at most `member_limit` members listed.
    fn cluster_of(
        &self,
        member_id: &str,
        member_limit: i64,
    ) -> impl Future<Output = StoreResult<Option<ClusterView>>> + Send;
}

/// How many members an assessment's cluster snapshot lists.
pub const SNAPSHOT_MEMBERS: i64 = 20;
/// How many links a cluster view lists.
pub const VIEW_LINKS: i64 = 50;

#[cfg(test)]
mod conformance;
