//! incentive-svc storage: one trait, a Postgres and a SQLite implementation chosen by the
//! database URL. The SQL is written once (sql.rs) and instantiated for both backends.
//!
//! The ledger is append-only: `entries` are never updated (a clawback is a new, negative
//! entry) and `entry_states` records every state an entry went through; `entry_current`
//! is the newest of those per entry, written in the same transaction, so the scheduler and
//! balances read an index instead of replaying history. Balances are sums of entries.
//!
//! Exactly once: every reward has a unique `dedupe_key` (one conversion reward per referee,
//! one milestone per referrer and tier), an entry is paid, voided or expired at most once
//! (a partial unique index), and consumed events are applied with their offset and ids in
//! one transaction. Every ledger write is serialised (Postgres: one transaction-scoped
//! advisory lock per schema; SQLite: BEGIN IMMEDIATE), so a campaign's budget read and the
//! bonus booked against it, or a payout's eligible entries and their PAID states, can never
//! interleave with another writer's.

pub mod convert;
pub mod events;
mod postgres;
mod sql;
mod sqlite;

use chrono::{DateTime, Utc};
use referral_common::audit::AuditEntry;
use referral_common::outbox::Outbox;
use referral_proto::{common::v1::FraudAction, events::v1::Event, incentive::v1::RewardProgram};
use sqlx::FromRow;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{
    rewards::{Conversion, PastConversion},
    states::State,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("encoding: {0}")]
    Encoding(String),
    /// A money sum of stored amounts that does not fit an amount: a clear 400, not a 500.
    #[error(transparent)]
    TooLarge(#[from] crate::domain::money::TooLarge),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for referral_common::ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge(e) => referral_common::ApiError::FailedPrecondition {
                message: e.to_string(),
                reason: "AMOUNT_OUT_OF_RANGE",
            },
            e => referral_common::ApiError::Internal(e.into()),
        }
    }
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub multiplier: f64,
    pub referrer_kind: Option<String>,
    pub cap_minor: Option<i64>,
    pub cap_currency: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Campaign bonus booked so far (a sum of entries).
    /// Bonus booked under the campaign, as split sums (domain::money); see [`Self::spent_minor`].
    pub spent_hi: i64,
    pub spent_lo: i64,
}

impl CampaignRow {
    /// Bonus booked so far; saturated, since it is only compared with the cap.
    pub fn spent_minor(&self) -> i64 {
        crate::domain::money::saturate(crate::domain::money::join(self.spent_hi, self.spent_lo))
    }
}

/// A ledger entry with its current state.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct EntryRow {
    pub id: String,
    pub referrer_id: String,
    pub referrer_kind: String,
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub campaign_bonus_minor: i64,
    pub conversion_id: String,
    pub referee_id: String,
    pub program_id: String,
    pub campaign_id: String,
    pub milestone: i32,
    pub badge: String,
    pub eligible_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub state: String,
    pub payout_id: String,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct PayoutRow {
    pub id: String,
    pub referrer_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// A payout with the entries it paid.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutView {
    pub payout: PayoutRow,
    pub entries: Vec<String>,
}

/// What a referrer's rewards look like now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    /// The currency balances are shown in (the referrer's newest entry's).
    pub currency: String,
    /// PENDING and HELD.
    pub pending_minor: i64,
    pub eligible_minor: i64,
    pub paid_minor: i64,
    /// Milestone badges earned.
    pub badges: Vec<String>,
    pub successful_referrals: i32,
    /// The kind of the referrer's newest entry, if any.
    pub referrer_kind: Option<String>,
}

/// A fraud decision as consumed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// CONVERSION or SIGNUP.
    pub subject_type: String,
    pub subject_id: String,
    /// The referee, when the event names it (assessments do; resolutions do not).
    pub referee_id: String,
    pub action: FraudAction,
    /// A case resolution (releases held rewards on APPROVE), not a first assessment.
    pub resolution: bool,
    pub at: DateTime<Utc>,
    /// Who caused it: a resolution's reviewer (the event's `resolvedBy`); `None` for the
    /// fraud check itself. The actor of the audit rows of rewards it reverses.
    pub origin: Option<String>,
}

/// What one consumed event asks of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// An attributed first paid conversion, with its signup's fraud action.
    Conversion(Box<Conversion>, FraudAction),
    Decision(Decision),
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
    /// Entries booked (rewards and clawbacks) and entries whose state changed.
    pub booked: u32,
    pub changed: u32,
}

