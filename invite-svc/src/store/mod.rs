//! invite-svc storage: one trait, a Postgres and a SQLite implementation chosen by the
//! database URL. The SQL is written once (sql.rs) and instantiated for both backends.

pub mod api_keys;
pub mod consent;
pub mod events;
pub mod names;
mod postgres;
pub mod privacy;
pub mod retention;
pub mod sealed;
mod sql;
mod sqlite;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use referral_common::{audit::AuditEntry, outbox::Outbox, pii::PiiKeys};
use referral_proto::events::v1::Event;
use sqlx::FromRow;

pub use api_keys::ApiKeyStore;
pub use consent::ConsentStore;
pub use postgres::PgStore;
pub use privacy::PrivacyStore;
pub use sqlite::SqliteStore;

use referral_proto::common::v1::Risk;

use crate::domain::{
    quota::{self, QuotaUsage},
    review::Decision,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("event encoding: {0}")]
    Encoding(String),
    /// Sealed personal data that does not open (altered, or under a key not configured):
    /// names the row and the reason, never the value.
    #[error("personal data of {0}")]
    Sealed(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for referral_common::ApiError {
    fn from(e: StoreError) -> Self {
        referral_common::ApiError::Internal(e.into())
    }
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct CodeRow {
    pub code: String,
    pub referrer_id: String,
    pub referrer_kind: String,
    pub vendor_type: Option<String>,
    pub campaign_id: String,
    pub landing_url: String,
    pub invitation_id: Option<String>,
    pub clicks: i64,
    pub signups: i64,
    pub conversions: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct ReferrerRow {
    pub id: String,
    pub tier: String,
    pub queued: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct InvitationRow {
    pub id: String,
    pub code: String,
    pub referrer_id: String,
    pub referrer_kind: String,
    pub referee_kind: String,
    pub vendor_type: Option<String>,
    pub flow: String,
    pub channel: String,
    pub recipient_email: String,
    pub recipient_phone: String,
    pub recipient_name: String,
    pub recipient_timezone: String,
    /// The keyed hash the recipient is found by ([`sealed::recipient_key`]), never the
    /// address or number itself.
    pub recipient_key: String,
    pub status: String,
    pub status_reason: String,
    pub risk_json: String,
    pub template_id: String,
    pub template_variant: String,
    pub message: String,
    pub campaign_id: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub wedding_date: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ip: String,
    pub device_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Who the message is from, as the referrer asked (names in the template).
    pub referrer_name: String,
    pub business_name: String,
}

/// An invitation leased for sending, with the number of this attempt (recorded before the
/// provider is called; also the lease's token).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct Claimed {
    #[sqlx(flatten)]
    pub row: InvitationRow,
    pub send_attempts: i64,
}

/// What became of a provider webhook's events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebhookTally {
    /// Moved an invitation forward.
    pub recorded: i32,
    /// Carried no news (unknown invitation, a late or meaningless event).
    pub ignored: i32,
    /// Seen before (same provider event id): a replay, a no-op.
    pub duplicates: i32,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct ClickRow {
    pub click_id: String,
    pub code: String,
    pub referrer_id: String,
    pub invitation_id: Option<String>,
    pub visitor_id: String,
    pub user_agent: String,
    pub ip: String,
    pub device_id: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub occurred_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The same visitor's click before this one ('' when none or unknown).
    pub previous_click_id: String,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct SignupRow {
    pub id: String,
    pub user_id: String,
    pub user_kind: String,
    pub vendor_type: Option<String>,
    pub email: String,
    /// The keyed hash of the normalised e-mail (`PiiKeys::lookup("email", ..)`), "" for none.
    pub email_norm: String,
    pub name: String,
    pub attributed: bool,
    pub invitation_id: Option<String>,
    pub code: Option<String>,
    pub referrer_id: Option<String>,
    pub referrer_kind: Option<String>,
    pub flow: Option<String>,
    pub reason: String,
    pub touchpoints_json: String,
    pub risk_json: String,
    pub click_at: Option<DateTime<Utc>>,
    pub ip: String,
    pub device_id: String,
    pub created_at: DateTime<Utc>,
    /// Why the click id the signup named was refused (empty when none was, or none named).
    pub rejected_click: String,
}

impl SignupRow {
    /// The stored touchpoints (written by `app::attribute_signup`); a column that no longer
    /// reads is an error, never an empty list.
    pub fn touchpoints(&self) -> StoreResult<Vec<referral_proto::invite::v1::Touchpoint>> {
        serde_json::from_str(&self.touchpoints_json)
            .map_err(|e| StoreError::Encoding(format!("touchpoints of signup {}: {e}", self.id)))
    }
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct ConversionRow {
    pub id: String,
    pub user_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub plan: String,
    pub annual: bool,
    pub first_paid: bool,
    pub attributed: bool,
    pub referrer_id: Option<String>,
    pub invitation_id: Option<String>,
    pub flow: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A referrer's sending slots already used, per UTC hour and day bucket.
#[derive(Debug, Default, Clone)]
pub struct SlotUsage {
    pub hours: HashMap<DateTime<Utc>, u32>,
    pub days: HashMap<DateTime<Utc>, u32>,
}

impl QuotaUsage for SlotUsage {
    fn hour_count(&self, hour_start: DateTime<Utc>) -> u32 {
        self.hours.get(&hour_start).copied().unwrap_or(0)
    }

    fn day_count(&self, day_start: DateTime<Utc>) -> u32 {
        self.days.get(&day_start).copied().unwrap_or(0)
    }
}

/// Picks `scheduledFor` from the referrer's current usage (the pacing rule, pure).
pub type Placer<'a> = &'a (dyn Fn(&SlotUsage) -> DateTime<Utc> + Send + Sync);

/// An invitation ready to store; `scheduled_for` is decided inside the transaction.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub row: InvitationRow,
    /// Takes a sending slot (we send it: EMAIL/SMS, not blocked).
    pub paced: bool,
    /// Same referrer + recipient since this instant is a duplicate.
    pub duplicate_since: DateTime<Utc>,
    pub max_queued: i64,
    pub landing_url: String,
    /// The lookup hash of the address we message (`domain::suppression::messaged_contact`),
    /// '' when none: a suppressed one is refused in the creating transaction.
    pub contact_lookup: String,
}

#[derive(Debug)]
pub enum CreateOutcome {
    Created(Box<InvitationRow>),
    Duplicate {
        existing_id: String,
    },
    QueueFull {
        queued: i64,
    },
    CodeTaken,
    /// The address is on the suppression list.
    Suppressed,
}

#[derive(Debug)]
pub enum TransitionOutcome {
    Applied(Box<InvitationRow>),
    Ignored(Box<InvitationRow>),
    Rejected { row: Box<InvitationRow>, reason: String },
    NotFound,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClicksOutcome {
    pub recorded: u32,
    pub unknown_codes: u32,
}

/// A conversion to record; first-paid and attribution are decided in the transaction.
#[derive(Debug, Clone)]
pub struct NewConversion {
    pub id: String,
    pub user_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub plan: String,
    pub annual: bool,
    pub occurred_at: DateTime<Utc>,
}

/// A fraud decision read from fraud-svc's log, to apply to what invite-svc holds.
#[derive(Debug, Clone)]
pub enum FraudOutcome {
    Invitation {
        invitation_id: String,
        decision: Decision,
        risk: FraudRisk,
    },
    Signup {
        signup_id: String,
        decision: Decision,
        risk: FraudRisk,
    },
}

/// The risk to record with a decision.
#[derive(Debug, Clone)]
pub enum FraudRisk {
    /// A (re)assessment: the full explanation replaces what is stored.
    Assessed(Risk),
    /// A reviewer's resolution: the stored explanation keeps its signals, the action changes.
    Resolved { action: i32, case_id: String },
}

impl FraudRisk {
    /// The risk JSON to store, given what is stored now ("" when nothing was assessed yet);
    /// a stored risk that no longer reads is an error, never silently replaced.
    pub fn merged_json(&self, stored: &str) -> StoreResult<String> {
        let risk = match self {
            FraudRisk::Assessed(r) => r.clone(),
            FraudRisk::Resolved { action, case_id } => {
                let mut r: Risk = if stored.is_empty() {
                    Risk::default()
                } else {
                    serde_json::from_str(stored)
                        .map_err(|e| StoreError::Encoding(format!("stored risk: {e}")))?
                };
                r.action = *action;
                r.pending = false;
                if r.case_id.is_empty() {
                    r.case_id = case_id.clone();
                }
                r
            }
        };
        serde_json::to_string(&risk).map_err(|e| StoreError::Encoding(format!("risk: {e}")))
    }

    /// True when this assessment is the one already stored (applied synchronously).
    pub fn already_stored(&self, stored: &str) -> bool {
        match self {
            FraudRisk::Assessed(r) => {
                !r.assessment_id.is_empty()
                    && serde_json::from_str::<Risk>(stored).is_ok_and(|s| s.assessment_id == r.assessment_id)
            }
            FraudRisk::Resolved { .. } => false,
        }
    }
}

/// Everything invite-svc keeps. Every method that changes state writes its outbox events in
/// the same transaction and wakes the relay after commit.
pub trait Store: ApiKeyStore + ConsentStore + PrivacyStore + Clone + Send + Sync + 'static {
    fn outbox(&self) -> &Outbox;

    /// The keys personal data is sealed with (and looked up by): the app computes lookup
    /// hashes (`recipient_key`, `email_norm`) with them.
    fn pii(&self) -> &PiiKeys;

    /// `reencrypt`: every row whose personal data is plaintext (written before encryption)
    /// or sealed under a key other than PII_KEYS' first is sealed under the first, and key
    /// columns still holding the normalised value get its keyed hash; in batches of
    /// `batch` rows, each its own transaction (resumable: a second run finds nothing to do).
    /// Returns per table what it read and changed.
    fn reencrypt(
        &self,
        batch: i64,
    ) -> impl Future<Output = StoreResult<Vec<(&'static str, sealed::Resealed)>>> + Send;

    /// Inserts a referral code; `false` if the code is already taken.
    fn insert_code(&self, row: &CodeRow, event: &Event) -> impl Future<Output = StoreResult<bool>> + Send;
    fn get_code(&self, code: &str) -> impl Future<Output = StoreResult<Option<CodeRow>>> + Send;

    fn get_referrer(&self, id: &str) -> impl Future<Output = StoreResult<ReferrerRow>> + Send;
    /// Sets a referrer's tier and writes `audit` (completed with the tier before and after)
    /// in the same transaction.
    fn set_tier(
        &self,
        id: &str,
        tier: &str,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<ReferrerRow>> + Send;

    fn create_invitation(
        &self,
        new: NewInvitation,
        place: Placer<'_>,
    ) -> impl Future<Output = StoreResult<CreateOutcome>> + Send;
    fn get_invitation(&self, id: &str) -> impl Future<Output = StoreResult<Option<InvitationRow>>> + Send;
    /// A referrer's invitations by id (time order), after the `after` id.
    fn list_invitations(
        &self,
        referrer_id: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<InvitationRow>>> + Send;
    /// Moves an invitation along the forward-only status machine.
    fn transition(
        &self,
        id: &str,
        to: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<TransitionOutcome>> + Send;
    /// [`Store::transition`] to CANCELLED; when `audit` is given (an admin cancelling on the
    /// referrer's behalf) it is written, with the status before and after, in the same
    /// transaction as an applied cancellation.
    fn cancel(
        &self,
        id: &str,
        reason: &str,
        at: DateTime<Utc>,
        audit: Option<&AuditEntry>,
    ) -> impl Future<Output = StoreResult<TransitionOutcome>> + Send;
    /// Leases the longest-due SCHEDULED invitation (EMAIL/SMS) whose send time, retry time
    /// and any earlier lease have passed, counting the attempt, in one committed write before
    /// the provider is called. Replicas never lease the same row at once (`FOR UPDATE SKIP
    /// LOCKED` on Postgres; SQLite's single writer).
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<Claimed>>> + Send;
    /// The provider took attempt `attempt`: SENT (with its event) and the lease released.
    fn record_sent(
        &self,
        id: &str,
        attempt: i64,
        provider_message_id: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<TransitionOutcome>> + Send;
    /// Attempt `attempt` failed: retry at `retry_at`, or with `None` give up as BOUNCED
    /// with `error` as the reason. Does nothing if a later attempt has taken the lease.
    fn record_send_failure(
        &self,
        id: &str,
        attempt: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Attempt `attempt` panicked (a bug, or data the sender cannot handle): counted
    /// against the row, which is retried at `retry_at` until it has panicked `park_after`
    /// times, then parked with `reason` and never leased again until an admin retries it.
    /// Returns true when the row was parked. Does nothing if a later attempt holds the lease.
    fn record_send_panic(
        &self,
        id: &str,
        attempt: i64,
        reason: &str,
        park_after: i64,
        retry_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Parked sends with an invitation id below `before`, highest first, at most `limit`
    /// (admins' `GET /v1/parked`).
    fn parked_sends(
        &self,
        before: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<referral_common::parked::ParkedSend>>> + Send;
    /// Releases a parked send: its panics forgotten, leased again by the next tick; with
    /// `entry`'s audit row in the same transaction. False when no such send is parked.
    fn release_parked_send(
        &self,
        id: &str,
        entry: &referral_common::audit::AuditEntry,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Applies verified provider events in one transaction; each (provider, event id) once.
    /// A bounce or complaint whose invitation has an entry in `suppressions` (by invitation
    /// id) suppresses that address in the same transaction.
    fn apply_provider_events(
        &self,
        provider: &str,
        events: &[crate::domain::webhooks::ProviderEvent],
        suppressions: &HashMap<String, consent::NewSuppression>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<WebhookTally>> + Send;
    /// Forgets up to `limit` provider event ids received before `before` (their replay
    /// guard is no longer needed); returns how many.
    fn forget_provider_events(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Marks sent invitations whose attribution window has closed as EXPIRED.
    fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    fn record_clicks(&self, clicks: &[ClickRow]) -> impl Future<Output = StoreResult<ClicksOutcome>> + Send;
    fn get_click(&self, click_id: &str) -> impl Future<Output = StoreResult<Option<ClickRow>>> + Send;

    fn find_signup(&self, user_id: &str) -> impl Future<Output = StoreResult<Option<SignupRow>>> + Send;
    /// The newest invitation sent to this recipient key (a keyed hash, see
    /// [`sealed::recipient_key`]) since `since` and still open.
    fn open_invitation_for(
        &self,
        recipient_key: &str,
        since: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<InvitationRow>>> + Send;
    /// The keyed hash of the normalised e-mail a referrer signed up with (`email_norm`), if
    /// they did through us.
    fn referrer_email(&self, referrer_id: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Records a signup once per user; returns the stored one (the first) either way.
    fn insert_signup(&self, row: &SignupRow) -> impl Future<Output = StoreResult<SignupRow>> + Send;

    fn record_conversion(
        &self,
        new: NewConversion,
    ) -> impl Future<Output = StoreResult<ConversionRow>> + Send;

    /// The offset of the last event applied from a source log.
    fn consumer_offset(&self, source: &str) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Applies fraud decisions (each event once, by id) and stores the offset, in one
    /// transaction.
    fn apply_fraud(
        &self,
        source: &str,
        last_offset: i64,
        outcomes: Vec<(String, Option<FraudOutcome>)>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The UTC hour and day buckets a placed invitation uses.
pub(crate) fn buckets(at: DateTime<Utc>) -> [(&'static str, DateTime<Utc>); 2] {
    [("H", quota::hour_bucket(at)), ("D", quota::day_bucket(at))]
}

#[cfg(test)]
mod conformance;
