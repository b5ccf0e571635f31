//! Consent and suppression in invite-svc's database (`suppressions`, `consent_history`,
//! `invitations.contact_lookup`, migration 0082). An address is known only by its lookup
//! hash; each change is written with its consent history row, its outbox event (and, for a
//! lift, its audit row) in one transaction, and a suppression cancels the queued
//! invitations to the address in that same transaction. The SQL is written once
//! (`consent_store!`) for both backends; instants are integer microseconds in both.

use chrono::{DateTime, Utc};
use referral_common::audit::AuditEntry;
use referral_proto::events::v1::{ConsentChanged, Event, event::Payload};
use sqlx::FromRow;

use super::StoreResult;

/// A suppression as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SuppressionRow {
    pub id: String,
    /// `PiiKeys::lookup(kind, canonical address)`.
    pub contact_key: String,
    /// "email" or "phone".
    pub kind: String,
    /// `PiiKeys::seal` of the canonical address ('' when none was kept).
    pub address_sealed: String,
    /// `domain::suppression::Reason`'s name.
    pub reason: String,
    pub source_invitation_id: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
    pub lifted_at: Option<i64>,
    pub lifted_by: String,
}

impl SuppressionRow {
    /// What the audit log records of a suppression: never the address, sealed or not.
    pub fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind,
            "reason": self.reason,
            "sourceInvitationId": self.source_invitation_id,
            "lifted": self.lifted_at.is_some(),
        })
    }
}

/// One consent change of an address (the person's export reads these).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ConsentHistoryRow {
    pub id: String,
    pub contact_key: String,
    pub suppression_id: String,
    /// SUPPRESSED or LIFTED.
    pub action: String,
    pub reason: String,
    pub source_invitation_id: String,
    /// Who lifted it ('' for a suppression: the recipient or their provider did).
    pub actor: String,
    pub at: i64,
}

/// A suppression to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSuppression {
    pub id: String,
    pub contact_key: String,
    pub kind: String,
    pub address_sealed: String,
    pub reason: String,
    pub source_invitation_id: String,
    pub at: DateTime<Utc>,
}

/// What a suppression did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// The active suppression of the address: this one, or the one already there.
    pub row: SuppressionRow,
    /// False when the address was already suppressed (nothing new recorded).
    pub created: bool,
    /// The queued invitations to the address cancelled by it.
    pub cancelled: Vec<String>,
}

/// The outcome of a lift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiftOutcome {
    /// Lifted, recorded in the history and audited.
    Lifted(SuppressionRow),
    /// Already lifted: nothing changed, nothing audited.
    AlreadyLifted(SuppressionRow),
    NotFound,
}

/// The event of a consent change: the lookup hash, reason and time; no address.
pub fn consent_event(row: &SuppressionRow, lifted: bool, at: DateTime<Utc>) -> Event {
    let change = ConsentChanged {
        suppression_id: row.id.clone(),
        contact_key: row.contact_key.clone(),
        kind: row.kind.clone(),
        reason: referral_proto::invite::v1::SuppressionReason::from_str_name(&row.reason)
            .map_or(0, |r| r as i32),
        source_invitation_id: row.source_invitation_id.clone(),
        at: Some(referral_common::ids::to_ts(at)),
    };
    let payload = if lifted {
        Payload::ConsentLifted(change)
    } else {
        Payload::ConsentSuppressed(change)
    };
    referral_common::events::new_event(super::events::SOURCE, &row.id, at, payload)
}

