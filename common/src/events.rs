//! Event envelopes: building them and naming their types (`invitation.created`, ...).

use chrono::{DateTime, Utc};
use prost::Message;
use referral_proto::events::v1::{Event, event::Payload};

use crate::ids;

/// The public type name of an event payload, as used by the live feed and webhooks.
pub fn type_name(payload: &Payload) -> &'static str {
    match payload {
        Payload::InvitationCreated(_) => "invitation.created",
        Payload::InvitationScheduled(_) => "invitation.scheduled",
        Payload::InvitationSent(_) => "invitation.sent",
        Payload::InvitationDelivered(_) => "invitation.delivered",
        Payload::InvitationOpened(_) => "invitation.opened",
        Payload::InvitationClicked(_) => "invitation.clicked",
        Payload::InvitationSignedUp(_) => "invitation.signed_up",
        Payload::InvitationConverted(_) => "invitation.converted",
        Payload::InvitationExpired(_) => "invitation.expired",
        Payload::InvitationBounced(_) => "invitation.bounced",
        Payload::InvitationCancelled(_) => "invitation.cancelled",
        Payload::InvitationBlocked(_) => "invitation.blocked",
        Payload::InvitationComplained(_) => "invitation.complained",
        Payload::ReferralCodeCreated(_) => "referral_code.created",
        Payload::ClickRecorded(_) => "click.recorded",
        Payload::SignupRecorded(_) => "signup.recorded",
        Payload::ConversionRecorded(_) => "conversion.recorded",
        Payload::ReferrerTierChanged(_) => "referrer.tier_changed",
        Payload::FraudAssessed(_) => "fraud.assessed",
        Payload::FraudResolved(_) => "fraud.resolved",
        Payload::RewardGranted(_) => "reward.granted",
        Payload::RewardEligible(_) => "reward.eligible",
        Payload::RewardVoided(_) => "reward.voided",
        Payload::RewardExpired(_) => "reward.expired",
        Payload::PayoutPaid(_) => "payout.paid",
    }
}

/// The type name of an event, `unknown` for an empty payload.
pub fn event_type(event: &Event) -> &'static str {
    event.payload.as_ref().map(type_name).unwrap_or("unknown")
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
