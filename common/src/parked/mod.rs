//! Parked work (issue #13): an event a consumer could not apply `CONSUMER_PARK_AFTER` times
//! in a row is parked — stored with its reason, payload and attempts in the consuming
//! service's own `parked_events` table, the consumer's offset moved past it in the same
//! transaction — and the consumer goes on with the events behind it. Admins list parked
//! work and retry it through `referral.common.v1.ParkedWork`, which every service serves
//! ([`ParkedWorkService`]); invite-svc adds its parked sends ([`ParkedSends`]).
//!
//! [`Parking`] is a service's handle on all this: its database, the threshold, the
//! test-only fault and the sinks its consumers registered, so a retry re-applies an event
//! through the very sink that failed on it.
//!
//! The table is defined once here (`postgres.sql`, `sqlite.sql`) and copied into each
//! service's migrations as `0070_parked_events.sql`.

mod service;
mod store;

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
};

use futures::{FutureExt, future::BoxFuture};
use referral_proto::{
    common::v1::{ListParkedResponse, Parked},
    events::v1::Event,
};

pub use self::{
    service::{ParkedQuery, ParkedSend, ParkedSends, ParkedWorkService},
    store::{MAX_REASON, NewParked, ParkedDb, ParkedRow},
};
use crate::{
    ApiError, ApiResult,
    consumer::{ConsumerFault, EventSink},
    paging,
    supervisor::{SupervisionConfig, panic_message},
};

/// The table's definition: every service migrates it as version 70 (see
/// [`crate::db::SHARED`]).
pub const POSTGRES_SCHEMA: &str = include_str!("postgres.sql");
pub const SQLITE_SCHEMA: &str = include_str!("sqlite.sql");

/// The services that park work, as `GET /v1/parked?service=` names them.
pub const SERVICES: [&str; 4] = ["invite-svc", "fraud-svc", "incentive-svc", "analytics-svc"];

/// Re-applies one event through a consumer's sink.
type Reapply = Arc<dyn Fn(String, Event) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A service's parking: where parked events go and which sinks can take them back.
#[derive(Clone)]
pub struct Parking {
    db: ParkedDb,
    park_after: u32,
    fault: ConsumerFault,
    /// The offsets table of the consumers this handle is given to.
    offsets_table: &'static str,
    sinks: Arc<Mutex<HashMap<(String, String), Reapply>>>,
}

impl Parking {
    pub fn new(db: impl Into<ParkedDb>, supervision: &SupervisionConfig) -> Self {
        Self {
            db: db.into(),
            park_after: supervision.consumer_park_after.max(1),
            fault: supervision.consumer_fault.clone(),
            offsets_table: "consumer_offsets",
            sinks: Arc::default(),
        }
    }

    /// The same parking for consumers that keep their offsets in `table` (same columns as
    /// `consumer_offsets`), e.g. the webhooks' `webhook_offsets`.
    pub fn offsets_in(&self, table: &'static str) -> Self {
        Self {
            offsets_table: table,
            ..self.clone()
        }
    }

    pub fn db(&self) -> &ParkedDb {
        &self.db
    }

    pub fn park_after(&self) -> u32 {
        self.park_after
    }

