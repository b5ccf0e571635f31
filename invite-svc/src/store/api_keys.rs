//! API keys in invite-svc's database (`api_keys`, migration 0070): rows without their
//! secret, the hash lookup the gateway's check makes on every request, and the audited
//! changes (create, rotate, revoke), each written with its audit row in one transaction.
//! The SQL is written once (`api_key_store!`) for both backends; instants are integer
//! microseconds in both.

use chrono::{DateTime, Utc};
use referral_common::audit::AuditEntry;
use sqlx::FromRow;

use super::StoreResult;

/// An API key as stored, minus its secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    /// `rmk_` and the first characters of the secret (for recognition only).
    pub prefix: String,
    /// Scope names in their wire form (`conversions:write,reports:read`).
    pub scopes: String,
    /// Microseconds since the Unix epoch, like every instant of this table.
    pub created_at: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKeyRow {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// What the audit log records of a key: never its secret or hash.
    pub fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "prefix": self.prefix,
            "scopes": self.scopes.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
            "revoked": self.is_revoked(),
        })
    }
}

/// A stored instant from its microseconds (none outside chrono's range, which no write makes).
pub fn instant(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

/// The outcome of a rotation or revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// Changed, and audited.
    Changed(ApiKeyRow),
    /// Already revoked: nothing changed, nothing audited.
    Revoked(ApiKeyRow),
    NotFound,
}

/// The stored form of a key found by its hash, for authentication.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct KeyByHash {
    pub id: String,
    pub secret_hash: String,
    pub scopes: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// invite-svc's API keys; part of every [`super::Store`].
pub trait ApiKeyStore: Clone + Send + Sync + 'static {
    /// Inserts a key with its secret's hash, and `audit` (completed with the key's view as
    /// "after") in the same transaction.
    fn insert_api_key(
        &self,
        row: &ApiKeyRow,
        secret_hash: &str,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Keys in id order (creation order), after the `after` id; revoked ones included.
    fn list_api_keys(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<ApiKeyRow>>> + Send;
    /// Replaces a live key's hash and prefix (the old secret stops matching at once),
    /// audited with the prefix before and after.
    fn rotate_api_key(
        &self,
        id: &str,
        secret_hash: &str,
        prefix: &str,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<KeyChange>> + Send;
    /// Marks a live key revoked at `at`, audited.
    fn revoke_api_key(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEntry,
    ) -> impl Future<Output = StoreResult<KeyChange>> + Send;
    /// The key whose secret hashes to `secret_hash` (one probe of the unique index).
    fn api_key_by_hash(
        &self,
        secret_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<KeyByHash>>> + Send;
    /// Records a use at `at` unless one at or after `stale_before` is already recorded:
    /// busy keys cost one write a minute, not one per request.
    fn touch_api_key(
        &self,
        id: &str,
        at: i64,
        stale_before: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

macro_rules! api_key_store {
    ($store:ty, $for_update:literal) => {
        mod api_key_sql {
            use referral_common::audit::{self, AuditEntry};

            use super::*;
            use crate::store::{
                StoreResult,
                api_keys::{ApiKeyRow, ApiKeyStore, KeyByHash, KeyChange},
            };

            const COLS: &str =
                "id, name, prefix, scopes, created_at, created_by, last_used_at, revoked_at";

            impl ApiKeyStore for $store {
                async fn insert_api_key(
                    &self,
                    row: &ApiKeyRow,
                    secret_hash: &str,
                    audit: &AuditEntry,
                ) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(
                        "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, created_at, created_by, last_used_at, revoked_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)",
                    )
                    .bind(&row.id)
                    .bind(&row.name)
                    .bind(&row.prefix)
                    .bind(secret_hash)
                    .bind(&row.scopes)
                    .bind(row.created_at)
                    .bind(&row.created_by)
                    .execute(&mut *tx)
                    .await?;
                    audit::record(&mut *tx, &audit.clone().after(row.audit_view())).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn list_api_keys(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<ApiKeyRow>> {
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLS} FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2"
                    )))
                    .bind(after.unwrap_or(""))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn rotate_api_key(
                    &self,
                    id: &str,
                    secret_hash: &str,
                    prefix: &str,
                    audit: &AuditEntry,
                ) -> StoreResult<KeyChange> {
                    let mut tx = self.begin_write().await?;
                    let Some(before) = Self::locked_key(&mut tx, id).await? else {
                        return Ok(KeyChange::NotFound);
                    };
                    if before.is_revoked() {
                        return Ok(KeyChange::Revoked(before));
                    }
                    sqlx::query("UPDATE api_keys SET secret_hash = $2, prefix = $3 WHERE id = $1")
                        .bind(id)
                        .bind(secret_hash)
                        .bind(prefix)
                        .execute(&mut *tx)
                        .await?;
                    let after = ApiKeyRow { prefix: prefix.to_string(), ..before.clone() };
                    let entry = audit.clone().before(before.audit_view()).after(after.audit_view());
                    audit::record(&mut *tx, &entry).await?;
                    tx.commit().await?;
                    Ok(KeyChange::Changed(after))
                }

                async fn revoke_api_key(&self, id: &str, at: i64, audit: &AuditEntry) -> StoreResult<KeyChange> {
                    let mut tx = self.begin_write().await?;
                    let Some(before) = Self::locked_key(&mut tx, id).await? else {
                        return Ok(KeyChange::NotFound);
                    };
                    if before.is_revoked() {
                        return Ok(KeyChange::Revoked(before));
                    }
                    sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    let after = ApiKeyRow { revoked_at: Some(at), ..before.clone() };
                    let entry = audit.clone().before(before.audit_view()).after(after.audit_view());
                    audit::record(&mut *tx, &entry).await?;
                    tx.commit().await?;
                    Ok(KeyChange::Changed(after))
                }

                async fn api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<KeyByHash>> {
                    Ok(sqlx::query_as(
                        "SELECT id, secret_hash, scopes, last_used_at, revoked_at FROM api_keys WHERE secret_hash = $1",
                    )
                    .bind(secret_hash)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn touch_api_key(&self, id: &str, at: i64, stale_before: i64) -> StoreResult<()> {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at < $3)",
                    )
                    .bind(id)
                    .bind(at)
                    .bind(stale_before)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }
            }

            impl $store {
                /// The key, locked for the rest of the transaction where the backend can.
                async fn locked_key(tx: &mut Tx, id: &str) -> sqlx::Result<Option<ApiKeyRow>> {
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLS} FROM api_keys WHERE id = $1{}",
                        $for_update
                    )))
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await
                }
            }
        }
    };
}

pub(super) use api_key_store;
