//! Storage that stays bounded: the retention job every service runs (issue #16).
//!
//! A service hands [`RetentionJob`] its own [`Rule`]s (personal data of closed rows
//! anonymised, old rows purged; each service keeps them in `store/retention.rs`) and the job
//! adds the rules every service shares:
//!
//! - **outbox**: rows at or below the lowest offset every durable consumer of this log
//!   reported on `EventLog/Subscribe` (table `event_log_consumers`, see [`record_consumer`])
//!   and older than `OUTBOX_RETENTION_GRACE` (7 days) are deleted, never the newest row (the
//!   relay numbers new rows after the highest offset left). A consumer unseen for longer
//!   than `OUTBOX_CONSUMER_EXPIRY` stops holding the log back; unset (the default), every
//!   consumer ever seen holds it for ever. With no durable consumer recorded, nothing is
//!   purged. What a replay from offset 0 (analytics `rebuild`) then reaches is what remains:
//!   the last grace period of events plus whatever a slow consumer still holds.
//! - **processed_events** (consumer dedupe ids): rows older than `DEDUPE_WINDOW` (7 days).
//!   Exactly-once does not rest on them alone: a consumer reads each producer's log in offset
//!   order and stores its offset in the same transaction as its effects, and
//!   [`crate::consumer::deliver`] drops every event at or below that committed offset (the
//!   high-water mark per consumer and producer) before the sink sees it, whatever
//!   `processed_events` still holds. The ids only cover replicas racing on one batch.
//! - **idempotency_records**: rows past their expiry (24 h after the first answer).
//!
//! Every tick does bounded work: at most `RETENTION_MAX_BATCHES` statements of
//! `RETENTION_BATCH` rows per rule, each its own statement (no half-written row: a row is
//! anonymised or purged whole, or not at all). With `RETENTION_DRY_RUN` the job only counts
//! what it would change, logs it and sets `retention_due_rows`; otherwise it counts what it
//! changed in `retention_rows_total{service,kind,action}`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, SqlitePool};

use crate::{config::parse_duration, server::Shutdown, supervisor::Supervisor};

pub mod consumers;
#[cfg(test)]
mod tests;

pub use consumers::{DURABLE_CONSUMER, record_consumer};

/// The shared migration (version 75 in [`crate::db::SHARED`]).
pub const POSTGRES_SCHEMA: &str = include_str!("postgres.sql");
pub const SQLITE_SCHEMA: &str = include_str!("sqlite.sql");

/// Retention settings every service takes (flags and environment).
#[derive(clap::Args, Clone, Debug)]
pub struct RetentionArgs {
    /// Only count and report what retention would anonymise or purge; change nothing.
    #[arg(
        long = "retention-dry-run",
        env = "RETENTION_DRY_RUN",
        default_value_t = false
    )]
    pub dry_run: bool,
    /// How often the retention job runs.
    #[arg(long = "retention-interval", env = "RETENTION_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub interval: Duration,
    /// Rows per statement.
    #[arg(long = "retention-batch", env = "RETENTION_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// Statements per rule and tick (the work one tick may do is batch x this).
    #[arg(long = "retention-max-batches", env = "RETENTION_MAX_BATCHES", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_batches: u32,
    /// Personal data of closed rows (closed invitations, signups, ...) is anonymised after this.
    #[arg(long = "retention-anonymise-after", env = "RETENTION_ANONYMISE_AFTER", default_value = "365d", value_parser = parse_duration)]
    pub anonymise_after: Duration,
    /// Rows older than this are purged (3 years).
    #[arg(long = "retention-purge-after", env = "RETENTION_PURGE_AFTER", default_value = "1095d", value_parser = parse_duration)]
    pub purge_after: Duration,
    /// A click's IP, user agent and device are dropped this long after its attribution
    /// window closed.
    #[arg(long = "retention-click-grace", env = "RETENTION_CLICK_GRACE", default_value = "7d", value_parser = parse_duration)]
    pub click_grace: Duration,
    /// Outbox rows every consumer has passed are kept this long before they are purged.
    #[arg(long = "outbox-retention-grace", env = "OUTBOX_RETENTION_GRACE", default_value = "7d", value_parser = parse_duration)]
    pub outbox_grace: Duration,
    /// A consumer of this service's log unseen this long stops holding the outbox back.
    /// Unset: every consumer ever seen holds it (a stopped consumer then blocks purging).
    #[arg(long = "outbox-consumer-expiry", env = "OUTBOX_CONSUMER_EXPIRY", value_parser = parse_duration)]
    pub outbox_consumer_expiry: Option<Duration>,
    /// How long consumer dedupe ids (processed_events) are kept.
    #[arg(long = "dedupe-window", env = "DEDUPE_WINDOW", default_value = "7d", value_parser = parse_duration)]
    pub dedupe_window: Duration,
}

