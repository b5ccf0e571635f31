//! fraud-svc on SQLite (one file, WAL; writers take BEGIN IMMEDIATE). Assessments and
//! consumed events are written by the writer thread (sqlite_writer.rs); reads and case
//! resolution use the sqlx pool.
//!
//! WAL checkpoints run in the background (every half second, PASSIVE: never blocking a
//! writer) instead of inside whichever commit crosses SQLite's auto-checkpoint threshold,
//! which would pay the checkpoint's fsync on a request (a few ms at the p99 of
//! assessments). The automatic checkpoint stays as a backstop at a larger WAL size.

use std::{
    str::FromStr,
    sync::{Arc, Weak},
    time::Duration,
};

use referral_common::outbox::{self, EventLogStore, Outbox};
use referral_common::supervisor::until_shutdown;
use referral_proto::events::v1::Event;
use sqlx::{
    Sqlite, SqlitePool, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Notify, watch};

// `sql_store!` brings the store's types and `assess` into scope.
use super::{
    StoreError,
    sql::sql_store,
    sqlite_writer::{self, Writer},
};

type Tx = Transaction<'static, Sqlite>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long after a commit the outbox relay runs (events are numbered this much later).
const RELAY_DEBOUNCE: Duration = Duration::from_millis(2);
/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// SQLite's own checkpoint, as a backstop, once the WAL holds this many pages (~40 MB).
const AUTO_CHECKPOINT_PAGES: &str = "10000";
/// How long a writer waits for SQLite's write lock (the pool's and the writer thread's).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Runs the assessment path; shut down with the last clone of the store.
    writer: Arc<Writer>,
    outbox: Outbox,
    /// Coalesced wakes of the outbox relay.
    relay: Arc<Notify>,
    /// Stops the background tasks when the last clone of the store is dropped.
    _tasks: Arc<watch::Sender<()>>,
}

impl SqliteStore {
    /// Opens (creating) and migrates the file: the settings of
    /// `referral_common::db::connect_sqlite` (WAL, synchronous NORMAL, 30 s busy timeout,
    /// foreign keys) plus the larger auto-checkpoint threshold.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            // The writer thread opens the file on a connection of its own.
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
        let path = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        // Migrate before the outbox relay starts reading its table.
        referral_common::db::migrate_sqlite(&pool, &MIGRATOR).await?;
        // The writer's own connection to the same file, with the pool's settings.
        let writer = Writer::start(
            &path,
            &sqlite_writer::Settings {
                busy_timeout: BUSY_TIMEOUT,
                auto_checkpoint_pages: AUTO_CHECKPOINT_PAGES,
            },
        )?;
        let writer = Arc::new(writer);
        let relay_log = RelayLog {
            pool: pool.clone(),
            writer: Arc::downgrade(&writer),
        };
        let outbox = Outbox::start("fraud-svc.outbox-relay", relay_log, Duration::from_millis(200));
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
            writer,
            outbox,
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

    async fn stage(tx: &mut Tx, event: &Event) -> sqlx::Result<()> {
        outbox::insert_sqlite(tx, event).await
    }

    async fn write_assessment(&self, input: AssessInput, scoring: &Scoring) -> StoreResult<Assessed> {
        let scoring = scoring.clone();
        self.writer
            .run(move |conn| {
                sqlite_writer::in_transaction(conn, |tx| {
                    sqlite_writer::now(assess::assess_in(tx, input, &scoring))
                })
            })
            .await
    }

    async fn write_events(
        &self,
        source: &str,
        items: Vec<Consumed>,
        scoring: &Scoring,
    ) -> StoreResult<ApplySummary> {
        let (source, scoring) = (source.to_string(), scoring.clone());
        self.writer
            .run(move |conn| {
                sqlite_writer::in_transaction(conn, |tx| {
                    sqlite_writer::now(assess::apply_in(tx, &source, items, &scoring))
                })
            })
            .await
    }

    /// The relay numbers on the writer thread (see [`RelayLog`]); coalescing wakes numbers a
    /// burst of commits in one job, RELAY_DEBOUNCE later.
    fn wake_relay(&self) {
        self.relay.notify_one();
    }
}

sql_store!(SqliteStore, sqlite, "");

/// The outbox relay's log: numbering runs as a job of the writer thread, queued between
/// assessments, instead of racing them for SQLite's write lock from the pool (the loser
/// sleeps in SQLite's busy handler, 1 ms and up: a tail of the assessments' latency).
/// Reading stays on the pool. Holds the writer weakly: the store's last clone ends it.
#[derive(Clone)]
struct RelayLog {
    pool: SqlitePool,
    writer: Weak<Writer>,
}

impl EventLogStore for RelayLog {
    async fn assign_offsets(&self) -> sqlx::Result<i64> {
        let writer = self.writer.upgrade().ok_or(sqlx::Error::PoolClosed)?;
        writer
            .run(|conn| {
                sqlite_writer::in_transaction(conn, |tx| sqlite_writer::now(assess::number_outbox(tx)))
            })
            .await
            .map_err(|e| match e {
                StoreError::Db(e) => e,
                other => sqlx::Error::Io(std::io::Error::other(other)),
            })
    }

    async fn read_after(&self, after: i64, limit: i64) -> sqlx::Result<Vec<(i64, Vec<u8>)>> {
        self.pool.read_after(after, limit).await
    }
}

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
