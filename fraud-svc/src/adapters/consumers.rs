//! fraud-svc's subscription to invite-svc's event log: hands each batch to
//! [`app::apply_invite_events`](crate::app::apply_invite_events), which says what each event
//! does here.

use std::sync::Arc;

use referral_common::consumer::EventSink;
use referral_proto::events::v1::Event;

use crate::{app::apply_invite_events, domain::Scoring, store::Store};

/// The name fraud-svc reads invite-svc's log under.
pub const CONSUMER: &str = "fraud-svc";
/// invite-svc's log, the key of the stored offset.
pub const INVITE_SOURCE: &str = "invite";

pub struct InviteEvents<S> {
    store: S,
    scoring: Arc<Scoring>,
}

impl<S: Store> InviteEvents<S> {
    pub fn new(store: S, scoring: Scoring) -> Self {
        Self {
            store,
            scoring: Arc::new(scoring),
        }
    }
}

impl<S: Store> EventSink for InviteEvents<S> {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        Ok(apply_invite_events::last_offset(&self.store, source).await?)
    }

    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        apply_invite_events::apply(&self.store, &self.scoring, source, &events).await
    }
}
