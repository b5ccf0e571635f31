//! fraud-svc on Postgres (schema `fraud` by default, its own search_path).

use referral_common::outbox::{self, Outbox};
use referral_common::pii::PiiKeys;
use sqlx::{PgPool, Postgres, Transaction};

// `sql_store!` brings the store's types into scope.
use super::sql::{assessment_cols, case_cols, sql_store};

type Tx = Transaction<'static, Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    outbox: Outbox,
    /// Seals and looks up personal data (nothing is stored in plaintext).
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
            "fraud-svc.outbox-relay",
            pool.clone(),
            std::time::Duration::from_millis(200),
        );
        Self { pool, outbox, pii }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        referral_common::db::migrate_postgres(&self.pool, &MIGRATOR).await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction holding this schema's assessment lock until it ends: assessments
    /// (and the ring merges they make) happen one at a time, across replicas too. BEGIN and
    /// the lock go in one simple-protocol message: one round trip, not two.
    async fn begin_write(&self) -> sqlx::Result<Tx> {
        self.pool
            .begin_with("BEGIN; SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.assess'))")
            .await
    }

    async fn stage_in(tx: &mut Tx, event: &Event) -> sqlx::Result<()> {
        outbox::insert_pg(tx, event).await
    }

    /// The relay numbers under its own advisory lock, apart from the assessment lock: wake
    /// it at once.
    fn wake_relay(&self) {
        self.outbox.wake();
    }
}

sql_store!(PgStore, Postgres, sqlx::PgConnection, pg, " FOR UPDATE");