impl Default for RetentionArgs {
    fn default() -> Self {
        Self {
            dry_run: false,
            interval: Duration::from_secs(3600),
            batch: 500,
            max_batches: 20,
            anonymise_after: Duration::from_secs(365 * 86_400),
            purge_after: Duration::from_secs(1095 * 86_400),
            click_grace: Duration::from_secs(7 * 86_400),
            outbox_grace: Duration::from_secs(7 * 86_400),
            outbox_consumer_expiry: None,
            dedupe_window: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Runs `$body` with `$pool` bound to the pool of either engine (the same SQL text on both).
#[macro_export]
macro_rules! on_retention_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::retention::RetentionDb::Postgres($pool) => $body,
            $crate::retention::RetentionDb::Sqlite($pool) => $body,
        }
    };
}

/// The database a service's retention runs on.
#[derive(Clone)]
pub enum RetentionDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl From<PgPool> for RetentionDb {
    fn from(pool: PgPool) -> Self {
        RetentionDb::Postgres(pool)
    }
}

impl From<SqlitePool> for RetentionDb {
    fn from(pool: SqlitePool) -> Self {
        RetentionDb::Sqlite(pool)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Personal fields overwritten (`pii::TOMBSTONE`, or emptied); the row stays for counts.
    Anonymise,
    /// Rows deleted.
    Purge,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Anonymise => "anonymise",
            Action::Purge => "purge",
        }
    }
}

/// A second instant some rules compare with (`$2` of `count`, `$3` of `apply`).
#[derive(Clone, Copy, Debug)]
pub enum Also {
    /// `now - age`.
    Age(Duration),
    /// The earliest storable instant (1970): everything is after it.
    Epoch,
}

/// One kind of data and what happens to it once it is `age` old.
///
/// `count` is a `SELECT count(*)` of the rows due, `$1` the cutoff (`now - age`); `apply`
/// changes at most `$2` of them (`... WHERE key IN (SELECT key ... LIMIT $2)`) and must
/// leave a changed row no longer due, so ticks make progress and end. With `also`, both
/// take that instant too (`$2` of `count`, `$3` of `apply`).
#[derive(Clone, Debug)]
pub struct Rule {
    pub kind: &'static str,
    pub action: Action,
    pub age: Duration,
    pub count: &'static str,
    pub apply: &'static str,
    pub also: Option<Also>,
}

/// What one rule did (or, dry, would do) in one tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kind: &'static str,
    pub action: Action,
    /// Rows changed, or (dry run) rows due.
    pub rows: u64,
    pub dry_run: bool,
    /// True when the tick stopped at `max_batches` with rows still due.
    pub more: bool,
}

/// The rules every service shares (see the module documentation).
pub fn shared_rules(args: &RetentionArgs) -> Vec<Rule> {
    vec![
        Rule {
            kind: "outbox",
            action: Action::Purge,
            age: args.outbox_grace,
            count: const_format_outbox::COUNT,
            apply: const_format_outbox::APPLY,
            also: Some(match args.outbox_consumer_expiry {
                Some(d) => Also::Age(d),
                None => Also::Epoch,
            }),
        },
        Rule {
            kind: "processed_events",
            action: Action::Purge,
            age: args.dedupe_window,
            count: "SELECT count(*) FROM processed_events WHERE processed_at < $1",
            apply: "DELETE FROM processed_events WHERE event_id IN
                    (SELECT event_id FROM processed_events WHERE processed_at < $1 ORDER BY processed_at LIMIT $2)",
            also: None,
        },
        Rule {
            kind: "idempotency_records",
            action: Action::Purge,
            age: Duration::ZERO,
            count: "SELECT count(*) FROM idempotency_records WHERE expires_at < $1",
            apply: "DELETE FROM idempotency_records WHERE slot IN
                    (SELECT slot FROM idempotency_records WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
            also: None,
        },
    ]
}

/// The outbox rule's SQL: due are numbered rows older than the grace, below the newest
/// offset, at or below the lowest position of the consumers seen since `$2` (count) / `$3`
/// (delete). No consumer recorded: `MIN` is NULL and nothing is due.
mod const_format_outbox {
    pub const COUNT: &str = "SELECT count(*) FROM outbox WHERE log_offset IS NOT NULL AND created_at < $1
  AND log_offset < (SELECT MAX(log_offset) FROM outbox)
  AND log_offset <= (SELECT MIN(acked_offset) FROM event_log_consumers WHERE seen_at >= $2)";
    pub const APPLY: &str = "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE log_offset IS NOT NULL AND created_at < $1
  AND log_offset < (SELECT MAX(log_offset) FROM outbox)
  AND log_offset <= (SELECT MIN(acked_offset) FROM event_log_consumers WHERE seen_at >= $3)
  ORDER BY log_offset LIMIT $2)";
}

/// One service's retention job: its own rules and the shared ones.
#[derive(Clone)]
pub struct RetentionJob {
    service: &'static str,
    db: RetentionDb,
    rules: Vec<Rule>,
    dry_run: bool,
    batch: i64,
    max_batches: u32,
    interval: Duration,
}

