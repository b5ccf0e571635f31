//! fraud-svc storage: one `Store` trait, a Postgres and a SQLite implementation chosen by the
//! database URL, the SQL written once for both (sql.rs, `sql_store!`).
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
//! No personal data in plaintext (issue #16, migration 0080): facts, identities and ring keys
//! hold `PiiKeys::lookup` hashes (`email_key`, `ip_key`, `device_key`, `ip:<hash>`...), the
//! pair similarity compares is sealed (`peer_sealed`), the disposable-domain rule keeps the
//! listed domain only. The store gets its `PiiKeys` at construction ([`Store::pii`]); the
//! columns of before (`email_norm`, `ip`, `device_id`...) stay empty for new rows and are
//! emptied by `reencrypt`.
//!
//! Every assessment is one transaction (`Store::begin_assessment` .. `Store::commit`, driven
//! by `app::assess_subject`): its facts, ring links, assessment, case and `FraudAssessed`
//! outbox row. Assessments are serialised (SQLite: BEGIN IMMEDIATE, its one-writer lock;
//! Postgres: one transaction-scoped advisory lock) so each one's windows and rings include
//! every earlier one: two simultaneous signups of one referrer cannot both see "10". A
//! transaction dropped without `commit` rolls back.

pub mod convert;
pub mod events;
mod postgres;
pub mod retention;
mod sql;
mod sqlite;

use chrono::{DateTime, Utc};
use referral_common::outbox::Outbox;
use referral_proto::events::v1::Event;
use sqlx::FromRow;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use referral_common::pii::PiiKeys;

use crate::domain::{ClusterSize, Peer, SubjectKind, identity::EmailTraits, ring::UnionPlan};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("encoding: {0}")]
    Encoding(String),
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

/// A referred signup, as the windows of its referrer count it. Keys are
/// `PiiKeys::lookup` hashes; the local part and name are sealed by the store (similarity
/// needs them, nothing else does).
#[derive(Debug, Clone)]
pub struct ReferralFact<'a> {
    pub referee_id: &'a str,
    pub referrer_id: &'a str,
    pub subject_id: &'a str,
    pub email_key: &'a str,
    pub email: &'a EmailTraits,
    pub name_norm: &'a str,
    pub ip_key: &'a str,
    pub device_key: &'a str,
    pub occurred_at: DateTime<Utc>,
}

/// The referee as their signup showed them (keys, and the traits the rules need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownReferee {
    pub email_key: String,
    pub email: EmailTraits,
    pub name: String,
    pub ip_key: String,
    pub device_key: String,
}

/// An invitation, as the recipient and device windows count it (keys only).
#[derive(Debug, Clone)]
pub struct InvitationFact<'a> {
    pub id: &'a str,
    pub referrer_id: &'a str,
    pub recipient_key: &'a str,
    pub device_key: &'a str,
    pub occurred_at: DateTime<Utc>,
}

/// The windows of an invitation: each `(since, until]`, each read capped.
#[derive(Debug, Clone)]
pub struct InvitationWindows<'a> {
    pub referrer_id: &'a str,
    /// The recipient's e-mail key (the referrer's own?), or empty.
    pub email_key: &'a str,
    pub recipient_key: &'a str,
    pub recipient_since: DateTime<Utc>,
    pub recipient_cap: u32,
    pub device_key: &'a str,
    pub device_since: DateTime<Utc>,
    pub device_cap: u32,
    pub until: DateTime<Utc>,
}

/// What [`InvitationWindows`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvitationCounts {
    /// Different referrers who invited the recipient.
    pub recipient_referrers: i64,
    pub device_invitations: i64,
    pub device_referrers: i64,
    /// The recipient's e-mail is among the referrer's own (0 or 1).
    pub own_email: i64,
}