/// What a scheduler pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Advanced {
    pub eligible: u32,
    pub expired: u32,
}

/// A simulation's input: the window's conversions, and the successful referrals each
/// referrer had before it.
pub type PastWindow = (Vec<PastConversion>, Vec<(String, i64)>);

/// A recorded conversion, as a person's export shows it.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct ConversionRow {
    pub conversion_id: String,
    pub referee_id: String,
    pub referrer_id: String,
    pub referrer_kind: String,
    pub referee_kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
}

/// One state an entry went through.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct EntryStateRow {
    pub entry_id: String,
    pub state: String,
    pub payout_id: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Everything the ledger holds about one person (`app::privacy`'s export): the entries
/// booked to them or for them (as the referee), their states, their payouts and the
/// conversions they took part in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonLedger {
    pub entries: Vec<EntryRow>,
    pub states: Vec<EntryStateRow>,
    pub payouts: Vec<PayoutView>,
    pub conversions: Vec<ConversionRow>,
}

/// What re-keying a person under their pseudonym changed, in rows per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rekeyed {
    pub entries: i64,
    pub payouts: i64,
    pub conversions: i64,
    pub decisions: i64,
}

#[derive(Debug)]
pub enum PayoutOutcome {
    Paid(PayoutView),
    /// Nothing eligible (or clawbacks outweigh what is).
    NothingToPay,
}

