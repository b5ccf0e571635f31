//! incentive-svc on SQLite (one file, WAL; writers take BEGIN IMMEDIATE, SQLite's one
//! write lock, which serialises ledger writes as Postgres's advisory lock does).

use std::time::Duration;

use referral_common::outbox::{self, Outbox};
use referral_proto::events::v1::Event;
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::sql::sql_store;

type Tx = Transaction<'static, Sqlite>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    outbox: Outbox,
}

impl SqliteStore {
    /// Opens (creating) and migrates the file.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = referral_common::db::connect_sqlite(url).await?;
        // Migrate before the outbox relay starts reading its table.
        referral_common::db::migrate_sqlite(&pool, &MIGRATOR).await?;
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: SqlitePool) -> Self {
        let outbox = Outbox::start(
            "incentive-svc.outbox-relay",
            pool.clone(),
            Duration::from_millis(200),
        );
        Self { pool, outbox }
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

    async fn stage_in(tx: &mut Tx, event: &Event) -> sqlx::Result<()> {
        outbox::insert_sqlite(tx, event).await
    }

    fn wake_relay(&self) {
        self.outbox.wake();
    }
}

sql_store!(SqliteStore, SqliteConnection, sqlite);
