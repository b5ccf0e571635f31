//! Consuming another service's event log, effectively once.
//!
//! The consumer subscribes from the offset its own database last stored, hands events to an
//! [`EventSink`] in batches, and the sink writes its effects, the new offset and the ids of
//! the events it applied in ONE transaction (helpers below). A crash between two batches
//! replays from the stored offset; a duplicate id is dropped. Disconnects reconnect with
//! exponential backoff.
//!
//! A batch that fails (an error or a panic in the sink) is applied again one event at a
//! time, with backoff, so the events that can be applied are; one that fails
//! `CONSUMER_PARK_AFTER` times in a row is parked (see [`crate::parked`]) and the consumer
//! goes on behind it, instead of retrying it for ever while every later event waits.
//!
//! Exactly once without keeping every id: a source log is read in offset order and the
//! offset is committed with the effects, so [`deliver`] drops every event at or below the
//! committed offset (this consumer's high-water mark for that producer) before the sink
//! sees it. `processed_events` (pruned after the dedupe window by the retention job) only
//! has to catch what races past that check: replicas applying the same fresh batch.
//! Parked events are re-applied through [`crate::parked`], not through [`deliver`].
//!
//! The subscription is renewed every [`RESUBSCRIBE_AFTER`] (at a batch boundary) so the
//! producer learns how far this consumer has committed and can purge its outbox below that.

use std::{sync::Arc, time::Duration};

use referral_proto::events::v1::{Event, SubscribeRequest, event_log_client::EventLogClient};
use sqlx::{PgConnection, SqliteConnection};
use tokio::sync::watch;
use tonic::{codegen::InterceptedService, transport::Channel};

use crate::{
    auth::ServiceCredentials,
    ids,
    parked::{NewParked, Parking},
};

/// Where a consumer's effects go.
pub trait EventSink: Send + Sync + 'static {
    /// The offset of the last event applied from `source` (0 if none).
    fn last_offset(&self, source: &str) -> impl Future<Output = anyhow::Result<i64>> + Send;
    /// Applies a batch and stores the new offset in the same transaction.
    fn apply(&self, source: &str, events: Vec<Event>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How to reach and read one source log.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// Name of the source log (invite, fraud, incentive), the key of the stored offset.
    pub source: String,
    /// Who reads, for the producer's logs.
    pub consumer: String,
    pub channel: Channel,
    pub credentials: ServiceCredentials,
    pub max_batch: usize,
    pub max_backoff: Duration,
    /// Where events that keep failing are parked, and the sink registered for retries.
    pub parking: Parking,
}

/// How long one subscription is kept before it is renewed from the stored offset, which
/// tells the producer this consumer's position (see [`crate::retention::consumers`]).
pub const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(300);

/// The first wait before an event of a failed batch is applied on its own; doubled after
/// each failure of that event, up to `max_backoff`.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// A test-only fault: called with (consumer, source, event) before the sink applies an
/// event; an error or a panic counts as the sink failing on it. Set only by tests (it is
/// not a flag: no input reaches it); empty in production.
#[derive(Clone, Default)]
pub struct ConsumerFault(Option<FaultFn>);

type FaultFn = Arc<dyn Fn(&str, &str, &Event) -> anyhow::Result<()> + Send + Sync>;

impl ConsumerFault {
    pub fn new(f: impl Fn(&str, &str, &Event) -> anyhow::Result<()> + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    pub fn check(&self, consumer: &str, source: &str, event: &Event) -> anyhow::Result<()> {
        match &self.0 {
            Some(f) => f(consumer, source, event),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for ConsumerFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ConsumerFault(set)"
        } else {
            "ConsumerFault(none)"
        })
    }
}

/// A sink shared by the attempts of a supervised consumer.
impl<S: EventSink> EventSink for std::sync::Arc<S> {
    fn last_offset(&self, source: &str) -> impl Future<Output = anyhow::Result<i64>> + Send {
        (**self).last_offset(source)
    }
    fn apply(&self, source: &str, events: Vec<Event>) -> impl Future<Output = anyhow::Result<()>> + Send {
        (**self).apply(source, events)
    }
}

