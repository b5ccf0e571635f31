//! The live feed (`StreamEvents`, `GET /v1/events`): one tail of each event log from its
//! head (no replay), fanned in to every client through a broadcast channel. Each client is
//! paced to at most `rate` events a second; when it falls more than a second behind, the
//! oldest waiting events are dropped and the next thing it gets is a `lagged` notice
//! counting them.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use referral_common::{
    auth::ServiceCredentials, events::event_type, outbox::FROM_HEAD, pii::PiiKeys, supervisor::Supervisor,
};
use referral_proto::{
    analytics::v1::LiveEvent,
    events::v1::{Event, SubscribeRequest, event_log_client::EventLogClient, subscribe_response::Item},
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, codegen::InterceptedService, transport::Channel};

/// Events kept for clients that are between two reads (beyond that a client lags).
const FAN_OUT: usize = 1024;

#[derive(Clone)]
pub struct LiveFeed {
    events: broadcast::Sender<Arc<LiveEvent>>,
    rate: u32,
    /// Pseudonymises the referees an event names (`domain::privacy`).
    pii: Arc<PiiKeys>,
}

impl LiveFeed {
    pub fn new(rate: u32, pii: PiiKeys) -> Self {
        let (events, _) = broadcast::channel(FAN_OUT);
        Self {
            events,
            rate: rate.max(1),
            pii: Arc::new(pii),
        }
    }

