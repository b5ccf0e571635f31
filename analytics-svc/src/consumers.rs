//! analytics-svc's subscriptions to invite-svc's, fraud-svc's and incentive-svc's event logs:
//! every event is turned into its rollup change (`domain::rollup::change_of`, pure) and each
//! batch is applied in one transaction with the source's new offset and the applied ids.

use std::sync::Arc;

use referral_common::consumer::EventSink;
use referral_proto::events::v1::Event;

use crate::{
    domain::rollup::change_of,
    store::{Consumed, Store},
};

/// The name analytics-svc reads the logs under.
pub const CONSUMER: &str = "analytics-svc";
/// The logs, by the key their offsets are stored under.
pub const INVITE_SOURCE: &str = "invite";
pub const FRAUD_SOURCE: &str = "fraud";
pub const INCENTIVE_SOURCE: &str = "incentive";

/// Applies events to the rollups.
#[derive(Clone)]
pub struct Rollups<S> {
    store: S,
    currency: Arc<str>,
}

impl<S: Store> Rollups<S> {
    pub fn new(store: S, currency: &str) -> Self {
        Self {
            store,
            currency: currency.into(),
        }
    }
}

impl<S: Store> EventSink for Rollups<S> {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        Ok(self.store.last_offset(source).await?)
    }

    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        let items: Vec<Consumed> = events
            .iter()
            .map(|e| Consumed {
                event_id: e.id.clone(),
                offset: e.offset,
                change: change_of(e),
            })
            .collect();
        let summary = self.store.apply_events(source, items, &self.currency).await?;
        metrics::counter!("analytics_events_applied_total", "source" => source.to_string())
            .increment(u64::from(summary.applied));
        Ok(())
    }
}