/// Starts [`run`] under `tasks` as `name` (e.g. `fraud-svc.consumer.invite`): a panic in
/// the sink restarts the consumer from its stored offset instead of ending it for ever.
pub fn supervise<S: EventSink>(
    tasks: &crate::supervisor::Supervisor,
    name: impl Into<String>,
    config: ConsumerConfig,
    sink: S,
    shutdown: watch::Receiver<bool>,
) {
    let sink = std::sync::Arc::new(sink);
    config
        .parking
        .register(&config.consumer, &config.source, sink.clone());
    tasks.spawn(name, move || {
        crate::supervisor::until_shutdown(run(config.clone(), sink.clone(), shutdown.clone()))
    });
}

/// Runs until `shutdown` turns true: subscribe, apply in batches, reconnect on failure.
pub async fn run<S: EventSink>(config: ConsumerConfig, sink: S, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let result = tokio::select! {
            r = consume_once(&config, &sink) => r,
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(source = %config.source, error = %format!("{e:#}"), ?backoff, "event consumer disconnected; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

async fn consume_once<S: EventSink>(config: &ConsumerConfig, sink: &S) -> anyhow::Result<()> {
    let after = sink.last_offset(&config.source).await?;
    let mut client = EventLogClient::new(InterceptedService::new(
        config.channel.clone(),
        config.credentials.clone(),
    ));
    let mut request = tonic::Request::new(SubscribeRequest {
        after_offset: after,
        consumer: config.consumer.clone(),
    });
    request.metadata_mut().insert(
        crate::retention::DURABLE_CONSUMER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    let mut stream = client.subscribe(request).await?.into_inner();
    let mut batch = Vec::with_capacity(config.max_batch);
    let renew_at = tokio::time::Instant::now() + RESUBSCRIBE_AFTER;
    loop {
        if tokio::time::Instant::now() >= renew_at {
            return Ok(());
        }
        // Take what is ready now (up to max_batch) so one transaction covers a burst.
        let first = stream.message().await?;
        let Some(first) = first else { return Ok(()) };
        if let Some(e) = crate::outbox::event_of(first) {
            batch.push(e);
        }
        while batch.len() < config.max_batch {
            match tokio::time::timeout(Duration::from_millis(5), stream.message()).await {
                Ok(Ok(Some(item))) => {
                    if let Some(e) = crate::outbox::event_of(item) {
                        batch.push(e);
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            deliver(config, sink, std::mem::take(&mut batch)).await?;
        }
    }
}

/// Applies a batch. When it fails, its events are applied one at a time, each retried
/// with backoff and parked after `park_after` failures in a row, so the poison event is
/// found and the events behind it are applied. An error here (parking itself failed) ends
/// the subscription; it resumes from the stored offset.
pub async fn deliver<S: EventSink>(
    config: &ConsumerConfig,
    sink: &S,
    batch: Vec<Event>,
) -> anyhow::Result<()> {
    let parking = &config.parking;
    let (consumer, source) = (config.consumer.as_str(), config.source.as_str());
    // The high-water mark: what is at or below the committed offset was applied (or
    // parked) already, whatever the dedupe ids still remember.
    let committed = sink.last_offset(source).await?;
    let before = batch.len();
    let batch: Vec<Event> = batch.into_iter().filter(|e| e.offset > committed).collect();
    if batch.len() < before {
        metrics::counter!("consumer_redelivered_dropped_total", "consumer" => consumer.to_string(), "source" => source.to_string())
            .increment((before - batch.len()) as u64);
    }
    if batch.is_empty() {
        return Ok(());
    }
    let single = batch.len() == 1;
    let first_failed_at = ids::now();
    let Err(reason) = parking.attempt(consumer, source, sink, batch.clone()).await else {
        return Ok(());
    };
    tracing::warn!(source, consumer, %reason, events = batch.len(), "a batch failed; applying its events one by one");
    for event in batch {
        // A batch of one already failed once on this very event.
        let (mut failures, mut first, mut reason) = if single {
            (1, first_failed_at, reason.clone())
        } else {
            (0, ids::now(), String::new())
        };
        let mut backoff = RETRY_BACKOFF;
        loop {
            if failures > 0 {
                if failures >= i64::from(parking.park_after()) {
                    park(config, &event, &reason, failures, first).await?;
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_backoff.max(RETRY_BACKOFF));
            }
            match parking.attempt(consumer, source, sink, vec![event.clone()]).await {
                Ok(()) => break,
                Err(e) => {
                    if failures == 0 {
                        first = ids::now();
                    }
                    failures += 1;
                    tracing::warn!(source, consumer, event_id = %event.id, offset = event.offset, failures, reason = %e, "an event failed");
                    reason = e;
                }
            }
        }
    }
    Ok(())
}

async fn park(
    config: &ConsumerConfig,
    event: &Event,
    reason: &str,
    attempts: i64,
    first_failed_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let parking = &config.parking;
    parking
        .db()
        .park(&NewParked {
            consumer: &config.consumer,
            source: &config.source,
            offsets_table: parking.offsets_table(),
            event,
            reason,
            attempts,
            first_failed_at,
            last_failed_at: ids::now(),
        })
        .await?;
    metrics::counter!("consumer_parked_total", "consumer" => config.consumer.clone(), "source" => config.source.clone())
        .increment(1);
    tracing::error!(source = %config.source, consumer = %config.consumer, event_id = %event.id, offset = event.offset, attempts, %reason, "event parked");
    Ok(())
}

/// Saves a source's offset (source, offset) unless a higher one is saved already.
pub const SAVE_OFFSET: &str = "INSERT INTO consumer_offsets (source, last_offset) VALUES ($1, $2)
ON CONFLICT (source) DO UPDATE SET last_offset = excluded.last_offset WHERE consumer_offsets.last_offset < excluded.last_offset";
const LOAD_OFFSET: &str = "SELECT last_offset FROM consumer_offsets WHERE source = $1";
/// Marks an event id as applied (event id, time); changes no row for a duplicate.
pub const MARK: &str =
    "INSERT INTO processed_events (event_id, processed_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING";

/// Helpers for sinks on Postgres (tables `consumer_offsets`, `processed_events`).
pub mod pg {
    use super::*;

    pub async fn load_offset(conn: &mut PgConnection, source: &str) -> sqlx::Result<i64> {
        Ok(sqlx::query_scalar(LOAD_OFFSET)
            .bind(source)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0))
    }

    pub async fn save_offset(conn: &mut PgConnection, source: &str, offset: i64) -> sqlx::Result<()> {
        sqlx::query(SAVE_OFFSET)
            .bind(source)
            .bind(offset)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// True the first time an event id is seen; false for a duplicate.
    pub async fn first_time(conn: &mut PgConnection, event_id: &str) -> sqlx::Result<bool> {
        let r = sqlx::query(MARK)
            .bind(event_id)
            .bind(crate::ids::now())
            .execute(conn)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// Helpers for sinks on SQLite (tables `consumer_offsets`, `processed_events`).
pub mod sqlite {
    use super::*;

    pub async fn load_offset(conn: &mut SqliteConnection, source: &str) -> sqlx::Result<i64> {
        Ok(sqlx::query_scalar(LOAD_OFFSET)
            .bind(source)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0))
    }

    pub async fn save_offset(conn: &mut SqliteConnection, source: &str, offset: i64) -> sqlx::Result<()> {
        sqlx::query(SAVE_OFFSET)
            .bind(source)
            .bind(offset)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub async fn first_time(conn: &mut SqliteConnection, event_id: &str) -> sqlx::Result<bool> {
        let r = sqlx::query(MARK)
            .bind(event_id)
            .bind(crate::ids::now())
            .execute(conn)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