/// Everything incentive-svc keeps. Every method that changes the ledger writes its outbox
/// events in the same transaction and wakes the relay after commit.
pub trait Store: Clone + Send + Sync + 'static {
    /// A ledger write transaction holding the ledger's write lock until [`Store::commit`]
    /// (or its drop, which rolls it back).
    type Tx: Send;

    fn outbox(&self) -> &Outbox;

    /// Inserts each program whose id does not exist yet (first start).
    fn seed_programs(&self, programs: Vec<RewardProgram>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Creates or replaces a validated program (keeping its first `createdAt`), writing
    /// `audit` with the program before and after in the same transaction.
    fn put_program(
        &self,
        program: RewardProgram,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<RewardProgram>> + Send;
    fn get_program(&self, id: &str) -> impl Future<Output = StoreResult<Option<RewardProgram>>> + Send;
    /// Programs in id order after `after`.
    fn list_programs(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<RewardProgram>>> + Send;

    /// The program new rewards of `kind` (SUPPLIER, COUPLE) are booked under.
    fn active_program(
        &self,
        kind: &str,
    ) -> impl Future<Output = StoreResult<Option<crate::domain::Program>>> + Send;

    /// Creates a campaign and writes `audit` (with the campaign as `after`) with it.
    fn create_campaign(
        &self,
        row: CampaignRow,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<CampaignRow>> + Send;
    /// Campaigns in id order after `after`; `active`: only those whose window holds `now`
    /// (true) or does not (false).
    fn list_campaigns(
        &self,
        active: Option<bool>,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<CampaignRow>>> + Send;

    // ---- one ledger transaction (app::apply_events) -------------------------------------

    /// Begins a ledger write transaction holding the ledger's write lock until
    /// [`Store::commit`] (Postgres: the schema's advisory lock; SQLite: BEGIN IMMEDIATE).
    fn begin_ledger(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
    /// Commits `tx`; when it `staged` outbox events, wakes the relay.
    fn commit(&self, tx: Self::Tx, staged: bool) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stages an event in the outbox of `tx`.
    fn stage(&self, tx: &mut Self::Tx, event: &Event) -> impl Future<Output = StoreResult<()>> + Send;
    /// Writes an audit row in `tx`.
    fn audit(&self, tx: &mut Self::Tx, entry: &AuditEntry) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks a consumed event applied; false when it already was.
    fn mark_consumed(
        &self,
        tx: &mut Self::Tx,
        event_id: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Saves where the consumer of `source` resumes.
    fn save_offset(
        &self,
        tx: &mut Self::Tx,
        source: &str,
        offset: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records a conversion (once per conversion id).
    fn record_conversion(
        &self,
        tx: &mut Self::Tx,
        conv: &Conversion,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The id of the entry booked under `dedupe_key`, if any.
    fn entry_by_key(
        &self,
        tx: &mut Self::Tx,
        dedupe_key: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// The fraud actions recorded for a conversion or for its referee's signup, as stored.
    fn known_actions(
        &self,
        tx: &mut Self::Tx,
        conversion_id: &str,
        referee_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// [`Store::active_program`] inside `tx`.
    fn active_program_in(
        &self,
        tx: &mut Self::Tx,
        kind: &str,
    ) -> impl Future<Output = StoreResult<Option<crate::domain::Program>>> + Send;
    /// Converted, not rejected referrals of a referrer, leaving conversion `except` out.
    fn successful_referrals(
        &self,
        tx: &mut Self::Tx,
        referrer_id: &str,
        except: &str,
    ) -> impl Future<Output = StoreResult<i32>> + Send;
    /// The milestones already booked for a referrer.
    fn booked_milestones(
        &self,
        tx: &mut Self::Tx,
        referrer_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<i32>>> + Send;
    /// Campaigns whose window holds `at`, in id order, with what they spent so far.
    fn campaigns_at(
        &self,
        tx: &mut Self::Tx,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<CampaignRow>>> + Send;
    /// Inserts an entry with its first state (`e.state`, `e.reason`) unless `dedupe_key`
    /// exists; true when it was inserted.
    fn insert_entry(
        &self,
        tx: &mut Self::Tx,
        e: &EntryRow,
        dedupe_key: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Appends a state to an entry's history and moves its current state (and `e`).
    fn transition(
        &self,
        tx: &mut Self::Tx,
        e: &mut EntryRow,
        to: State,
        payout_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The referrer's tier now (for events).
    fn tier(
        &self,
        tx: &mut Self::Tx,
        referrer_id: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// The referee of a recorded conversion.
    fn referee_of_conversion(
        &self,
        tx: &mut Self::Tx,
        conversion_id: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// The referee recorded with an earlier decision on `subject_id`.
    fn referee_of_decision(
        &self,
        tx: &mut Self::Tx,
        subject_id: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Records (or replaces) the decision on its subject; an empty `referee_id` keeps the
    /// one recorded before.
    fn record_decision(
        &self,
        tx: &mut Self::Tx,
        d: &Decision,
        referee_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The conversion and referee rewards of a conversion, in id order.
    fn rewards_of_conversion(
        &self,
        tx: &mut Self::Tx,
        conversion_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<EntryRow>>> + Send;
    /// The conversion and referee rewards of every conversion of a referee, in id order.
    fn rewards_of_referee(
        &self,
        tx: &mut Self::Tx,
        referee_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<EntryRow>>> + Send;

    fn last_offset(&self, source: &str) -> impl Future<Output = StoreResult<i64>> + Send;

    /// The scheduler: PENDING entries past their hold become ELIGIBLE, unclaimed entries past
    /// their expiry become EXPIRED (at most `limit` of each per call).
    fn advance(&self, now: DateTime<Utc>, limit: i64) -> impl Future<Output = StoreResult<Advanced>> + Send;

    /// Pays the referrer's whole eligible balance once, writing `audit` (its subject the new
    /// payout) with it; nothing to pay writes nothing.
    fn create_payout(
        &self,
        referrer_id: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<PayoutOutcome>> + Send;
    fn get_payout(&self, id: &str) -> impl Future<Output = StoreResult<Option<PayoutView>>> + Send;

    fn standing(&self, referrer_id: &str) -> impl Future<Output = StoreResult<Standing>> + Send;
    /// A referrer's entries in id (time) order after `after`.
    fn entries(
        &self,
        referrer_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<EntryRow>>> + Send;

    /// Everything the ledger holds about `person_id`, as referrer or as referee (at most
    /// `limit` rows of each kind).
    fn person_ledger(
        &self,
        person_id: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<PersonLedger>> + Send;
    /// Replaces `person_id` by `pseudonym` wherever the ledger names them (entries as referrer
    /// and as referee with their dedupe keys, current states, payouts, conversions, fraud
    /// decisions), in one ledger write transaction; amounts and states are untouched, so
    /// every balance still sums the same. A second call finds nothing (all zeros).
    fn rekey_person(
        &self,
        person_id: &str,
        pseudonym: &str,
    ) -> impl Future<Output = StoreResult<Rekeyed>> + Send;

    /// Conversions of referrers of `kind` in [from, to), oldest first (at most `limit`), and
    /// each of their referrers' successful referrals before `from`.
    fn past_conversions(
        &self,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<PastWindow>> + Send;
}

#[cfg(test)]
mod conformance;
