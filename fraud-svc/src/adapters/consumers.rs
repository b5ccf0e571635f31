//! fraud-svc's subscription to invite-svc's event log: hands each batch to
//! [`app::apply_invite_events`](crate::app::apply_invite_events), which says what each event
//! does here.

use std::sync::Arc;

use referral_common::consumer::EventSink;
use referral_common::pii::PiiKeys;
use referral_proto::events::v1::{Event, event::Payload};

use crate::{app::apply_invite_events, domain::Scoring, store::Store};

/// The name fraud-svc reads invite-svc's log under.
pub const CONSUMER: &str = "fraud-svc";
/// invite-svc's log, the key of the stored offset.
pub const INVITE_SOURCE: &str = "invite";

pub struct InviteEvents<S> {
    store: S,
    scoring: Arc<Scoring>,
    /// Opens the IPs, device and visitor ids invite-svc's events carry sealed.
    pii: Arc<PiiKeys>,
}

impl<S: Store> InviteEvents<S> {
    pub fn new(store: S, scoring: Scoring, pii: PiiKeys) -> Self {
        Self {
            store,
            scoring: Arc::new(scoring),
            pii: Arc::new(pii),
        }
    }
}

/// invite-svc seals the IPs, device and visitor ids of its events (its outbox is a table of
/// its database); opened here, so the rules see them as before. A value from before sealing
/// opens as it is; one that does not open fails the batch (retried, then parked), never an
/// empty value.
fn open_sealed(pii: &PiiKeys, events: &mut [Event]) -> anyhow::Result<()> {
    for event in events {
        let fields: Vec<&mut String> = match &mut event.payload {
            Some(Payload::InvitationCreated(c)) => vec![&mut c.ip, &mut c.device_id],
            Some(Payload::SignupRecorded(s)) => vec![&mut s.ip, &mut s.device_id],
            Some(Payload::ClickRecorded(c)) => vec![&mut c.ip, &mut c.device_id, &mut c.visitor_id],
            _ => continue,
        };
        for field in fields {
            *field = pii
                .open(field)
                .map_err(|e| anyhow::anyhow!("event {}: {e}", event.id))?;
        }
    }
    Ok(())
}

impl<S: Store> EventSink for InviteEvents<S> {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        Ok(apply_invite_events::last_offset(&self.store, source).await?)
    }

    async fn apply(&self, source: &str, mut events: Vec<Event>) -> anyhow::Result<()> {
        open_sealed(&self.pii, &mut events)?;
        apply_invite_events::apply(&self.store, &self.scoring, source, &events).await
    }
}