    pub fn offsets_table(&self) -> &'static str {
        self.offsets_table
    }

    /// Makes `sink` the one retries of `(consumer, source)` events go through.
    pub fn register<S: EventSink>(&self, consumer: &str, source: &str, sink: Arc<S>) {
        let reapply: Reapply = Arc::new(move |source, event| {
            let sink = sink.clone();
            Box::pin(async move { sink.apply(&source, vec![event]).await })
        });
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((consumer.to_string(), source.to_string()), reapply);
    }

    /// Applies `events` through `sink`: the fault first (tests), then the sink, a panic in
    /// either caught. The error is the reason a parked event keeps.
    pub async fn attempt<S: EventSink>(
        &self,
        consumer: &str,
        source: &str,
        sink: &S,
        events: Vec<Event>,
    ) -> Result<(), String> {
        self.guarded(consumer, source, events, |source, events| {
            sink.apply(source, events)
        })
        .await
    }

    /// Re-applies a parked event through its consumer's registered sink; `None` when no
    /// consumer of that log runs in this process.
    pub async fn reapply(&self, consumer: &str, source: &str, event: Event) -> Option<Result<(), String>> {
        let reapply = self
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(consumer.to_string(), source.to_string()))
            .cloned()?;
        Some(
            self.guarded(consumer, source, vec![event], |source, mut events| {
                reapply(source.to_string(), events.remove(0))
            })
            .await,
        )
    }

    async fn guarded<'a, F, Fut>(
        &self,
        consumer: &str,
        source: &'a str,
        events: Vec<Event>,
        apply: F,
    ) -> Result<(), String>
    where
        F: FnOnce(&'a str, Vec<Event>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + 'a,
    {
        let run = async {
            for event in &events {
                self.fault.check(consumer, source, event)?;
            }
            apply(source, events).await
        };
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
        }
    }
}

/// The prefix of a service's parked ids: `invite-svc` → `invite`.
pub fn prefix_of(service: &str) -> &str {
    service.strip_suffix("-svc").unwrap_or(service)
}

/// A parked item's public id: `{service prefix}.{kind}.{uuid}`.
pub fn public_id(service: &str, kind: &str, local: &str) -> String {
    format!("{}.{kind}.{local}", prefix_of(service))
}

/// What a public id names: (service prefix, kind, uuid). A 400 naming `id` otherwise.
pub fn parse_id(id: &str) -> ApiResult<(&str, &str, String)> {
    let bad = || ApiError::invalid("id", "is not a parked item id ({service}.{event|send}.{uuid})");
    if id.len() > 100 {
        return Err(bad());
    }
    let mut parts = id.splitn(3, '.');
    let (Some(prefix), Some(kind), Some(local)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if !SERVICES.iter().any(|s| prefix_of(s) == prefix) || !matches!(kind, "event" | "send") {
        return Err(bad());
    }
    let local = uuid::Uuid::parse_str(local).map_err(|_| bad())?;
    Ok((prefix, kind, local.hyphenated().to_string()))
}

/// The uuid a listing is ordered by (descending): the last part of the id.
fn sort_key(p: &Parked) -> &str {
    p.id.rsplit('.').next().unwrap_or(&p.id)
}

/// `pageToken` → the uuid the next page starts below; `None` for the first page.
pub fn decode_cursor(token: &str) -> ApiResult<Option<String>> {
    let bad = || ApiError::invalid("pageToken", "is not a parked page token this API issued");
    let Some(text) = paging::decode_token(token).map_err(|_| bad())? else {
        return Ok(None);
    };
    let local = text.strip_prefix("parked:").ok_or_else(bad)?;
    let local = uuid::Uuid::parse_str(local).map_err(|_| bad())?;
    Ok(Some(local.hyphenated().to_string()))
}

/// The bound rows are read below: the cursor, or above any uuid for the first page.
pub fn before(cursor: Option<&str>) -> &str {
    cursor.unwrap_or("~")
}

/// Merges answers (each newest first, a token meaning it holds more) into one page of the
/// first `page_size`, with a token when more follow. The services' and the gateway's merge.
pub fn merge(answers: impl IntoIterator<Item = ListParkedResponse>, page_size: usize) -> ListParkedResponse {
    let mut parked: Vec<Parked> = Vec::new();
    let mut more = false;
    for answer in answers {
        more |= !answer.next_page_token.is_empty();
        parked.extend(answer.parked);
    }
    parked.sort_by(|a, b| sort_key(b).cmp(sort_key(a)));
    more |= parked.len() > page_size;
    parked.truncate(page_size);
    let next_page_token = match parked.last() {
        Some(last) if more => paging::encode_token(&format!("parked:{}", sort_key(last))),
        _ => String::new(),
    };
    ListParkedResponse {
        parked,
        next_page_token,
    }
}

#[cfg(test)]
mod tests;
