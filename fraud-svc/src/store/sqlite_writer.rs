//! The SQLite store's writer: one thread owning one rusqlite connection, running each
//! assessment (or batch of consumed events) as one job in one transaction.
//!
//! Why: sqlx runs every SQLite statement on its connection's worker thread, so an assessment
//! of ~13 statements cost ~26 cross-thread hand-offs (futex wake-ups and context switches
//! were ~30 % of its CPU). Here a job costs two: the request in, the answer out. SQLite has
//! one writer anyway, so nothing is lost by queueing writes on one thread. Statements are
//! prepared once per connection (rusqlite's statement cache).
//!
//! Rows are written exactly as sqlx writes them, because sqlx reads them back and SQL compares
//! timestamps as text: see [`timestamp`].

use std::{panic::AssertUnwindSafe, path::Path, sync::mpsc, thread::JoinHandle, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{
    Connection, OpenFlags, Statement, TransactionBehavior,
    types::{ToSql, ToSqlOutput, Value, ValueRef},
};
use tokio::sync::oneshot;

use super::{
    StoreError, StoreResult,
    assess::{Arg, Db, Row},
};

/// The tracing target of one event per statement the writer runs (TRACE; the benchmark
/// counts them as it counts sqlx's `sqlx::query` events, BEGIN and COMMIT left out as sqlx
/// leaves them out on SQLite).
pub const STATEMENT_TARGET: &str = "fraud_svc::sqlite_statement";

/// Statements kept prepared: the assessment path has about twenty distinct texts (the
/// multi-row ones vary with their row count).
const STATEMENT_CACHE: usize = 64;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writer thread; dropping the last handle ends it (after the job it is running) and
/// closes its connection.
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// The per-connection settings the pool's connections have too.
pub(super) struct Settings<'a> {
    pub busy_timeout: Duration,
    pub auto_checkpoint_pages: &'a str,
}

impl Writer {
    /// Opens the (migrated) database file and starts the thread.
    pub(super) fn start(path: &Path, settings: &Settings<'_>) -> StoreResult<Self> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(settings.busy_timeout)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", settings.auto_checkpoint_pages)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("fraud-sqlite-writer".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    // A panicking job drops its answer (the caller gets an error) and rolls its
                    // transaction back; the writer goes on with the next one.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| StoreError::Encoding(format!("starting the SQLite writer thread: {e}")))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the writer thread and returns its answer.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = answer.send(work(conn));
        });
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or(StoreError::WriterStopped)?;
        answered.await.map_err(|_| StoreError::WriterStopped)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop once the running job is done.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `work` in one `BEGIN IMMEDIATE` transaction: committed if it succeeds, rolled back
/// (when the transaction is dropped) if it fails.
pub(super) fn in_transaction<T>(
    conn: &mut Connection,
    work: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done = work(&mut Tx(&tx))?;
    tx.commit()?;
    Ok(done)
}

/// Runs a [`Db`] future of the writer: its statements never wait, so it completes in one
/// poll on this thread.
pub(super) fn now<T>(work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    futures::executor::block_on(work)
}

/// The writer's connection inside its transaction.
pub(super) struct Tx<'c>(&'c Connection);

fn logged(sql: &str) {
    tracing::trace!(target: STATEMENT_TARGET, sql);
}

/// Binds `$N` parameters by name, as sqlx-sqlite does: SQLite numbers named parameters in
/// order of first appearance, which `$2 … $1` texts do not follow.
fn bind(stmt: &mut Statement<'_>, args: &[Arg<'_>]) -> StoreResult<()> {
    for i in 1..=stmt.parameter_count() {
        let arg = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| args.get(n.checked_sub(1)?))
            .ok_or_else(|| {
                StoreError::Encoding(format!("parameter {i} of a statement has no $N argument"))
            })?;
        stmt.raw_bind_parameter(i, arg)?;
    }
    Ok(())
}

impl Db for Tx<'_> {
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let mut stmt = self.0.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        logged(sql);
        Ok(stmt.raw_execute()? as u64)
    }

    async fn query<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        mut each: impl FnMut(&dyn Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        logged(sql);
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(each(row)?);
        }
        Ok(out)
    }
}

/// A `DateTime<Utc>` as sqlx-sqlite stores it (its `Encode` impl): RFC 3339 with `+00:00`,
/// as many fraction digits as needed. rusqlite's own chrono support writes a space instead of
/// the `T`, which would sort wrongly against sqlx's rows in text comparisons.
pub(super) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A timestamp as [`timestamp`] (and sqlx) writes it.
fn parse_timestamp(text: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Encoding(format!("timestamp {text:?}: {e}")))
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Text(s) | Arg::OptText(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::OptText(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            Arg::Int(n) => ToSqlOutput::Owned(Value::Integer(n)),
            Arg::Real(x) => ToSqlOutput::Owned(Value::Real(x)),
            Arg::Time(t) => ToSqlOutput::Owned(Value::Text(timestamp(t))),
            Arg::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> StoreResult<String> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> StoreResult<i64> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        Ok(self.get(i)?)
    }
    fn real(&self, i: usize) -> StoreResult<f64> {
        Ok(self.get(i)?)
    }
    fn time(&self, i: usize) -> StoreResult<DateTime<Utc>> {
        let text = self
            .get_ref(i)?
            .as_str()
            .map_err(|e| StoreError::Encoding(format!("timestamp column {i}: {e}")))?;
        parse_timestamp(text)
    }
}
