//! The transactional outbox and the `EventLog/Subscribe` server.
//!
//! A producing service inserts its events into its own `outbox` table in the same
//! transaction as its business rows (`insert_pg` / `insert_sqlite`). Offsets are NOT taken
//! from a sequence at insert time: in Postgres a sequence value is handed out before commit,
//! so a reader following `offset > last` could pass over a row that commits late. Instead one
//! relay task per service (serialised across replicas by an advisory lock) numbers committed
//! rows after the fact, so offset order is commit-visibility order and no row is skipped.
//!
//! Every service's migrations create the same table:
//! `outbox(seq <auto>, event_id TEXT UNIQUE, log_offset BIGINT UNIQUE NULL, event_type TEXT,
//! payload BYTEA|BLOB, created_at)`.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use referral_proto::events::v1::{
    Event, Heartbeat, SubscribeRequest, SubscribeResponse,
    event_log_server::{EventLog, EventLogServer},
    subscribe_response::Item,
};
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{events, ids, supervisor::Supervisor};

/// Stages one event: its id, type, encoded payload and creation time, in that order.
pub const INSERT: &str =
    "INSERT INTO outbox (event_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4)";

/// Stages an event in the caller's Postgres transaction.
pub async fn insert_pg(conn: &mut PgConnection, event: &Event) -> sqlx::Result<()> {
    sqlx::query(INSERT)
        .bind(&event.id)
        .bind(events::event_type(event))
        .bind(events::encode(event))
        .bind(ids::now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Stages an event in the caller's SQLite transaction.
pub async fn insert_sqlite(conn: &mut SqliteConnection, event: &Event) -> sqlx::Result<()> {
    sqlx::query(INSERT)
        .bind(&event.id)
        .bind(events::event_type(event))
        .bind(events::encode(event))
        .bind(ids::now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Rows per multi-row outbox INSERT: 4 binds each stays far below both engines' bind limits.
const STAGE_CHUNK: usize = 1_000;

/// Stages many events in the caller's Postgres transaction with multi-row INSERTs.
pub async fn insert_many_pg(conn: &mut PgConnection, events: &[Event]) -> sqlx::Result<()> {
    for chunk in events.chunks(STAGE_CHUNK) {
        staging_query::<sqlx::Postgres>(chunk)
            .build()
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Stages many events in the caller's SQLite transaction with multi-row INSERTs.
pub async fn insert_many_sqlite(conn: &mut SqliteConnection, events: &[Event]) -> sqlx::Result<()> {
    for chunk in events.chunks(STAGE_CHUNK) {
        staging_query::<sqlx::Sqlite>(chunk)
            .build()
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn staging_query<DB>(events: &[Event]) -> sqlx::QueryBuilder<DB>
where
    DB: sqlx::Database,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> chrono::DateTime<chrono::Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let now = ids::now();
    let mut q = sqlx::QueryBuilder::new("INSERT INTO outbox (event_id, event_type, payload, created_at) ");
    q.push_values(events, |mut row, event| {
        row.push_bind(event.id.as_str())
            .push_bind(events::event_type(event))
            .push_bind(events::encode(event))
            .push_bind(now);
    });
    q
}

/// Numbers committed rows that have no offset yet, in insertion order, after the highest
/// offset given so far.
pub const ASSIGN: &str = "WITH base AS (SELECT COALESCE(MAX(log_offset), 0) AS m FROM outbox),
     pending AS (SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) AS rn
                 FROM outbox WHERE log_offset IS NULL ORDER BY seq LIMIT 10000)
UPDATE outbox SET log_offset = (SELECT m FROM base) + pending.rn
FROM pending WHERE outbox.seq = pending.seq";
/// The newest offset given.
pub const HEAD: &str = "SELECT COALESCE(MAX(log_offset), 0) FROM outbox";
const READ: &str =
    "SELECT log_offset, payload FROM outbox WHERE log_offset > $1 ORDER BY log_offset LIMIT $2";

/// What the relay and the log server need from a service's database.
pub trait EventLogStore: Clone + Send + Sync + 'static {
    /// Gives committed unnumbered rows their offsets; returns the newest offset.
    fn assign_offsets(&self) -> impl Future<Output = sqlx::Result<i64>> + Send;
    /// Events after `after`, oldest first, at most `limit`.
    fn read_after(
        &self,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = sqlx::Result<Vec<(i64, Vec<u8>)>>> + Send;
    /// Stores a durable consumer's position (see [`crate::retention::consumers`]).
    fn record_consumer(
        &self,
        consumer: &str,
        acked_offset: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
}

impl EventLogStore for PgPool {
    async fn assign_offsets(&self) -> sqlx::Result<i64> {
        let mut tx = self.begin().await?;
        // One numbering relay at a time across replicas of this service.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.outbox'))")
            .execute(&mut *tx)
            .await?;
        sqlx::query(ASSIGN).execute(&mut *tx).await?;
        let head: i64 = sqlx::query_scalar(HEAD).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn read_after(&self, after: i64, limit: i64) -> sqlx::Result<Vec<(i64, Vec<u8>)>> {
        sqlx::query_as(READ).bind(after).bind(limit).fetch_all(self).await
    }

    async fn record_consumer(&self, consumer: &str, acked_offset: i64) -> sqlx::Result<()> {
        let db = crate::retention::RetentionDb::Postgres(self.clone());
        crate::retention::record_consumer(&db, consumer, acked_offset, ids::now()).await
    }
}

impl EventLogStore for SqlitePool {
    async fn assign_offsets(&self) -> sqlx::Result<i64> {
        // SQLite has one writer: an IMMEDIATE transaction is the lock.
        let mut tx = self.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(ASSIGN).execute(&mut *tx).await?;
        let head: i64 = sqlx::query_scalar(HEAD).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn read_after(&self, after: i64, limit: i64) -> sqlx::Result<Vec<(i64, Vec<u8>)>> {
        sqlx::query_as(READ).bind(after).bind(limit).fetch_all(self).await
    }

    async fn record_consumer(&self, consumer: &str, acked_offset: i64) -> sqlx::Result<()> {
        let db = crate::retention::RetentionDb::Sqlite(self.clone());
        crate::retention::record_consumer(&db, consumer, acked_offset, ids::now()).await
    }
}

/// The running relay: poke it after a commit; watch the head offset move.
#[derive(Clone)]
pub struct Outbox {
    wake: Arc<Notify>,
    head: watch::Receiver<i64>,
    tasks: Supervisor,
}

impl Outbox {
    /// Starts numbering in the background as the supervised task `name` (e.g.
    /// `invite-svc.outbox-relay`): woken by `wake()`, and every `poll` regardless (other
    /// replicas' commits, rows left by a crash). It ends when every `head()` receiver is gone.
    pub fn start<S: EventLogStore>(name: &str, store: S, poll: Duration) -> Outbox {
        let wake = Arc::new(Notify::new());
        let (tx, head) = watch::channel(0);
        let tx = Arc::new(tx);
        let tasks = Supervisor::new();
        let notified = wake.clone();
        tasks.spawn(name, move || {
            relay(store.clone(), tx.clone(), notified.clone(), poll)
        });
        Outbox { wake, head, tasks }
    }

    /// The supervisor of the relay (and of other tasks the owning store runs), for the
    /// service's readiness.
    pub fn supervisor(&self) -> &Supervisor {
        &self.tasks
    }

    /// Call after committing a transaction that staged events.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn head(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    /// Waits until every event committed before this call has an offset (tests, shutdown).
    pub async fn flush(&self) {
        self.wake();
        let mut rx = self.head.clone();
        let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
    }
}

/// The relay loop; `Ok` once nobody is left to serve (the service has shut down).
async fn relay<S: EventLogStore>(
    store: S,
    tx: Arc<watch::Sender<i64>>,
    notified: Arc<Notify>,
    poll: Duration,
) -> Result<(), std::convert::Infallible> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.assign_offsets().await {
            Ok(h) => {
                backoff = Duration::from_millis(100);
                tx.send_if_modified(|cur| {
                    let changed = *cur != h;
                    *cur = h;
                    changed
                });
            }
            Err(e) => {
                if tx.is_closed() {
                    return Ok(());
                }
                tracing::warn!(error = %e, "outbox relay failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
        tokio::select! {
            _ = notified.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Serves `referral.events.v1.EventLog/Subscribe` from a service's outbox.
#[derive(Clone)]
pub struct EventLogService<S> {
    store: S,
    head: watch::Receiver<i64>,
    heartbeat: Duration,
    /// Ends open streams on shutdown so they never hold up the drain.
    stop: crate::server::Shutdown,
}

pub const PAGE: i64 = 500;

/// `after_offset` of a subscription that wants only events committed from now on.
pub const FROM_HEAD: i64 = -1;

impl<S: EventLogStore> EventLogService<S> {
    pub fn new(store: S, outbox: &Outbox, heartbeat: Duration, stop: crate::server::Shutdown) -> Self {
        Self {
            store,
            head: outbox.head(),
            heartbeat,
            stop,
        }
    }

    pub fn into_server(self) -> EventLogServer<Self> {
        EventLogServer::new(self)
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: EventLogStore> EventLog for EventLogService<S> {
    async fn subscribe(&self, req: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        crate::auth::Principal::of(&req)?.require_admin()?;
        let durable = req
            .metadata()
            .get(crate::retention::DURABLE_CONSUMER)
            .is_some_and(|v| v.as_bytes() == b"1");
        let req = req.into_inner();
        if req.after_offset < FROM_HEAD {
            return Err(crate::ApiError::invalid("afterOffset", "must be -1 (the head) or more").into());
        }
        // A durable consumer's position holds back the outbox purge (retention): recorded
        // before anything is sent, or the subscription fails and the consumer retries.
        if durable && req.after_offset >= 0 {
            if !crate::retention::consumers::valid_consumer_name(&req.consumer) {
                return Err(crate::ApiError::invalid(
                    "consumer",
                    "a durable consumer is named by 1 to 64 ASCII letters, digits, '-', '_' or '.'",
                )
                .into());
            }
            self.store
                .record_consumer(&req.consumer, req.after_offset)
                .await
                .map_err(|e| Status::unavailable(format!("event log unavailable: {e}")))?;
        }
        // Bounded: a slow reader holds back only its own producer task.
        let (tx, rx) = mpsc::channel(PAGE as usize);
        let (store, mut head, heartbeat) = (self.store.clone(), self.head.clone(), self.heartbeat);
        let consumer = req.consumer.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            // A live tail (analytics' feed) starts at the head: no replay.
            let mut cursor = if req.after_offset == FROM_HEAD {
                *head.borrow_and_update()
            } else {
                req.after_offset
            };
            let stopped = stop.wait();
            tokio::pin!(stopped);
            tracing::debug!(%consumer, cursor, "subscriber attached");
            loop {
                let rows = match store.read_after(cursor, PAGE).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::unavailable(format!("event log read failed: {e}"))))
                            .await;
                        return;
                    }
                };
                let full = rows.len() as i64 == PAGE;
                for (offset, payload) in rows {
                    let item = match events::decode(&payload, offset) {
                        Ok(event) => Ok(SubscribeResponse {
                            item: Some(Item::Event(event)),
                        }),
                        Err(e) => Err(Status::data_loss(format!(
                            "event at offset {offset} is unreadable: {e}"
                        ))),
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                    cursor = offset;
                }
                if full {
                    continue;
                }
                // Caught up: wait for the relay to move the head, or send a heartbeat.
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(heartbeat) => {
                        let hb = Heartbeat { head_offset: *head.borrow(), at: Some(ids::to_ts(ids::now())) };
                        if tx.send(Ok(SubscribeResponse { item: Some(Item::Heartbeat(hb)) })).await.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                    _ = &mut stopped => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Decodes a stream item into its event, if it is one.
pub fn event_of(resp: SubscribeResponse) -> Option<Event> {
    match resp.item {
        Some(Item::Event(e)) => Some(e),
        _ => None,
    }
}
