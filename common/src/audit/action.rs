//! The audited action names, in one place so that writers and the `action=` filter agree.

pub const REFERRER_TIER_SET: &str = "referrer.tier.set";
/// An admin (or service) cancelling an invitation on its referrer's behalf.
pub const INVITATION_CANCEL: &str = "invitation.cancel";
pub const FRAUD_CASE_RESOLVE: &str = "fraud_case.resolve";
pub const REWARD_PROGRAM_PUT: &str = "reward_program.put";
pub const CAMPAIGN_CREATE: &str = "campaign.create";
pub const PAYOUT_CREATE: &str = "payout.create";
/// A reward voided or clawed back because of a fraud decision.
pub const REWARD_REVERSE: &str = "reward.reverse";
pub const WEBHOOK_ENDPOINT_CREATE: &str = "webhook_endpoint.create";
pub const WEBHOOK_ENDPOINT_DELETE: &str = "webhook_endpoint.delete";
pub const API_KEY_CREATE: &str = "api_key.create";
pub const API_KEY_ROTATE: &str = "api_key.rotate";
pub const API_KEY_REVOKE: &str = "api_key.revoke";
/// An admin lifting a suppression (invite-svc's consent list).
pub const SUPPRESSION_LIFT: &str = "suppression.lift";
/// A consumer parking an event it could not apply (actor: system).
pub const EVENT_PARK: &str = "event.park";
/// An admin retrying parked work (an event or an invitation send).
pub const PARKED_RETRY: &str = "parked.retry";
/// invite-svc's scheduler parking an invitation whose send kept panicking (actor: system).
pub const SEND_PARK: &str = "invitation.send.park";
/// An exchange rate revenue reports convert with, created or replaced (analytics-svc).
pub const FX_RATE_PUT: &str = "fx_rate.put";
/// A person's erasure or export opened as a privacy request (invite-svc).
pub const PRIVACY_REQUEST_CREATE: &str = "privacy_request.create";
