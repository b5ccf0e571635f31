//! invite-svc on SQLite (one file, WAL; writers take BEGIN IMMEDIATE).

use referral_common::{
    outbox::{self, Outbox},
    pii::PiiKeys,
};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{
    api_keys::api_key_store,
    consent::consent_store,
    privacy::privacy_store,
    sql::{signup_cols, sql_store},
};

type Db = Sqlite;
type Tx = Transaction<'static, Db>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    outbox: Outbox,
    /// Days an invitation attributes after sending (its expiry).
    window_days: i64,
    /// Seals personal data on the way in, opens it on the way out (see `sealed`).
    pii: PiiKeys,
}

impl SqliteStore {
    pub async fn connect(url: &str, pii: PiiKeys) -> anyhow::Result<Self> {
        let pool = referral_common::db::connect_sqlite(url).await?;
        // Migrate before the outbox relay starts reading its table.
        referral_common::db::migrate_sqlite(&pool, &MIGRATOR).await?;
        Ok(Self::from_pool(pool, pii))
    }

    pub fn from_pool(pool: SqlitePool, pii: PiiKeys) -> Self {
        let outbox = Outbox::start(
            "invite-svc.outbox-relay",
            pool.clone(),
            std::time::Duration::from_millis(200),
        );
        Self {
            pool,
            outbox,
            window_days: crate::domain::attribution::ATTRIBUTION_WINDOW_DAYS,
            pii,
        }
    }

    /// The same database and outbox under other keys (tests of key rotation).
    #[cfg(test)]
    pub(crate) fn with_pii(mut self, pii: PiiKeys) -> Self {
        self.pii = pii;
        self
    }

    /// Sets the attribution window that SENT invitations expire after.
    pub fn with_attribution_window(mut self, days: i64) -> Self {
        self.window_days = days;
        self
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

    /// SQLite writers already hold the one write lock (BEGIN IMMEDIATE).
    async fn lock_key(_tx: &mut Tx, _key: &str) -> sqlx::Result<()> {
        Ok(())
    }

    async fn load_offset(conn: &mut sqlx::SqliteConnection, source: &str) -> sqlx::Result<i64> {
        referral_common::consumer::sqlite::load_offset(conn, source).await
    }

    async fn save_offset(tx: &mut Tx, source: &str, offset: i64) -> sqlx::Result<()> {
        referral_common::consumer::sqlite::save_offset(tx, source, offset).await
    }

    async fn first_time(tx: &mut Tx, event_id: &str) -> sqlx::Result<bool> {
        referral_common::consumer::sqlite::first_time(tx, event_id).await
    }

    /// After `reencrypt`: the plaintext it replaced must not linger in free pages or the
    /// WAL, so the file is rebuilt and the WAL truncated.
    async fn after_reencrypt(&self) -> sqlx::Result<()> {
        sqlx::query("VACUUM").execute(&self.pool).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn stage(tx: &mut Tx, event: &Event) -> sqlx::Result<()> {
        outbox::insert_sqlite(tx, event).await
    }

    async fn stage_many(tx: &mut Tx, events: &[Event]) -> sqlx::Result<()> {
        outbox::insert_many_sqlite(tx, events).await
    }
}

sql_store!(SqliteStore, "", "");
api_key_store!(SqliteStore, "");
consent_store!(SqliteStore, "");
privacy_store!(SqliteStore, "");