    /// Tails one log from its head until `shutdown`, reconnecting with backoff; after a
    /// reconnect it resumes after the last event it saw, so the feed has no gap.
    pub fn tail(
        &self,
        tasks: &Supervisor,
        source: &'static str,
        channel: Channel,
        credentials: ServiceCredentials,
        shutdown: watch::Receiver<bool>,
    ) {
        let (events, pii) = (self.events.clone(), self.pii.clone());
        // Outlives a restart, so a tail that panicked resumes where it was.
        let cursor = Arc::new(AtomicI64::new(FROM_HEAD));
        tasks.spawn(format!("analytics-svc.live.{source}"), move || {
            let (events, pii, channel, credentials, cursor, mut shutdown) = (
                events.clone(),
                pii.clone(),
                channel.clone(),
                credentials.clone(),
                cursor.clone(),
                shutdown.clone(),
            );
            async move {
                let mut backoff = Duration::from_millis(200);
                loop {
                    let result = tokio::select! {
                        r = tail_once(&events, &pii, &channel, &credentials, &cursor) => r,
                        _ = shutdown.changed() => return Ok::<(), Infallible>(()),
                    };
                    if let Err(e) = result {
                        tracing::debug!(source, error = %e, ?backoff, "live tail disconnected; retrying");
                    } else {
                        backoff = Duration::from_millis(200);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        });
    }

    /// Publishes an event to every client (tests and the tails).
    pub fn publish(&self, event: &Event) {
        // No client listening is not an error.
        if let Some(e) = live_event(event, &self.pii) {
            let _ = self.events.send(Arc::new(e));
        }
    }

    /// One client's paced stream; `types` filters by event type (all when empty).
    pub fn subscribe(&self, types: Vec<String>) -> ReceiverStream<Result<LiveEvent, Status>> {
        let mut events = self.events.subscribe();
        let (tx, rx) = mpsc::channel(4);
        let capacity = self.rate as usize;
        let period = Duration::from_secs(1) / self.rate;
        tokio::spawn(async move {
            let mut waiting: VecDeque<Arc<LiveEvent>> = VecDeque::with_capacity(capacity);
            let mut dropped: i64 = 0;
            let mut pace = tokio::time::interval(period);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let ready = !waiting.is_empty() || dropped > 0;
                // Biased: take in everything already published before sending, so what is
                // dropped is always the oldest.
                tokio::select! {
                    biased;
                    received = events.recv() => match received {
                        Ok(e) => {
                            if !types.is_empty() && !types.iter().any(|t| *t == e.r#type) {
                                continue;
                            }
                            if waiting.len() == capacity {
                                waiting.pop_front();
                                dropped += 1;
                            }
                            waiting.push_back(e);
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => dropped += n as i64,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = pace.tick(), if ready => {
                        let item = if dropped > 0 {
                            let notice = LiveEvent { lagged: dropped, ..Default::default() };
                            dropped = 0;
                            notice
                        } else if let Some(e) = waiting.pop_front() {
                            (*e).clone()
                        } else {
                            continue;
                        };
                        if tx.send(Ok(item)).await.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

async fn tail_once(
    events: &broadcast::Sender<Arc<LiveEvent>>,
    pii: &PiiKeys,
    channel: &Channel,
    credentials: &ServiceCredentials,
    cursor: &AtomicI64,
) -> anyhow::Result<()> {
    let mut client = EventLogClient::new(InterceptedService::new(channel.clone(), credentials.clone()));
    let request = SubscribeRequest {
        after_offset: cursor.load(Ordering::SeqCst),
        consumer: format!("{}-live", super::consumers::CONSUMER),
    };
    let mut stream = client.subscribe(request).await?.into_inner();
    while let Some(item) = stream.message().await? {
        match item.item {
            Some(Item::Event(e)) => {
                cursor.store(e.offset, Ordering::SeqCst);
                if let Some(e) = live_event(&e, pii) {
                    let _ = events.send(Arc::new(e));
                }
            }
            Some(Item::Heartbeat(h)) if cursor.load(Ordering::SeqCst) == FROM_HEAD => {
                cursor.store(h.head_offset, Ordering::SeqCst)
            }
            _ => {}
        }
    }
    Ok(())
}

/// An event as the feed shows it: its type, source, time and proto3 JSON with the people it
/// names reduced to what may leave analytics (`domain::privacy::scrub`). None for an event
/// of a type this build does not know (no payload: nothing to judge it by) or one never
/// forwarded (`privacy.requested`, which carries contact keys).
pub fn live_event(e: &Event, pii: &PiiKeys) -> Option<LiveEvent> {
    e.payload.as_ref()?;
    if !crate::domain::privacy::forwarded(event_type(e)) {
        return None;
    }
    let json = serde_json::to_value(e)
        .map(|mut v| {
            crate::domain::privacy::scrub(pii, &mut v);
            v.to_string()
        })
        // A decoded proto message always serialises; an empty body would only thin this feed copy.
        .unwrap_or_default();
    Some(LiveEvent {
        id: e.id.clone(),
        r#type: event_type(e).into(),
        source: e.source.clone(),
        occurred_at: e.occurred_at,
        json,
        lagged: 0,
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use referral_common::events::new_event;
    use referral_proto::events::v1::{ClickRecorded, event::Payload};

    use super::*;

    fn click(n: usize) -> Event {
        new_event(
            "invite",
            &format!("c{n}"),
            referral_common::ids::now(),
            Payload::ClickRecorded(ClickRecorded {
                click_id: format!("c{n}"),
                ..Default::default()
            }),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_client_gets_at_most_rate_a_second_and_a_lagged_notice() {
        let feed = LiveFeed::new(10, PiiKeys::for_tests());
        let mut stream = feed.subscribe(vec![]);
        tokio::task::yield_now().await;
        for n in 0..35 {
            feed.publish(&click(n));
        }
        let started = tokio::time::Instant::now();
        let mut got = Vec::new();
        while got.len() < 11 {
            got.push(stream.next().await.unwrap().unwrap());
        }
        // 35 events against a backlog of 10: the 25 oldest dropped, said first.
        assert_eq!(got[0].lagged, 25, "{:?}", got[0]);
        let ids: Vec<&str> = got[1..].iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), 10);
        assert!(
            got[1..]
                .iter()
                .all(|e| e.r#type == "click.recorded" && e.lagged == 0)
        );
        assert!(got[10].json.contains("\"clickId\":\"c34\""), "{}", got[10].json);
        // Eleven items, at most one per 100 ms: a second at least.
        assert!(
            started.elapsed() >= Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn types_filter_the_feed() {
        let feed = LiveFeed::new(10, PiiKeys::for_tests());
        let mut stream = feed.subscribe(vec!["invitation.created".into()]);
        tokio::task::yield_now().await;
        feed.publish(&click(1));
        let created = new_event(
            "invite",
            "i1",
            referral_common::ids::now(),
            Payload::InvitationCreated(Default::default()),
        );
        feed.publish(&created);
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.r#type, "invitation.created");
    }

    #[tokio::test(start_paused = true)]
    async fn privacy_requests_stay_in_and_referees_are_pseudonymous() {
        let pii = PiiKeys::for_tests();
        let feed = LiveFeed::new(10, pii.clone());
        let mut stream = feed.subscribe(vec![]);
        tokio::task::yield_now().await;
        let now = referral_common::ids::now();
        feed.publish(&new_event(
            "invite",
            "r1",
            now,
            Payload::PrivacyRequested(Default::default()),
        ));
        feed.publish(&Event {
            payload: None,
            ..click(1)
        });
        feed.publish(&new_event(
            "invite",
            "u1",
            now,
            Payload::SignupRecorded(referral_proto::events::v1::SignupRecorded {
                user_id: "u1".into(),
                referrer_id: "s1".into(),
                ip: "203.0.113.7".into(),
                ..Default::default()
            }),
        ));
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(
            first.r#type, "signup.recorded",
            "the privacy request and the unknown event never reach the feed"
        );
        assert!(first.json.contains(&pii.pseudonym("u1")), "{}", first.json);
        assert!(
            !first.json.contains("\"u1\"") && !first.json.contains("203.0.113"),
            "{}",
            first.json
        );
        assert!(first.json.contains("\"s1\""), "{}", first.json);
    }
}
