//! incentive-svc on Postgres (schema `incentive` by default, its own search_path).

use referral_common::outbox::{self, Outbox};
use referral_proto::events::v1::Event;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::sql::sql_store;

type Tx = Transaction<'static, Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    outbox: Outbox,
}

impl PgStore {
    pub async fn connect(url: &str, schema: &str) -> anyhow::Result<Self> {
        let pool = referral_common::db::connect_postgres(url, schema, 16).await?;
        // Migrate before the outbox relay starts reading its table.
        referral_common::db::migrate_postgres(&pool, &MIGRATOR).await?;
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        let outbox = Outbox::start(
            "incentive-svc.outbox-relay",
            pool.clone(),
            std::time::Duration::from_millis(200),
        );
        Self { pool, outbox }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        referral_common::db::migrate_postgres(&self.pool, &MIGRATOR).await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction holding this schema's ledger lock until it ends: ledger writes
    /// (bookings, state changes, payouts) happen one at a time, across replicas too.
    async fn begin_write(&self) -> sqlx::Result<Tx> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ledger'))")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn stage_in(tx: &mut Tx, event: &Event) -> sqlx::Result<()> {
        outbox::insert_pg(tx, event).await
    }

    /// The relay numbers under its own advisory lock, apart from the ledger lock: wake
    /// it at once.
    fn wake_relay(&self) {
        self.outbox.wake();
    }
}

sql_store!(PgStore, PgConnection, pg);
