//! `analytics-svc rebuild`'s replay (`app::rebuild`): reads one log from offset 0 until its
//! head (its heartbeat says so), each batch applied by `app::apply_events` as the live
//! consumer applies it.

use referral_common::auth::ServiceCredentials;
use referral_proto::events::v1::{
    SubscribeRequest, event_log_client::EventLogClient, subscribe_response::Item,
};
use tonic::{Code, codegen::InterceptedService, transport::Channel};

use crate::{adapters::consumers, app::apply_events, store::Store};

/// Events per transaction while replaying.
const BATCH: usize = 500;

/// What replaying one log did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Events read up to the head.
    Events(u64),
    /// The address answers UNIMPLEMENTED: that service serves no log (yet).
    NotServed,
}

/// Replays `source` from offset 0 into `store`'s rollups (revenue in `currency`) until its
/// head.
pub async fn replay<S: Store>(
    store: &S,
    currency: &str,
    source: &str,
    channel: Channel,
    credentials: ServiceCredentials,
) -> anyhow::Result<Replayed> {
    let mut client = EventLogClient::new(InterceptedService::new(channel, credentials));
    let request = SubscribeRequest {
        after_offset: 0,
        consumer: format!("{}-rebuild", consumers::CONSUMER),
    };
    let mut stream = match client.subscribe(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::Unimplemented => return Ok(Replayed::NotServed),
        Err(s) => return Err(anyhow::anyhow!("subscribing to the {source} log: {s}")),
    };
    let (mut read, mut last) = (0u64, 0i64);
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(item) = stream.message().await? {
        match item.item {
            Some(Item::Event(e)) => {
                read += 1;
                last = last.max(e.offset);
                batch.push(e);
                if batch.len() >= BATCH {
                    apply_events::apply(store, source, std::mem::take(&mut batch), currency).await?;
                }
            }
            Some(Item::Heartbeat(h)) => {
                if !batch.is_empty() {
                    apply_events::apply(store, source, std::mem::take(&mut batch), currency).await?;
                }
                // Heartbeats come only once the producer has nothing more to send.
                if h.head_offset <= last {
                    return Ok(Replayed::Events(read));
                }
            }
            None => {}
        }
    }
    anyhow::bail!("the {source} log ended the stream before its head")
}
