//! analytics-svc on Postgres (schema `analytics` by default, its own search_path).

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::sql::sql_store;

type Tx = Transaction<'static, Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and migrates.
    pub async fn connect(url: &str, schema: &str) -> anyhow::Result<Self> {
        let pool = referral_common::db::connect_postgres(url, schema, 16).await?;
        referral_common::db::migrate_postgres(&pool, &MIGRATOR).await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        referral_common::db::migrate_postgres(&self.pool, &MIGRATOR).await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction holding this schema's rollup lock until it ends: applies happen
    /// one at a time (the gap histograms read a referrer's neighbouring days), across
    /// replicas and a concurrent rebuild too.
    async fn begin_write(&self) -> sqlx::Result<Tx> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.rollups'))")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// A webhook write: a plain transaction (webhook rows never wait on the rollup lock).
    async fn begin_webhook_write(&self) -> sqlx::Result<Tx> {
        self.pool.begin().await
    }
}

// Replicas claiming webhook deliveries at once skip each other's rows instead of queueing
// on them.
sql_store!(PgStore, PgConnection, pg, " FOR UPDATE OF d SKIP LOCKED");

/// The audit log lives in this store's database, beside the rows it audits.
impl referral_common::audit::AuditStore for PgStore {
    async fn list_audit(
        &self,
        q: &referral_common::audit::AuditQuery,
    ) -> sqlx::Result<referral_common::audit::Page> {
        referral_common::audit::AuditStore::list_audit(self.pool(), q).await
    }
}

/// Parked events live in this store's database too.
impl From<PgStore> for referral_common::parked::ParkedDb {
    fn from(store: PgStore) -> Self {
        store.pool().clone().into()
    }
}
super::privacy::privacy_sql!(PgStore);

/// So do its retention rows (dedupe ids, idempotency records).
impl From<PgStore> for referral_common::retention::RetentionDb {
    fn from(store: PgStore) -> Self {
        store.pool().clone().into()
    }
}
