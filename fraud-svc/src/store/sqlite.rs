//! fraud-svc on SQLite (one file, WAL; writers take BEGIN IMMEDIATE, SQLite's one-writer
//! lock, so assessments happen one at a time).
//!
//! WAL checkpoints run in the background (every half second, PASSIVE: never blocking a
//! writer) instead of inside whichever commit crosses SQLite's auto-checkpoint threshold,
//! which would pay the checkpoint's fsync on a request (a few ms at the p99 of
//! assessments). The automatic checkpoint stays as a backstop at a larger WAL size.

use std::{str::FromStr, sync::Arc, time::Duration};

use referral_common::outbox::{self, Outbox};
use referral_common::pii::PiiKeys;
use referral_common::supervisor::until_shutdown;
use sqlx::{
    Sqlite, SqlitePool, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Notify, watch};

// `sql_store!` brings the store's types into scope.
use super::sql::{assessment_cols, case_cols, sql_store};

type Tx = Transaction<'static, Sqlite>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long after a commit the outbox relay runs (events are numbered this much later).
const RELAY_DEBOUNCE: Duration = Duration::from_millis(2);
/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// SQLite's own checkpoint, as a backstop, once the WAL holds this many pages (~40 MB).
const AUTO_CHECKPOINT_PAGES: &str = "10000";
/// How long a writer waits for SQLite's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    outbox: Outbox,
    /// Seals and looks up personal data (nothing is stored in plaintext).
    pii: PiiKeys,
    /// Coalesced wakes of the outbox relay.
    relay: Arc<Notify>,
    /// Stops the background tasks when the last clone of the store is dropped.
    _tasks: Arc<watch::Sender<()>>,
}

impl SqliteStore {
    /// Opens (creating) and migrates the file: the settings of
    /// `referral_common::db::connect_sqlite` (WAL, synchronous NORMAL, 30 s busy timeout,
    /// foreign keys) plus the larger auto-checkpoint threshold.
    pub async fn connect(url: &str, pii: PiiKeys) -> anyhow::Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            // Every pooled connection would open a database of its own.
            anyhow::bail!("FRAUD_DATABASE_URL: fraud-svc needs a SQLite file, not an in-memory database");
        }
        if let Some(path) = url.strip_prefix("sqlite:").map(|p| p.trim_start_matches("//"))
            && let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", AUTO_CHECKPOINT_PAGES);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        // Migrate before the outbox relay starts reading its table.
        referral_common::db::migrate_sqlite(&pool, &MIGRATOR).await?;
        let outbox = Outbox::start("fraud-svc.outbox-relay", pool.clone(), Duration::from_millis(200));
        let (stop, stopped) = watch::channel(());
        let relay = Arc::new(Notify::new());
        let tasks = outbox.supervisor().clone();
        let (p, s) = (pool.clone(), stopped.clone());
        tasks.spawn("fraud-svc.wal-checkpoints", move || {
            until_shutdown(checkpoints(p.clone(), s.clone()))
        });
        let (o, r) = (outbox.clone(), relay.clone());
        tasks.spawn("fraud-svc.relay-debounce", move || {
            until_shutdown(debounced_relay(o.clone(), r.clone(), stopped.clone()))
        });
        Ok(Self {
            pool,
            outbox,
            pii,
            relay,
            _tasks: Arc::new(stop),
        })
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

    /// Coalescing wakes numbers a burst of commits in one relay pass, RELAY_DEBOUNCE later
    /// (the relay takes SQLite's write lock too).
    fn wake_relay(&self) {
        self.relay.notify_one();
    }
}

sql_store!(SqliteStore, Sqlite, sqlx::SqliteConnection, sqlite, "");

/// PASSIVE checkpoints off the request path until the store is dropped or the pool closed.
async fn checkpoints(pool: SqlitePool, mut stopped: watch::Receiver<()>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            _ = stopped.changed() => return,
        }
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::debug!(error = %e, "background checkpoint failed; SQLite's own will run");
        }
    }
}

/// Wakes the relay once per burst of commits until the store is dropped.
async fn debounced_relay(outbox: Outbox, wakes: Arc<Notify>, mut stopped: watch::Receiver<()>) {
    loop {
        tokio::select! {
            _ = wakes.notified() => {}
            _ = stopped.changed() => return,
        }
        tokio::time::sleep(RELAY_DEBOUNCE).await;
        outbox.wake();
    }
}
