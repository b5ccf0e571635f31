//! The public type names of the events invite-svc publishes on its `EventLog`: the `type` of
//! the live feed and of outbound webhooks (`docs/api.md`), and the outbox's `event_type`
//! column. Each names one field of `Event.payload` in `referral/events/v1/events.proto`;
//! [`crate::events::v1::event::Payload::type_name`] maps a payload to its name.

/// `Payload::InvitationCreated`.
pub const INVITATION_CREATED: &str = "invitation.created";

/// `Payload::InvitationScheduled`.
pub const INVITATION_SCHEDULED: &str = "invitation.scheduled";

/// `Payload::InvitationSent`.
pub const INVITATION_SENT: &str = "invitation.sent";

/// `Payload::InvitationDelivered`.
pub const INVITATION_DELIVERED: &str = "invitation.delivered";

/// `Payload::InvitationOpened`.
pub const INVITATION_OPENED: &str = "invitation.opened";

/// `Payload::InvitationClicked`.
pub const INVITATION_CLICKED: &str = "invitation.clicked";

/// `Payload::InvitationSignedUp`.
pub const INVITATION_SIGNED_UP: &str = "invitation.signed_up";

/// `Payload::InvitationConverted`.
pub const INVITATION_CONVERTED: &str = "invitation.converted";

/// `Payload::InvitationExpired`.
pub const INVITATION_EXPIRED: &str = "invitation.expired";

/// `Payload::InvitationBounced`.
pub const INVITATION_BOUNCED: &str = "invitation.bounced";

/// `Payload::InvitationCancelled`.
pub const INVITATION_CANCELLED: &str = "invitation.cancelled";

/// `Payload::InvitationBlocked`.
pub const INVITATION_BLOCKED: &str = "invitation.blocked";

/// `Payload::InvitationComplained`.
pub const INVITATION_COMPLAINED: &str = "invitation.complained";

/// `Payload::ReferralCodeCreated`.
pub const REFERRAL_CODE_CREATED: &str = "referral_code.created";

/// `Payload::ClickRecorded`.
pub const CLICK_RECORDED: &str = "click.recorded";

/// `Payload::SignupRecorded`.
pub const SIGNUP_RECORDED: &str = "signup.recorded";

/// `Payload::ConversionRecorded`.
pub const CONVERSION_RECORDED: &str = "conversion.recorded";

/// `Payload::ReferrerTierChanged`.
pub const REFERRER_TIER_CHANGED: &str = "referrer.tier_changed";

/// `Payload::PrivacyRequested`: a privacy request opened (every service does its part).
pub const PRIVACY_REQUESTED: &str = "privacy.requested";

/// `Payload::ConsentSuppressed`: an address put on the suppression list.
pub const CONSENT_SUPPRESSED: &str = "consent.suppressed";

/// `Payload::ConsentLifted`: a suppression lifted by an admin.
pub const CONSENT_LIFTED: &str = "consent.lifted";

/// Every name above, in the order of the payload's fields.
pub const ALL: &[&str] = &[
    INVITATION_CREATED,
    INVITATION_SCHEDULED,
    INVITATION_SENT,
    INVITATION_DELIVERED,
    INVITATION_OPENED,
    INVITATION_CLICKED,
    INVITATION_SIGNED_UP,
    INVITATION_CONVERTED,
    INVITATION_EXPIRED,
    INVITATION_BOUNCED,
    INVITATION_CANCELLED,
    INVITATION_BLOCKED,
    INVITATION_COMPLAINED,
    REFERRAL_CODE_CREATED,
    CLICK_RECORDED,
    SIGNUP_RECORDED,
    CONVERSION_RECORDED,
    REFERRER_TIER_CHANGED,
    PRIVACY_REQUESTED,
    CONSENT_SUPPRESSED,
    CONSENT_LIFTED,
];
