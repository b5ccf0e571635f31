//! The public type names of the events incentive-svc publishes on its `EventLog`: the `type` of
//! the live feed and of outbound webhooks (`docs/api.md`), and the outbox's `event_type`
//! column. Each names one field of `Event.payload` in `referral/events/v1/events.proto`;
//! [`crate::events::v1::event::Payload::type_name`] maps a payload to its name.

/// `Payload::RewardGranted`.
pub const REWARD_GRANTED: &str = "reward.granted";

/// `Payload::RewardEligible`.
pub const REWARD_ELIGIBLE: &str = "reward.eligible";

/// `Payload::RewardVoided`.
pub const REWARD_VOIDED: &str = "reward.voided";

/// `Payload::RewardExpired`.
pub const REWARD_EXPIRED: &str = "reward.expired";

/// `Payload::PayoutPaid`.
pub const PAYOUT_PAID: &str = "payout.paid";

/// Every name above, in the order of the payload's fields.
pub const ALL: &[&str] = &[
    REWARD_GRANTED,
    REWARD_ELIGIBLE,
    REWARD_VOIDED,
    REWARD_EXPIRED,
    PAYOUT_PAID,
];
