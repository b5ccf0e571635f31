//! invite-svc on Postgres (schema `invite` by default, its own search_path).

use referral_common::{
    outbox::{self, Outbox},
    pii::PiiKeys,
};
use sqlx::{PgPool, Postgres, Transaction};

use super::{
    api_keys::api_key_store,
    consent::consent_store,
    privacy::privacy_store,
    sql::{signup_cols, sql_store},
};

type Db = Postgres;
type Tx = Transaction<'static, Db>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    outbox: Outbox,
    /// Days an invitation attributes after sending (its expiry).
    window_days: i64,
    /// Seals personal data on the way in, opens it on the way out (see `sealed`).
    pii: PiiKeys,
}

impl PgStore {
    pub async fn connect(url: &str, schema: &str, pii: PiiKeys) -> anyhow::Result<Self> {
        let pool = referral_common::db::connect_postgres(url, schema, 16).await?;
        // Migrate before the outbox relay starts reading its table.
        referral_common::db::migrate_postgres(&pool, &MIGRATOR).await?;
        Ok(Self::from_pool(pool, pii))
    }

    pub fn from_pool(pool: PgPool, pii: PiiKeys) -> Self {
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
        referral_common::db::migrate_postgres(&self.pool, &MIGRATOR).await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> sqlx::Result<Tx> {
        self.pool.begin().await
    }

    /// Serialises writers of one key (a user's conversions) until the transaction ends.
    async fn lock_key(tx: &mut Tx, key: &str) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(key)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn load_offset(conn: &mut sqlx::PgConnection, source: &str) -> sqlx::Result<i64> {
        referral_common::consumer::pg::load_offset(conn, source).await
    }

    async fn save_offset(tx: &mut Tx, source: &str, offset: i64) -> sqlx::Result<()> {
        referral_common::consumer::pg::save_offset(tx, source, offset).await
    }

    async fn first_time(tx: &mut Tx, event_id: &str) -> sqlx::Result<bool> {
        referral_common::consumer::pg::first_time(tx, event_id).await
    }

    /// After `reencrypt`: dead row versions holding the replaced values are reclaimed by
    /// VACUUM (the space is reused; a `VACUUM FULL` in a maintenance window rewrites it).
    async fn after_reencrypt(&self) -> sqlx::Result<()> {
        for table in ["invitations", "clicks", "signups"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM {table}")))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn stage(tx: &mut Tx, event: &Event) -> sqlx::Result<()> {
        outbox::insert_pg(tx, event).await
    }

    async fn stage_many(tx: &mut Tx, events: &[Event]) -> sqlx::Result<()> {
        outbox::insert_many_pg(tx, events).await
    }
}

sql_store!(PgStore, " FOR UPDATE", " FOR UPDATE SKIP LOCKED");
api_key_store!(PgStore, " FOR UPDATE");
consent_store!(PgStore, " FOR UPDATE");
privacy_store!(PgStore, " FOR UPDATE");
