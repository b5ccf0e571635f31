//! The public type names of the events fraud-svc publishes on its `EventLog`: the `type` of
//! the live feed and of outbound webhooks (`docs/api.md`), and the outbox's `event_type`
//! column. Each names one field of `Event.payload` in `referral/events/v1/events.proto`;
//! [`crate::events::v1::event::Payload::type_name`] maps a payload to its name.

/// `Payload::FraudAssessed`.
pub const FRAUD_ASSESSED: &str = "fraud.assessed";

/// `Payload::FraudResolved`.
pub const FRAUD_RESOLVED: &str = "fraud.resolved";

/// Every name above, in the order of the payload's fields.
pub const ALL: &[&str] = &[FRAUD_ASSESSED, FRAUD_RESOLVED];
