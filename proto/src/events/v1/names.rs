//! Naming event payloads: each name is defined by the service that owns the event, beside
//! its proto (`invite::v1::events`, `fraud::v1::events`, `incentive::v1::events`); this maps
//! the payload's fields onto them.

use super::{Event, event::Payload};
use crate::{fraud::v1::events as fraud, incentive::v1::events as incentive, invite::v1::events as invite};

impl Payload {
    /// The public type name of this payload (`invitation.created`, ...), as the live feed,
    /// webhooks and the outbox's `event_type` column use it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Payload::InvitationCreated(_) => invite::INVITATION_CREATED,
            Payload::InvitationScheduled(_) => invite::INVITATION_SCHEDULED,
            Payload::InvitationSent(_) => invite::INVITATION_SENT,
            Payload::InvitationDelivered(_) => invite::INVITATION_DELIVERED,
            Payload::InvitationOpened(_) => invite::INVITATION_OPENED,
            Payload::InvitationClicked(_) => invite::INVITATION_CLICKED,
            Payload::InvitationSignedUp(_) => invite::INVITATION_SIGNED_UP,
            Payload::InvitationConverted(_) => invite::INVITATION_CONVERTED,
            Payload::InvitationExpired(_) => invite::INVITATION_EXPIRED,
            Payload::InvitationBounced(_) => invite::INVITATION_BOUNCED,
            Payload::InvitationCancelled(_) => invite::INVITATION_CANCELLED,
            Payload::InvitationBlocked(_) => invite::INVITATION_BLOCKED,
            Payload::InvitationComplained(_) => invite::INVITATION_COMPLAINED,
            Payload::ReferralCodeCreated(_) => invite::REFERRAL_CODE_CREATED,
            Payload::ClickRecorded(_) => invite::CLICK_RECORDED,
            Payload::SignupRecorded(_) => invite::SIGNUP_RECORDED,
            Payload::ConversionRecorded(_) => invite::CONVERSION_RECORDED,
            Payload::ReferrerTierChanged(_) => invite::REFERRER_TIER_CHANGED,
            Payload::PrivacyRequested(_) => invite::PRIVACY_REQUESTED,
            Payload::ConsentSuppressed(_) => invite::CONSENT_SUPPRESSED,
            Payload::ConsentLifted(_) => invite::CONSENT_LIFTED,
            Payload::FraudAssessed(_) => fraud::FRAUD_ASSESSED,
            Payload::FraudResolved(_) => fraud::FRAUD_RESOLVED,
            Payload::RewardGranted(_) => incentive::REWARD_GRANTED,
            Payload::RewardEligible(_) => incentive::REWARD_ELIGIBLE,
            Payload::RewardVoided(_) => incentive::REWARD_VOIDED,
            Payload::RewardExpired(_) => incentive::REWARD_EXPIRED,
            Payload::PayoutPaid(_) => incentive::PAYOUT_PAID,
        }
    }
}

impl Event {
    /// The type name of this event's payload, `unknown` when it has none.
    pub fn type_name(&self) -> &'static str {
        self.payload.as_ref().map_or("unknown", Payload::type_name)
    }
}

/// Every public event type name (what [`Payload::type_name`] answers), owner by owner, for
/// callers that subscribe by name.
pub const EVENT_TYPES: &[&str] = &[
    invite::INVITATION_CREATED,
    invite::INVITATION_SCHEDULED,
    invite::INVITATION_SENT,
    invite::INVITATION_DELIVERED,
    invite::INVITATION_OPENED,
    invite::INVITATION_CLICKED,
    invite::INVITATION_SIGNED_UP,
    invite::INVITATION_CONVERTED,
    invite::INVITATION_EXPIRED,
    invite::INVITATION_BOUNCED,
    invite::INVITATION_CANCELLED,
    invite::INVITATION_BLOCKED,
    invite::INVITATION_COMPLAINED,
    invite::REFERRAL_CODE_CREATED,
    invite::CLICK_RECORDED,
    invite::SIGNUP_RECORDED,
    invite::CONVERSION_RECORDED,
    invite::REFERRER_TIER_CHANGED,
    invite::PRIVACY_REQUESTED,
    invite::CONSENT_SUPPRESSED,
    invite::CONSENT_LIFTED,
    fraud::FRAUD_ASSESSED,
    fraud::FRAUD_RESOLVED,
    incentive::REWARD_GRANTED,
    incentive::REWARD_ELIGIBLE,
    incentive::REWARD_VOIDED,
    incentive::REWARD_EXPIRED,
    incentive::PAYOUT_PAID,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_every_owners_names_once_in_payload_order() {
        let owners: Vec<&str> = [invite::ALL, fraud::ALL, incentive::ALL].concat();
        assert_eq!(EVENT_TYPES, owners.as_slice());
        let payloads = [
            Payload::InvitationCreated(Default::default()),
            Payload::InvitationScheduled(Default::default()),
            Payload::InvitationSent(Default::default()),
            Payload::InvitationDelivered(Default::default()),
            Payload::InvitationOpened(Default::default()),
            Payload::InvitationClicked(Default::default()),
            Payload::InvitationSignedUp(Default::default()),
            Payload::InvitationConverted(Default::default()),
            Payload::InvitationExpired(Default::default()),
            Payload::InvitationBounced(Default::default()),
            Payload::InvitationCancelled(Default::default()),
            Payload::InvitationBlocked(Default::default()),
            Payload::InvitationComplained(Default::default()),
            Payload::ReferralCodeCreated(Default::default()),
            Payload::ClickRecorded(Default::default()),
            Payload::SignupRecorded(Default::default()),
            Payload::ConversionRecorded(Default::default()),
            Payload::ReferrerTierChanged(Default::default()),
            Payload::PrivacyRequested(Default::default()),
            Payload::ConsentSuppressed(Default::default()),
            Payload::ConsentLifted(Default::default()),
            Payload::FraudAssessed(Default::default()),
            Payload::FraudResolved(Default::default()),
            Payload::RewardGranted(Default::default()),
            Payload::RewardEligible(Default::default()),
            Payload::RewardVoided(Default::default()),
            Payload::RewardExpired(Default::default()),
            Payload::PayoutPaid(Default::default()),
        ];
        let names: Vec<&str> = payloads.iter().map(Payload::type_name).collect();
        assert_eq!(names, EVENT_TYPES);
        let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len());
    }
}
