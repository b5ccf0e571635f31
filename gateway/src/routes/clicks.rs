//! Clicks from `/r/{code}`, recorded off the hot path: the redirect enqueues (never waits)
//! and one task sends them to `InviteService.RecordClicks` every ~50 ms or 500 clicks,
//! retrying with backoff while invite-svc is away. The queue is bounded and large; when it
//! is full the redirect waits for room (backpressure: a redirect is slower rather than its
//! click lost), and only a click that finds no room for `ENQUEUE_WAIT` (invite-svc away long
//! enough to fill the whole queue) is dropped and counted.

use std::{sync::Arc, time::Duration};

use referral_proto::invite::v1::{
    RecordClickRequest, RecordClicksRequest, invite_service_client::InviteServiceClient,
};
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, sleep, sleep_until},
};
use tonic::Code;

use referral_common::supervisor::Supervisor;

use crate::clients::Authed;

pub const QUEUE_CAPACITY: usize = 100_000;
pub const BATCH_MAX: usize = 500;
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// How long a redirect waits for room in a full queue before its click is dropped.
pub const ENQUEUE_WAIT: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// While draining at shutdown, a batch gets this many tries.
const DRAIN_ATTEMPTS: u32 = 3;

/// The sending side, held by the redirect handler.
#[derive(Clone)]
pub struct ClickQueue {
    tx: mpsc::Sender<RecordClickRequest>,
    wait: Duration,
}

impl ClickQueue {
    /// Queues a click: at once while there is room, else waiting up to the queue's wait for
    /// room; false when it had to be dropped.
    pub async fn enqueue(&self, click: RecordClickRequest) -> bool {
        let outcome = match self.tx.try_send(click) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(click)) => {
                metrics::counter!("gateway_clicks_waited_total").increment(1);
                match tokio::time::timeout(self.wait, self.tx.send(click)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err("click queue closed"),
                    Err(_) => Err("click queue full"),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err("click queue closed"),
        };
        match outcome {
            Ok(()) => {
                metrics::counter!("gateway_clicks_enqueued_total").increment(1);
                true
            }
            Err(why) => {
                metrics::counter!("gateway_clicks_dropped_total").increment(1);
                tracing::warn!(wait = ?self.wait, "{why}; click dropped");
                false
            }
        }
    }
}

/// The running batcher.
pub struct ClickBatcher {
    /// Turns true once the batcher has sent what was queued and stopped.
    done: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
}

/// Where batches go; a trait so tests can count them without a server.
pub trait ClickSink: Clone + Send + 'static {
    fn record(
        &mut self,
        clicks: Vec<RecordClickRequest>,
    ) -> impl std::future::Future<Output = Result<(), tonic::Status>> + Send;
}

impl ClickSink for InviteServiceClient<Authed> {
    async fn record(&mut self, clicks: Vec<RecordClickRequest>) -> Result<(), tonic::Status> {
        let mut req = tonic::Request::new(RecordClicksRequest { clicks });
        req.set_timeout(Duration::from_secs(10));
        if let Ok(id) = uuid::Uuid::now_v7().to_string().parse() {
            req.metadata_mut().insert(referral_common::auth::REQUEST_ID, id);
        }
        // Clicks are the gateway's own report, for no signed-in caller.
        referral_common::auth::forwarded::write_none(req.metadata_mut());
        let resp = self.record_clicks(req).await?.into_inner();
        metrics::counter!("gateway_clicks_recorded_total")
            .increment(u64::try_from(resp.recorded).unwrap_or(0));
        metrics::counter!("gateway_clicks_unknown_code_total")
            .increment(u64::try_from(resp.unknown_codes).unwrap_or(0));
        Ok(())
    }
}

impl ClickBatcher {
    pub fn start<S: ClickSink>(sink: S) -> (ClickQueue, ClickBatcher) {
        Self::start_with(sink, QUEUE_CAPACITY, ENQUEUE_WAIT)
    }

    pub fn start_with<S: ClickSink>(sink: S, capacity: usize, wait: Duration) -> (ClickQueue, ClickBatcher) {
        let (tx, rx) = mpsc::channel(capacity);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        // Shared by the batcher's attempts: a restart after a panic keeps the queue (only
        // the batch in hand at the panic is lost).
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let done_tx = Arc::new(done_tx);
        Supervisor::new().spawn("gateway.click-batcher", move || {
            let (sink, rx, stop, done_tx) = (sink.clone(), rx.clone(), stop_rx.clone(), done_tx.clone());
            async move {
                let mut rx = rx.lock().await;
                run(sink, &mut rx, stop).await;
                let _ = done_tx.send(true);
                Ok::<(), std::convert::Infallible>(())
            }
        });
        (ClickQueue { tx, wait }, ClickBatcher { done, stop: stop_tx })
    }

    /// Sends what is queued (a few tries per batch) and stops; gives up after `deadline`.
    pub async fn drain(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let mut done = self.done;
        if tokio::time::timeout(deadline, done.wait_for(|d| *d))
            .await
            .is_err()
        {
            tracing::warn!("click batcher did not drain in time; queued clicks lost");
        }
    }
}

