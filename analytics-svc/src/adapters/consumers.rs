//! analytics-svc's subscriptions to invite-svc's, fraud-svc's and incentive-svc's event logs:
//! each batch goes to `app::apply_events`.

use std::sync::Arc;

use referral_common::consumer::EventSink;
use referral_proto::events::v1::Event;

use crate::{app::apply_events, store::Store};

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
        Ok(apply_events::last_offset(&self.store, source).await?)
    }

    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        apply_events::apply(&self.store, source, events, &self.currency).await?;
        Ok(())
    }
}
