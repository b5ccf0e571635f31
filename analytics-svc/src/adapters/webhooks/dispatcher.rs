//! The delivery worker: leases due deliveries (so replicas never send one at the same time),
//! signs each per Standard Webhooks, POSTs it through the SSRF-guarded client, and records
//! the attempt: DELIVERED on a 2xx, else retried on the backoff schedule until the horizon
//! (then FAILED); an endpoint failing `disable_after` times in a row is disabled.
//!
//! A receiver acknowledges with any 2xx; redirects are not followed (a redirect could point
//! inside) and count as failures.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use referral_common::ids;
use tokio::sync::{Notify, watch};

use super::resolver::GuardedResolver;
use crate::{
    domain::webhooks::{retry::RetryPolicy, signing, target::TargetPolicy},
    store::webhooks::{Attempted, Claimed, WebhookStore},
};

/// How long a claimed delivery stays ours: well past one attempt's time limit.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// How many deliveries one pass sends at once.
const BATCH: u32 = 16;
/// How often due retries are looked for when nothing wakes the worker.
const POLL: Duration = Duration::from_millis(250);
/// The most of a failed response's body kept in the delivery log.
const ERROR_BODY_CHARS: usize = 200;

#[derive(Clone)]
pub struct Dispatcher<S> {
    store: S,
    client: reqwest::Client,
    targets: Arc<TargetPolicy>,
    retry: RetryPolicy,
    timeout: Duration,
    /// This worker's lease name.
    owner: String,
    wake: Arc<Notify>,
}

impl<S: WebhookStore> Dispatcher<S> {
    pub fn new(
        store: S,
        targets: TargetPolicy,
        retry: RetryPolicy,
        timeout: Duration,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let targets = Arc::new(targets);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: targets.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, around the guard.
            .no_proxy()
            .timeout(timeout)
            .user_agent("referral-mesh-webhooks/1")
            .build()?;
        Ok(Self {
            store,
            client,
            targets,
            retry,
            timeout,
            owner: format!("dispatcher-{}", ids::new_id()),
            wake,
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let sent = match self.pass().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher could not read due deliveries");
                    0
                }
            };
            if sent > 0 {
                continue; // there may be more due right now
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Claims what is due and sends it; the number of deliveries attempted.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let now = ids::now();
        let lease = chrono::Duration::from_std(self.timeout + LEASE_MARGIN)?;
        let claimed = self.store.claim_due(&self.owner, now, now + lease, BATCH).await?;
        let n = claimed.len();
        futures::future::join_all(claimed.into_iter().map(|c| self.deliver(c))).await;
        Ok(n)
    }

    async fn deliver(&self, claimed: Claimed) {
        let result = self.attempt(&claimed).await;
        let now = ids::now();
        let attempts = u32::try_from(claimed.attempts).unwrap_or(0) + 1;
        let outcome = match result {
            Ok(status) => {
                metrics::counter!("webhook_deliveries_total", "outcome" => "delivered").increment(1);
                Attempted::Delivered { status }
            }
            Err((status, error)) => {
                let next = self
                    .retry
                    .next_attempt(attempts, claimed.created_at, now)
                    .map(micros);
                metrics::counter!("webhook_deliveries_total", "outcome" => if next.is_some() { "retry" } else { "failed" })
                    .increment(1);
                tracing::info!(delivery = %claimed.id, endpoint = %claimed.endpoint_id, attempts, status, %error, retry_at = ?next, "webhook delivery failed");
                Attempted::Failed { status, error, next }
            }
        };
        let recorded = self
            .store
            .record_attempt(&claimed, &self.owner, outcome, now, &self.retry)
            .await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery = %claimed.id, "webhook lease expired before the attempt was recorded")
            }
            // The lease runs out and the delivery is tried again: at least once, never lost.
            Err(e) => tracing::warn!(delivery = %claimed.id, error = %e, "webhook attempt not recorded"),
        }
    }

    /// One signed POST: the status of a 2xx, or the status (0 without a response) and why not.
    async fn attempt(&self, claimed: &Claimed) -> Result<i32, (i32, String)> {
        let url = self
            .targets
            .check_url(&claimed.url)
            .map_err(|e| (0, e.to_string()))?;
        let key = signing::key_of(&claimed.secret).map_err(|e| (0, e.to_string()))?;
        let timestamp = Utc::now().timestamp();
        let body = claimed.payload.clone().into_bytes();
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in signing::headers(&key, &claimed.event_id, timestamp, &body) {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.map_err(|e| (0, describe(&e)))?;
        let status = i32::from(response.status().as_u16());
        if response.status().is_success() {
            return Ok(status);
        }
        // An unreadable body only leaves the logged error without a snippet; the status says it failed.
        let text = response.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(ERROR_BODY_CHARS).collect();
        Err((status, format!("HTTP {status}: {}", snippet.trim())))
    }
}

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

/// The whole cause chain of a transport error (the SSRF guard's refusal sits inside it).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
