//! The webhook consumer: reads the invite, fraud and incentive logs under its own name and
//! offsets and hands each batch to `app::webhook_fan_out`; wakes the dispatcher when
//! deliveries were created.

use std::sync::Arc;

use referral_common::{consumer::EventSink, pii::PiiKeys};
use referral_proto::events::v1::Event;
use tokio::sync::Notify;

use crate::{app::webhook_fan_out, store::webhooks::WebhookStore};

/// The name the webhook consumer reads the producers' logs under.
pub const CONSUMER: &str = "analytics-svc-webhooks";

pub struct WebhookEvents<S> {
    store: S,
    /// Wakes the dispatcher when deliveries were created.
    wake: Arc<Notify>,
    /// Pseudonymises the referees a body names (`domain::privacy`).
    pii: PiiKeys,
}

impl<S: WebhookStore> WebhookEvents<S> {
    pub fn new(store: S, wake: Arc<Notify>, pii: PiiKeys) -> Self {
        Self { store, wake, pii }
    }
}

impl<S: WebhookStore> EventSink for WebhookEvents<S> {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        Ok(webhook_fan_out::last_offset(&self.store, source).await?)
    }

    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        if webhook_fan_out::fan_out(&self.store, source, events, &self.pii).await? > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }
}
