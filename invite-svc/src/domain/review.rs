//! What a fraud decision does to what invite-svc holds: an invitation held for review is
//! released or blocked; a signup rejected after the fact loses its attribution.

use super::status::{Channel, InvitationStatus, released_status};

/// fraud-svc's action, as far as invite-svc is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Review,
    Reject,
}

impl Decision {
    /// From the API name (`APPROVE`, `REVIEW`, `REJECT`); anything else holds.
    pub fn from_action(name: &str) -> Decision {
        match name {
            "APPROVE" => Decision::Approve,
            "REJECT" => Decision::Reject,
            _ => Decision::Review,
        }
    }
}

/// The status a held invitation moves to, or `None` to keep holding it.
pub fn invitation_after(decision: Decision, channel: Channel) -> Option<InvitationStatus> {
    match decision {
        Decision::Approve => Some(released_status(channel)),
        Decision::Reject => Some(InvitationStatus::Blocked),
        Decision::Review => None,
    }
}

/// Whether a signup keeps its attribution: a rejected referral earns no referrer credit
/// (the user still exists); review keeps it, with rewards held downstream.
pub fn signup_stays_attributed(decision: Decision) -> bool {
    decision != Decision::Reject
}

/// The reason recorded on a signup that fraud rejected.
pub const FRAUD_REJECTED: &str = "FRAUD_REJECTED";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_invitations_are_released_or_blocked() {
        assert_eq!(
            invitation_after(Decision::Approve, Channel::Email),
            Some(InvitationStatus::Scheduled)
        );
        assert_eq!(
            invitation_after(Decision::Approve, Channel::Link),
            Some(InvitationStatus::Sent)
        );
        assert_eq!(
            invitation_after(Decision::Reject, Channel::Sms),
            Some(InvitationStatus::Blocked)
        );
        assert_eq!(invitation_after(Decision::Review, Channel::Email), None);
    }

    #[test]
    fn only_rejection_removes_attribution() {
        assert!(signup_stays_attributed(Decision::Approve));
        assert!(signup_stays_attributed(Decision::Review));
        assert!(!signup_stays_attributed(Decision::Reject));
        assert_eq!(Decision::from_action("BOGUS"), Decision::Review);
    }
}