/// The referrer's windows for a signup or conversion: each `(since, until]`, each read capped.
#[derive(Debug, Clone)]
pub struct ReferralWindows<'a> {
    pub referrer_id: &'a str,
    /// Whose cluster is read besides the referrer's.
    pub referee: &'a str,
    pub email_key: &'a str,
    pub ip_key: &'a str,
    pub device_key: &'a str,
    pub velocity_since: DateTime<Utc>,
    pub velocity_cap: u32,
    pub same_ip_since: DateTime<Utc>,
    pub same_ip_cap: u32,
    pub until: DateTime<Utc>,
}

/// What [`ReferralWindows`] counted, and the two clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralCounts {
    pub signups: i64,
    pub same_ip: i64,
    /// The referee's e-mail / device is among the referrer's own (0 or 1 each).
    pub own_email: i64,
    pub own_device: i64,
    pub referee_cluster: Option<ClusterSize>,
    pub referrer_cluster: Option<ClusterSize>,
}

/// A person's place in the rings and the clusters of some keys, before a union.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingState {
    /// The person's cluster and role, if they have one.
    pub member: Option<(ClusterSize, String)>,
    /// Each key that belongs to a cluster, in key order.
    pub keyed: Vec<(String, ClusterSize)>,
}

/// A case opened by an assessment (REVIEW or REJECT).
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    pub id: &'a str,
    pub assessment: &'a AssessmentRow,
    /// Whose cluster the case shows.
    pub cluster_member: &'a str,
    pub created_at: DateTime<Utc>,
}

/// Who a privacy request is about, as fraud-svc finds them: their user id (as referee,
/// referrer or ring member), the lookup hashes of their e-mails and phones, the invitations
/// they received, and the pseudonym rows that stay are kept under.
#[derive(Debug, Clone, Copy)]
pub struct PersonKeys<'a> {
    pub person_id: &'a str,
    pub pseudonym: &'a str,
    pub contact_keys: &'a [String],
    pub invitation_ids: &'a [String],
}

/// Records by kind, as a privacy receipt counts them.
pub type Counts = referral_common::privacy::Counts;

#[derive(Debug)]
pub enum ResolveOutcome {
    Resolved(Box<CaseRow>),
    AlreadyResolved(Box<CaseRow>),
    NotFound,
}

