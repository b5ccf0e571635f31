//! Enum-like columns hold the API names (proto enum value names), so they map to the proto
//! enums by name (prost's `from_str_name`), for the gRPC answers and the events alike.
//!
//! Why an unknown name reads as UNSPECIFIED (0) rather than an error: every such column is
//! written only from the domain's own names (`api_enum!`), so an unknown one can only be a
//! value a newer version wrote; proto's UNSPECIFIED is how a reader says "a value I do not
//! know", and refusing the whole row would hide everything else in it.

use referral_proto::{
    common::v1::{Flow, PartyKind, VendorType},
    invite::v1::{Channel, InvitationStatus, Plan, ReferrerTier},
};

pub fn party_kind(s: &str) -> PartyKind {
    PartyKind::from_str_name(s).unwrap_or_default()
}
pub fn vendor_type(s: &str) -> VendorType {
    VendorType::from_str_name(s).unwrap_or_default()
}
pub fn flow(s: &str) -> Flow {
    Flow::from_str_name(s).unwrap_or_default()
}
pub fn channel(s: &str) -> Channel {
    Channel::from_str_name(s).unwrap_or_default()
}
pub fn status(s: &str) -> InvitationStatus {
    InvitationStatus::from_str_name(s).unwrap_or_default()
}
pub fn tier(s: &str) -> ReferrerTier {
    ReferrerTier::from_str_name(s).unwrap_or_default()
}
pub fn plan(s: &str) -> Plan {
    Plan::from_str_name(s).unwrap_or_default()
}