/// invite-svc's suppression list; part of every [`super::Store`].
pub trait ConsentStore: Clone + Send + Sync + 'static {
    /// Suppresses an address unless it already is, and cancels the queued (SCHEDULED or
    /// PENDING_REVIEW, not being sent) invitations to it with `cancel_reason`: one
    /// transaction, with the history row and the `consent.suppressed` event.
    fn suppress(
        &self,
        new: &NewSuppression,
        cancel_reason: &str,
    ) -> impl Future<Output = StoreResult<Suppressed>> + Send;
    /// Whether the address is suppressed now.
    fn is_suppressed(&self, contact_key: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Active suppressions, newest first (id order), before the `before` id; filtered by
    /// address hash and reason when given.
    fn list_suppressions(
        &self,
        contact_key: Option<&str>,
        reason: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<SuppressionRow>>> + Send;
    /// Lifts an active suppression at `at`: history row, `consent.lifted` event and `audit`
    /// (completed with before and after) in one transaction.
    fn lift_suppression(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<LiftOutcome>> + Send;
    /// The consent history of these addresses, oldest first.
    fn consent_history(
        &self,
        contact_keys: &[String],
    ) -> impl Future<Output = StoreResult<Vec<ConsentHistoryRow>>> + Send;
    /// The sender found the invitation it leased (attempt `attempt`) addressed to a
    /// suppressed recipient: the lease is released and the invitation CANCELLED with
    /// `reason`. False when a later attempt holds it or it can no longer be cancelled.
    fn cancel_claimed(
        &self,
        id: &str,
        attempt: i64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

macro_rules! consent_store {
    ($store:ty, $for_update:literal) => {
        mod consent_sql {
            use chrono::{DateTime, Utc};
            use referral_common::audit::{self, AuditEntry};

            use super::*;
            use crate::store::{
                StoreResult, TransitionOutcome,
                consent::{
                    ConsentHistoryRow, ConsentStore, LiftOutcome, NewSuppression, Suppressed,
                    SuppressionRow, consent_event,
                },
            };

            const COLS: &str = "id, contact_key, kind, address_sealed, reason, source_invitation_id, created_at, lifted_at, lifted_by";

            impl ConsentStore for $store {
                async fn suppress(&self, new: &NewSuppression, cancel_reason: &str) -> StoreResult<Suppressed> {
                    let mut tx = self.begin_write().await?;
                    let done = self.suppress_in(&mut tx, new, cancel_reason).await?;
                    tx.commit().await?;
                    self.outbox.wake();
                    Ok(done)
                }

                async fn is_suppressed(&self, contact_key: &str) -> StoreResult<bool> {
                    if contact_key.is_empty() {
                        return Ok(false);
                    }
                    let found: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM suppressions WHERE contact_key = $1 AND lifted_at IS NULL",
                    )
                    .bind(contact_key)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(found.is_some())
                }

                async fn list_suppressions(
                    &self,
                    contact_key: Option<&str>,
                    reason: Option<&str>,
                    before: Option<&str>,
                    limit: i64,
                ) -> StoreResult<Vec<SuppressionRow>> {
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLS} FROM suppressions WHERE lifted_at IS NULL
                         AND ($1 = '' OR contact_key = $1) AND ($2 = '' OR reason = $2)
                         AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
                    )))
                    .bind(contact_key.unwrap_or(""))
                    .bind(reason.unwrap_or(""))
                    .bind(before.unwrap_or(""))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn lift_suppression(&self, id: &str, at: DateTime<Utc>, audit: &AuditEntry) -> StoreResult<LiftOutcome> {
                    let mut tx = self.begin_write().await?;
                    let before: Option<SuppressionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLS} FROM suppressions WHERE id = $1{}",
                        $for_update
                    )))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(before) = before else { return Ok(LiftOutcome::NotFound) };
                    if before.lifted_at.is_some() {
                        return Ok(LiftOutcome::AlreadyLifted(before));
                    }
                    let micros = at.timestamp_micros();
                    let by = audit.actor.subject.clone();
                    sqlx::query("UPDATE suppressions SET lifted_at = $2, lifted_by = $3 WHERE id = $1")
                        .bind(id)
                        .bind(micros)
                        .bind(&by)
                        .execute(&mut *tx)
                        .await?;
                    let after = SuppressionRow { lifted_at: Some(micros), lifted_by: by.clone(), ..before.clone() };
                    Self::consent_history_in(&mut tx, &after, "LIFTED", &by, micros).await?;
                    Self::stage(&mut tx, &consent_event(&after, true, at)).await?;
                    let entry = audit.clone().before(before.audit_view()).after(after.audit_view());
                    audit::record(&mut *tx, &entry).await?;
                    tx.commit().await?;
                    self.outbox.wake();
                    Ok(LiftOutcome::Lifted(after))
                }

                async fn consent_history(&self, contact_keys: &[String]) -> StoreResult<Vec<ConsentHistoryRow>> {
                    let keys: Vec<&str> = contact_keys.iter().map(String::as_str).filter(|k| !k.is_empty()).collect();
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "SELECT id, contact_key, suppression_id, action, reason, source_invitation_id, actor, at FROM consent_history WHERE contact_key IN (",
                    );
                    let mut list = q.separated(", ");
                    for key in keys.iter().take(1_000) {
                        list.push_bind(*key);
                    }
                    q.push(") ORDER BY at, id");
                    Ok(q.build_query_as().fetch_all(&self.pool).await?)
                }

                async fn cancel_claimed(&self, id: &str, attempt: i64, reason: &str, at: DateTime<Utc>) -> StoreResult<bool> {
                    let mut tx = self.begin_write().await?;
                    let released = sqlx::query(
                        "UPDATE invitations SET send_lease_until = NULL WHERE id = $1 AND send_attempts = $2 AND status = 'SCHEDULED'",
                    )
                    .bind(id)
                    .bind(attempt)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !released {
                        return Ok(false);
                    }
                    let cancelled = matches!(
                        self.transition_in(&mut tx, id, "CANCELLED", reason, at).await?,
                        TransitionOutcome::Applied(_)
                    );
                    tx.commit().await?;
                    self.outbox.wake();
                    Ok(cancelled)
                }
            }

            impl $store {
                /// [`ConsentStore::suppress`] inside the caller's transaction (the provider
                /// webhook's, so a bounce or complaint and its suppression commit together).
                pub(crate) async fn suppress_in(
                    &self,
                    tx: &mut Tx,
                    new: &NewSuppression,
                    cancel_reason: &str,
                ) -> StoreResult<Suppressed> {
                    let micros = new.at.timestamp_micros();
                    // The partial unique index keeps one active suppression per address.
                    let inserted = sqlx::query(
                        "INSERT INTO suppressions (id, contact_key, kind, address_sealed, reason, source_invitation_id, created_at, lifted_at, lifted_by)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, '')
                         ON CONFLICT (contact_key) WHERE lifted_at IS NULL DO NOTHING",
                    )
                    .bind(&new.id)
                    .bind(&new.contact_key)
                    .bind(&new.kind)
                    .bind(&new.address_sealed)
                    .bind(&new.reason)
                    .bind(&new.source_invitation_id)
                    .bind(micros)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                        == 1;
                    let row: SuppressionRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLS} FROM suppressions WHERE contact_key = $1 AND lifted_at IS NULL"
                    )))
                    .bind(&new.contact_key)
                    .fetch_one(&mut **tx)
                    .await?;
                    if inserted {
                        Self::consent_history_in(tx, &row, "SUPPRESSED", "", micros).await?;
                        Self::stage(tx, &consent_event(&row, false, new.at)).await?;
                    }
                    let queued: Vec<String> = sqlx::query_scalar(
                        "SELECT id FROM invitations WHERE contact_lookup = $1 AND status IN ('SCHEDULED', 'PENDING_REVIEW') ORDER BY id",
                    )
                    .bind(&new.contact_key)
                    .fetch_all(&mut **tx)
                    .await?;
                    let mut cancelled = Vec::new();
                    for id in queued {
                        // One being sent right now cannot be stopped (the sender's own check
                        // catches the next attempt): the transition refuses it.
                        if let TransitionOutcome::Applied(_) =
                            self.transition_in(tx, &id, "CANCELLED", cancel_reason, new.at).await?
                        {
                            cancelled.push(id);
                        }
                    }
                    Ok(Suppressed { row, created: inserted, cancelled })
                }

                async fn consent_history_in(
                    tx: &mut Tx,
                    row: &SuppressionRow,
                    action: &str,
                    actor: &str,
                    at: i64,
                ) -> sqlx::Result<()> {
                    sqlx::query(
                        "INSERT INTO consent_history (id, contact_key, suppression_id, action, reason, source_invitation_id, actor, at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(referral_common::ids::new_id())
                    .bind(&row.contact_key)
                    .bind(&row.id)
                    .bind(action)
                    .bind(&row.reason)
                    .bind(&row.source_invitation_id)
                    .bind(actor)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                }

                /// Whether the address is suppressed, read inside the caller's transaction.
                pub(crate) async fn suppressed_in(tx: &mut Tx, contact_key: &str) -> sqlx::Result<bool> {
                    if contact_key.is_empty() {
                        return Ok(false);
                    }
                    let found: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM suppressions WHERE contact_key = $1 AND lifted_at IS NULL",
                    )
                    .bind(contact_key)
                    .fetch_optional(&mut **tx)
                    .await?;
                    Ok(found.is_some())
                }
            }
        }
    };
}

pub(super) use consent_store;
