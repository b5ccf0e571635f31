//! Event envelopes: building, encoding and decoding them. Their type names live with the
//! services that own them (`referral_proto::{invite,fraud,incentive}::v1::events`).

use chrono::{DateTime, Utc};
use prost::Message;
use referral_proto::events::v1::{Event, event::Payload};

use crate::ids;

/// The type name of an event (`invitation.created`, ...), `unknown` for an empty payload.
/// The names belong to the services that own the events, beside their protos
/// (`referral_proto::invite::v1::events`, ...); this is the one place the outbox, the parked
/// work and the consumers ask.
pub fn event_type(event: &Event) -> &'static str {
    event.type_name()
}

/// A new event (its offset is assigned after commit by the outbox relay).
pub fn new_event(source: &str, aggregate_id: &str, at: DateTime<Utc>, payload: Payload) -> Event {
    Event {
        id: ids::new_id(),
        offset: 0,
        source: source.to_string(),
        occurred_at: Some(ids::to_ts(at)),
        aggregate_id: aggregate_id.to_string(),
        payload: Some(payload),
    }
}

/// Wire bytes of an event, as stored in the outbox.
pub fn encode(event: &Event) -> Vec<u8> {
    event.encode_to_vec()
}

pub fn decode(bytes: &[u8], offset: i64) -> Result<Event, prost::DecodeError> {
    let mut e = Event::decode(bytes)?;
    e.offset = offset;
    Ok(e)
}