impl RetentionJob {
    pub fn new(
        service: &'static str,
        db: impl Into<RetentionDb>,
        args: &RetentionArgs,
        own: Vec<Rule>,
    ) -> Self {
        let mut rules = own;
        rules.extend(shared_rules(args));
        Self {
            service,
            db: db.into(),
            rules,
            dry_run: args.dry_run,
            batch: i64::from(args.batch),
            max_batches: args.max_batches,
            interval: args.interval,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Runs every rule once as of `now`.
    pub async fn tick(&self, now: DateTime<Utc>) -> sqlx::Result<Vec<Outcome>> {
        let mut out = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let cutoff = before(now, rule.age);
            let also = rule.also.map(|a| match a {
                Also::Age(d) => before(now, d),
                Also::Epoch => DateTime::<Utc>::UNIX_EPOCH,
            });
            let outcome = if self.dry_run {
                let due = self.count(rule, cutoff, also).await?;
                Outcome {
                    kind: rule.kind,
                    action: rule.action,
                    rows: due,
                    dry_run: true,
                    more: false,
                }
            } else {
                let (mut rows, mut more) = (0u64, false);
                for n in 0..self.max_batches {
                    let changed = self.apply(rule, cutoff, also).await?;
                    rows += changed;
                    if changed < self.batch as u64 {
                        break;
                    }
                    more = n + 1 == self.max_batches;
                    // Let the service's own writers in between batches.
                    tokio::task::yield_now().await;
                }
                Outcome {
                    kind: rule.kind,
                    action: rule.action,
                    rows,
                    dry_run: false,
                    more,
                }
            };
            self.report(&outcome);
            out.push(outcome);
        }
        Ok(out)
    }

    fn report(&self, o: &Outcome) {
        let labels = [
            ("service", self.service.to_string()),
            ("kind", o.kind.to_string()),
            ("action", o.action.as_str().to_string()),
        ];
        if o.dry_run {
            metrics::gauge!("retention_due_rows", &labels).set(o.rows as f64);
            if o.rows > 0 {
                tracing::info!(
                    service = self.service,
                    kind = o.kind,
                    action = o.action.as_str(),
                    rows = o.rows,
                    "retention dry run: would change rows"
                );
            }
        } else {
            metrics::counter!("retention_rows_total", &labels).increment(o.rows);
            if o.rows > 0 {
                tracing::info!(
                    service = self.service,
                    kind = o.kind,
                    action = o.action.as_str(),
                    rows = o.rows,
                    more = o.more,
                    "retention changed rows"
                );
            }
        }
    }

    async fn count(
        &self,
        rule: &Rule,
        cutoff: DateTime<Utc>,
        also: Option<DateTime<Utc>>,
    ) -> sqlx::Result<u64> {
        let n: i64 = crate::on_retention_db!(&self.db, pool => {
            let q = sqlx::query_scalar(rule.count).bind(cutoff);
            match also {
                Some(a) => q.bind(a),
                None => q,
            }
            .fetch_one(pool)
            .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn apply(
        &self,
        rule: &Rule,
        cutoff: DateTime<Utc>,
        also: Option<DateTime<Utc>>,
    ) -> sqlx::Result<u64> {
        Ok(crate::on_retention_db!(&self.db, pool => {
            let q = sqlx::query(rule.apply).bind(cutoff).bind(self.batch);
            match also {
                Some(a) => q.bind(a),
                None => q,
            }
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Runs the job every `interval` under `tasks` as `{service}.retention` until shutdown;
    /// a failed tick fails the attempt (restarted with backoff, counted, in readiness).
    pub fn supervise(self, tasks: &Supervisor, shutdown: Shutdown) {
        let name = format!("{}.retention", self.service);
        tasks.spawn(name, move || {
            let (job, stop) = (self.clone(), shutdown.clone());
            async move {
                loop {
                    job.tick(crate::ids::now()).await?;
                    tokio::select! {
                        _ = tokio::time::sleep(job.interval) => {}
                        _ = stop.clone().wait() => return Ok::<(), sqlx::Error>(()),
                    }
                }
            }
        });
    }
}

fn before(now: DateTime<Utc>, age: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .max(DateTime::<Utc>::UNIX_EPOCH)
}

/// Runs a retention case on a fresh SQLite file and, when TEST_DATABASE_URL is set, on a
/// fresh Postgres schema (dropped after); `sqlite(url)` and `postgres(url, schema)` open and
/// migrate the service's own store there. For the services' tests of their rules.
pub async fn on_both_engines<FS, FP, FC>(
    test: &str,
    sqlite: impl FnOnce(String) -> FS,
    postgres: impl FnOnce(String, String) -> FP,
    case: impl Fn(RetentionDb) -> FC,
) where
    FS: Future<Output = RetentionDb>,
    FP: Future<Output = RetentionDb>,
    FC: Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!("{test}-{}", uuid::Uuid::now_v7().simple()));
    case(sqlite(format!("sqlite://{}/store.db", dir.display())).await).await;
    let _ = std::fs::remove_dir_all(dir);
    let Some(url) = crate::db::test_database_url(test) else {
        return;
    };
    let schema = crate::db::test_schema("retention");
    case(postgres(url.clone(), schema.clone()).await).await;
    crate::db::drop_test_schema(&url, &schema).await;
}
