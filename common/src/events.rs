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

/// Every public event type name (`type_name`'s answers), for callers that subscribe by name.
pub const EVENT_TYPES: &[&str] = &[
    "invitation.created",
    "invitation.scheduled",
    "invitation.sent",
    "invitation.delivered",
    "invitation.opened",
    "invitation.clicked",
    "invitation.signed_up",
    "invitation.converted",
    "invitation.expired",
    "invitation.bounced",
    "invitation.cancelled",
    "invitation.blocked",
    "invitation.complained",
    "referral_code.created",
    "click.recorded",
    "signup.recorded",
    "conversion.recorded",
    "referrer.tier_changed",
    "fraud.assessed",
    "fraud.resolved",
    "reward.granted",
    "reward.eligible",
    "reward.voided",
    "reward.expired",
    "payout.paid",
];

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

#[cfg(test)]
mod tests {
    use referral_proto::events::v1::event::Payload as P;

    use super::*;

    #[test]
    fn event_types_lists_every_type_name_once() {
        let payloads = [
            P::InvitationCreated(Default::default()),
            P::InvitationScheduled(Default::default()),
            P::InvitationSent(Default::default()),
            P::InvitationDelivered(Default::default()),
            P::InvitationOpened(Default::default()),
            P::InvitationClicked(Default::default()),
            P::InvitationSignedUp(Default::default()),
            P::InvitationConverted(Default::default()),
            P::InvitationExpired(Default::default()),
            P::InvitationBounced(Default::default()),
            P::InvitationCancelled(Default::default()),
            P::InvitationBlocked(Default::default()),
            P::InvitationComplained(Default::default()),
            P::ReferralCodeCreated(Default::default()),
            P::ClickRecorded(Default::default()),
            P::SignupRecorded(Default::default()),
            P::ConversionRecorded(Default::default()),
            P::ReferrerTierChanged(Default::default()),
            P::FraudAssessed(Default::default()),
            P::FraudResolved(Default::default()),
            P::RewardGranted(Default::default()),
            P::RewardEligible(Default::default()),
            P::RewardVoided(Default::default()),
            P::RewardExpired(Default::default()),
            P::PayoutPaid(Default::default()),
        ];
        let names: Vec<&str> = payloads.iter().map(type_name).collect();
        assert_eq!(names, EVENT_TYPES);
    }
}