/// Everything fraud-svc keeps. Every method that changes state outside an assessment
/// transaction writes its outbox events in its own transaction and wakes the relay after
/// commit.
pub trait Store: Clone + Send + Sync + 'static {
    /// A write transaction holding the assessment lock until [`Store::commit`] (or its drop,
    /// which rolls it back).
    type Tx: Send;

    fn outbox(&self) -> &Outbox;
    /// The keys personal data is sealed and looked up with (given at construction).
    fn pii(&self) -> &PiiKeys;

    // ---- one assessment transaction (app::assess_subject, app::apply_invite_events) -------

    /// Begins a write transaction holding the assessment lock: Postgres' advisory lock,
    /// SQLite's BEGIN IMMEDIATE.
    fn begin_assessment(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
    /// Commits `tx`; when it `staged` outbox events, wakes the relay.
    fn commit(&self, tx: Self::Tx, staged: bool) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stages an event in the outbox of `tx`.
    fn stage(&self, tx: &mut Self::Tx, event: &Event) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks a consumed event applied; false when it already was.
    fn mark_consumed(
        &self,
        tx: &mut Self::Tx,
        event_id: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Saves `source`'s offset (never moving it back).
    fn save_offset(
        &self,
        tx: &mut Self::Tx,
        source: &str,
        offset: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// [`Store::find_assessment`] inside `tx`.
    fn assessment_by_key(
        &self,
        tx: &mut Self::Tx,
        kind: SubjectKind,
        dedupe_key: &str,
    ) -> impl Future<Output = StoreResult<Option<AssessmentRow>>> + Send;
    /// Records a referred signup (once per referee).
    fn record_referral(
        &self,
        tx: &mut Self::Tx,
        fact: &ReferralFact<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The referee as their signup showed them, if it was recorded.
    fn known_referee(
        &self,
        tx: &mut Self::Tx,
        referee_id: &str,
    ) -> impl Future<Output = StoreResult<Option<KnownReferee>>> + Send;
    /// Records an invitation (once per id).
    fn record_invitation(
        &self,
        tx: &mut Self::Tx,
        fact: &InvitationFact<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// An invitation's windows, in one read.
    fn invitation_counts(
        &self,
        tx: &mut Self::Tx,
        w: &InvitationWindows<'_>,
    ) -> impl Future<Output = StoreResult<InvitationCounts>> + Send;
    /// A referral's windows and the clusters of the referee and the referrer, in one read.
    fn referral_counts(
        &self,
        tx: &mut Self::Tx,
        w: &ReferralWindows<'_>,
    ) -> impl Future<Output = StoreResult<ReferralCounts>> + Send;
    /// The referrer's referees in `(since, until]`, newest first, at most `limit`.
    fn recent_referees(
        &self,
        tx: &mut Self::Tx,
        referrer_id: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<Peer>>> + Send;
    /// Records who a person is: `(kind, key)` pairs (`email`, `device` and their lookup
    /// hashes), each once.
    fn record_identities(
        &self,
        tx: &mut Self::Tx,
        person_id: &str,
        known: &[(&str, &str)],
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The person's cluster and the clusters of `keys`, in one read by primary key.
    fn ring_state(
        &self,
        tx: &mut Self::Tx,
        person_id: &str,
        keys: &[String],
    ) -> impl Future<Output = StoreResult<RingState>> + Send;
    /// Sets a ring member's role.
    fn set_ring_role(
        &self,
        tx: &mut Self::Tx,
        person_id: &str,
        role: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records that the person holds `keys`; the keys they hold for the first time.
    fn hold_links(
        &self,
        tx: &mut Self::Tx,
        person_id: &str,
        keys: &[String],
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Writes a union planned by `domain::ring::plan_union` for `person_id` (as `role`).
    fn apply_union(
        &self,
        tx: &mut Self::Tx,
        plan: &UnionPlan,
        person_id: &str,
        role: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The clusters of up to two people (an empty id has none), in one read.
    fn clusters_of(
        &self,
        tx: &mut Self::Tx,
        a: &str,
        b: &str,
    ) -> impl Future<Output = StoreResult<(Option<ClusterSize>, Option<ClusterSize>)>> + Send;
    /// A cluster's first `member_limit` members and shared links, inside `tx`.
    fn cluster_snapshot(
        &self,
        tx: &mut Self::Tx,
        cluster: &ClusterSize,
        member_limit: i64,
    ) -> impl Future<Output = StoreResult<ClusterView>> + Send;
    /// Stores an assessment.
    fn insert_assessment(
        &self,
        tx: &mut Self::Tx,
        row: &AssessmentRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Opens a case for an assessment.
    fn open_case(
        &self,
        tx: &mut Self::Tx,
        case: &NewCase<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- reads, and case resolution (each its own transaction) --------------------------

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

    // ---- privacy (app::privacy) and re-encryption (crate::reencrypt) ----------------------

    /// Erases the person's facts inside `tx`: facts they are the referee of, or that carry one
    /// of their contact keys, lose every key and sealed value; facts they referred and
    /// invitations they sent stay under the pseudonym (counts of other people stay right);
    /// their identities, ring links and ring membership go (their keys no longer join
    /// rings). Touches only what is still personal, so a second call counts zeros.
    fn erase_facts(
        &self,
        tx: &mut Self::Tx,
        who: &PersonKeys<'_>,
    ) -> impl Future<Output = StoreResult<Counts>> + Send;
    /// Assessments about the person (as referee or referrer, or of an invitation they
    /// received) with ids after `after`, in id order, at most `limit`; inside `tx`.
    fn assessments_about_in(
        &self,
        tx: &mut Self::Tx,
        who: &PersonKeys<'_>,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<AssessmentRow>>> + Send;
    /// [`Store::assessments_about_in`] outside a transaction (exports).
    fn assessments_about(
        &self,
        who: &PersonKeys<'_>,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<AssessmentRow>>> + Send;
    /// Cases about the person (referee, referrer, whose ring, or an invitation they
    /// received), in id order after `after`, at most `limit`; inside `tx`.
    fn cases_about_in(
        &self,
        tx: &mut Self::Tx,
        who: &PersonKeys<'_>,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<CaseRow>>> + Send;
    /// [`Store::cases_about_in`] outside a transaction (exports).
    fn cases_about(
        &self,
        who: &PersonKeys<'_>,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<CaseRow>>> + Send;
    /// The other members of the person's ring, in id order, at most `limit` (whose
    /// assessments' ring snapshots may list the person).
    fn ring_mates(
        &self,
        tx: &mut Self::Tx,
        person_id: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Writes an assessment's people and JSON back (erasure, re-encryption).
    fn rewrite_assessment(
        &self,
        tx: &mut Self::Tx,
        row: &AssessmentRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Writes a case's people and note back (erasure).
    fn rewrite_case(&self, tx: &mut Self::Tx, row: &CaseRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// Converts at most `limit` rows of each kind written before encryption (plaintext
    /// columns, `legacy-` identities, `legacy:` ring keys) inside `tx`; how many it converted.
    fn reencrypt_facts(&self, tx: &mut Self::Tx, limit: i64)
    -> impl Future<Output = StoreResult<u64>> + Send;
    /// Ring keys held before encryption (`legacy:<kind>:<value>`, holder), at most `limit`.
    fn legacy_link_holders(
        &self,
        tx: &mut Self::Tx,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;
    /// Drops a legacy ring key of a holder (once re-linked under its hash), and the link
    /// itself once nobody holds it.
    fn drop_legacy_link(
        &self,
        tx: &mut Self::Tx,
        link_key: &str,
        member_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Assessments with ids after `after`, in id order, at most `limit`, inside `tx`.
    fn assessments_after(
        &self,
        tx: &mut Self::Tx,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<AssessmentRow>>> + Send;

    /// The ring a person belongs to now, with at most `member_limit` members listed.
    fn cluster_of(
        &self,
        member_id: &str,
        member_limit: i64,
    ) -> impl Future<Output = StoreResult<Option<ClusterView>>> + Send;
}

/// The sealed form of what similarity compares (a referee's e-mail local part and name): one
/// sealed JSON pair, or empty when both are.
pub(crate) fn seal_peer(pii: &PiiKeys, local: &str, name: &str) -> StoreResult<String> {
    if local.is_empty() && name.is_empty() {
        return Ok(String::new());
    }
    let plain = serde_json::to_string(&(local, name)).map_err(|e| StoreError::Encoding(e.to_string()))?;
    Ok(pii.seal(&plain))
}

/// [`seal_peer`]'s pair again. A value that does not open (tampered, or sealed under a key no
/// longer configured) is an error, never an empty comparison.
pub(crate) fn open_peer(pii: &PiiKeys, sealed: &str) -> StoreResult<(String, String)> {
    if sealed.is_empty() || sealed == referral_common::pii::TOMBSTONE {
        return Ok((String::new(), String::new()));
    }
    let plain = pii
        .open(sealed)
        .map_err(|e| StoreError::Encoding(format!("referral_facts.peer_sealed: {e}")))?;
    serde_json::from_str(&plain).map_err(|e| StoreError::Encoding(format!("referral_facts.peer_sealed: {e}")))
}

/// How many members an assessment's cluster snapshot lists.
pub const SNAPSHOT_MEMBERS: i64 = 20;
/// How many links a cluster view lists.
pub const VIEW_LINKS: i64 = 50;

#[cfg(test)]
mod conformance;