async fn run<S: ClickSink>(
    mut sink: S,
    rx: &mut mpsc::Receiver<RecordClickRequest>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            click = rx.recv() => click,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let flush_at = Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH_MAX {
            tokio::select! {
                click = rx.recv() => match click {
                    Some(c) => batch.push(c),
                    None => break,
                },
                _ = sleep_until(flush_at) => break,
            }
        }
        send(&mut sink, batch, &stop).await;
    }
    // Stopping: no new clicks, send the rest.
    rx.close();
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while let Some(c) = rx.recv().await {
        batch.push(c);
        if batch.len() == BATCH_MAX {
            send(&mut sink, std::mem::take(&mut batch), &stop).await;
        }
    }
    if !batch.is_empty() {
        send(&mut sink, batch, &stop).await;
    }
}

/// One batch, retried with exponential backoff while the failure is transient; fewer tries
/// once stopping.
async fn send<S: ClickSink>(sink: &mut S, batch: Vec<RecordClickRequest>, stop: &watch::Receiver<bool>) {
    let mut delay = BACKOFF_START;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match sink.record(batch.clone()).await {
            Ok(()) => return,
            Err(status) => {
                let transient = matches!(
                    status.code(),
                    Code::Unavailable
                        | Code::DeadlineExceeded
                        | Code::ResourceExhausted
                        | Code::Aborted
                        | Code::Unknown
                        | Code::Internal
                        | Code::Cancelled
                );
                let stopping = *stop.borrow();
                if !transient || (stopping && attempt >= DRAIN_ATTEMPTS) {
                    metrics::counter!("gateway_clicks_failed_total").increment(batch.len() as u64);
                    tracing::error!(clicks = batch.len(), code = ?status.code(), error = %status.message(), "clicks not recorded");
                    return;
                }
                tracing::warn!(clicks = batch.len(), attempt, error = %status.message(), "RecordClicks failed; retrying");
                sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<usize>>>,
        failures_left: Arc<Mutex<u32>>,
    }

    impl ClickSink for Recorder {
        async fn record(&mut self, clicks: Vec<RecordClickRequest>) -> Result<(), tonic::Status> {
            {
                let mut left = self.failures_left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err(tonic::Status::unavailable("down"));
                }
            }
            self.batches.lock().unwrap().push(clicks.len());
            Ok(())
        }
    }

    fn click(i: usize) -> RecordClickRequest {
        RecordClickRequest {
            code: format!("C{i}"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn clicks_are_batched_up_to_the_maximum() {
        let rec = Recorder::default();
        let (queue, batcher) = ClickBatcher::start(rec.clone());
        for i in 0..1_200 {
            assert!(queue.enqueue(click(i)).await);
        }
        batcher.drain(Duration::from_secs(5)).await;
        let batches = rec.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 1_200);
        assert!(batches.iter().all(|n| *n <= BATCH_MAX), "{batches:?}");
    }

    #[tokio::test]
    async fn a_lone_click_is_sent_within_the_flush_interval() {
        let rec = Recorder::default();
        let (queue, _batcher) = ClickBatcher::start(rec.clone());
        queue.enqueue(click(1)).await;
        tokio::time::sleep(FLUSH_EVERY * 4).await;
        assert_eq!(*rec.batches.lock().unwrap(), vec![1]);
    }

    #[tokio::test]
    async fn failures_are_retried_with_backoff() {
        let rec = Recorder::default();
        *rec.failures_left.lock().unwrap() = 2;
        let (queue, batcher) = ClickBatcher::start(rec.clone());
        queue.enqueue(click(1)).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(*rec.batches.lock().unwrap(), vec![1]);
        batcher.drain(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_redirect_wait_for_room() {
        // invite-svc is away for the first two tries: the queue (2 slots) fills, and the
        // third click waits until the batcher has sent the first ones instead of being lost.
        let rec = Recorder::default();
        *rec.failures_left.lock().unwrap() = 2;
        let (queue, batcher) = ClickBatcher::start_with(rec.clone(), 2, Duration::from_secs(5));
        for i in 0..6 {
            assert!(queue.enqueue(click(i)).await, "click {i} was dropped");
        }
        batcher.drain(Duration::from_secs(5)).await;
        assert_eq!(rec.batches.lock().unwrap().iter().sum::<usize>(), 6);
    }

    #[tokio::test]
    async fn a_click_is_dropped_only_after_waiting_for_room() {
        let rec = Recorder::default();
        *rec.failures_left.lock().unwrap() = u32::MAX;
        let wait = Duration::from_millis(20);
        let (queue, _batcher) = ClickBatcher::start_with(rec, 2, wait);
        let total = BATCH_MAX + 10;
        let mut accepted = 0;
        let started = Instant::now();
        for i in 0..total {
            if queue.enqueue(click(i)).await {
                accepted += 1;
            }
        }
        // The batcher holds one batch (retrying forever) and the queue two more clicks.
        assert!(accepted <= BATCH_MAX + 2, "{accepted}");
        assert!(
            started.elapsed() >= wait * (total - accepted) as u32,
            "a full queue dropped without waiting"
        );
    }
}
