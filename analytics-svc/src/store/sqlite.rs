//! analytics-svc on SQLite (one file, WAL; writers take BEGIN IMMEDIATE).

use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::sql::sql_store;

type Tx = Transaction<'static, Sqlite>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating) and migrates the file.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = referral_common::db::connect_sqlite(url).await?;
        referral_common::db::migrate_sqlite(&pool, &MIGRATOR).await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        referral_common::db::migrate_sqlite(&self.pool, &MIGRATOR).await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> sqlx::Result<Tx> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// SQLite's one-writer lock up front, so two writers never deadlock upgrading.
    async fn begin_webhook_write(&self) -> sqlx::Result<Tx> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

// BEGIN IMMEDIATE already serialises webhook delivery claims.
sql_store!(SqliteStore, SqliteConnection, sqlite, "");

/// The audit log lives in this store's database, beside the rows it audits.
impl referral_common::audit::AuditStore for SqliteStore {
    async fn list_audit(
        &self,
        q: &referral_common::audit::AuditQuery,
    ) -> sqlx::Result<referral_common::audit::Page> {
        referral_common::audit::AuditStore::list_audit(self.pool(), q).await
    }
}

/// Parked events live in this store's database too.
impl From<SqliteStore> for referral_common::parked::ParkedDb {
    fn from(store: SqliteStore) -> Self {
        store.pool().clone().into()
    }
}
super::privacy::privacy_sql!(SqliteStore);

/// So do its retention rows (dedupe ids, idempotency records).
impl From<SqliteStore> for referral_common::retention::RetentionDb {
    fn from(store: SqliteStore) -> Self {
        store.pool().clone().into()
    }
}
