//! Hard rules: each one that fires rejects, whatever the score.

use super::{Count, RuleHit, identity};

pub const SELF_REFERRAL: &str = "self_referral";
pub const RECIPIENT_INVITED_BY_MANY: &str = "recipient_invited_by_many";
pub const DEVICE_INVITATION_FLOOD: &str = "device_invitation_flood";
pub const DISPOSABLE_RECIPIENT: &str = "disposable_recipient";

/// What is known of the referee (or an invitation's recipient) for the self-referral rule.
#[derive(Debug, Clone, Default)]
pub struct RefereeIdentity<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub device_id: &'a str,
}

/// What the store found of the referrer's own identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferrerMatch {
    /// The referee's e-mail is one the referrer used.
    pub same_email: bool,
    /// The referee's device is one the referrer used.
    pub same_device: bool,
}

/// Self-referral: the referee is the referrer — the same user id, the same normalised
/// e-mail, or the same device id.
pub fn self_referral(
    referrer_id: &str,
    referee: &RefereeIdentity<'_>,
    found: &ReferrerMatch,
) -> Option<RuleHit> {
    let mut why = Vec::new();
    if !referrer_id.is_empty() && referee.user_id == referrer_id {
        why.push(format!("the referee is the referrer ({referrer_id})"));
    }
    if found.same_email && !referee.email.is_empty() {
        why.push(format!("{} is the referrer's own e-mail", referee.email));
    }
    if found.same_device && !referee.device_id.is_empty() {
        why.push(format!("device {} is the referrer's own", referee.device_id));
    }
    (!why.is_empty()).then(|| RuleHit {
        name: SELF_REFERRAL,
        detail: why.join("; "),
    })
}

/// One recipient invited by more than `limit` different referrers in 30 days (this
/// invitation's referrer included).
pub fn recipient_invited_by_many(referrers: Count, limit: u32) -> Option<RuleHit> {
    (referrers.n > limit).then(|| RuleHit {
        name: RECIPIENT_INVITED_BY_MANY,
        detail: format!(
            "this recipient was invited by {} different referrers in the last 30 days (at most {limit})",
            referrers.shown()
        ),
    })
}

/// More than `limit` invitations from one device id in 24 h (this one included).
///
/// With `single_referrer_exempt`, a device that acted for one referrer only is that
/// referrer's own computer importing their own clients: pacing that is the quotas' job, and
/// docs/api.md promises a supplier importing two hundred real clients is never treated as a
/// fraudster. The rule then catches what it is for: one device acting for many accounts.
pub fn device_invitation_flood(
    device_id: &str,
    invitations: Count,
    referrers: Count,
    limit: u32,
    single_referrer_exempt: bool,
) -> Option<RuleHit> {
    if device_id.is_empty() || invitations.n <= limit {
        return None;
    }
    if single_referrer_exempt && referrers.n <= 1 {
        return None;
    }
    Some(RuleHit {
        name: DEVICE_INVITATION_FLOOD,
        detail: format!(
            // Never the device id itself: the explanation is stored and shown.
            "{} invitations from one device in the last 24 h for {} referrer(s) (at most {limit})",
            invitations.shown(),
            referrers.shown()
        ),
    })
}

/// An invitation to a disposable address.
pub fn disposable_recipient(email_normalized: &str) -> Option<RuleHit> {
    identity::disposable_domain(email_normalized).map(|domain| RuleHit {
        name: DISPOSABLE_RECIPIENT,
        detail: format!("{domain} is a disposable e-mail domain"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_referral_by_id_email_or_device() {
        let me = RefereeIdentity {
            user_id: "u1",
            email: "a@example.com",
            device_id: "d1",
        };
        let none = ReferrerMatch::default();
        assert!(self_referral("u1", &me, &none).is_some());
        assert!(self_referral("u2", &me, &none).is_none());
        let hit = self_referral(
            "u2",
            &me,
            &ReferrerMatch {
                same_email: true,
                same_device: false,
            },
        )
        .unwrap();
        assert_eq!(hit.name, SELF_REFERRAL);
        assert!(hit.detail.contains("a@example.com"));
        let hit = self_referral(
            "u2",
            &me,
            &ReferrerMatch {
                same_email: false,
                same_device: true,
            },
        )
        .unwrap();
        assert!(hit.detail.contains("device d1"));
        // An unknown referrer is nobody's self.
        let anon = RefereeIdentity::default();
        assert!(self_referral("", &anon, &none).is_none());
    }

    #[test]
    fn more_than_three_referrers() {
        assert!(recipient_invited_by_many(Count::exact(3), 3).is_none());
        assert!(recipient_invited_by_many(Count::exact(4), 3).is_some());
    }

    #[test]
    fn device_flood_spares_one_referrer_importing_their_clients() {
        assert!(device_invitation_flood("d", Count::exact(100), Count::exact(2), 100, true).is_none());
        assert!(device_invitation_flood("d", Count::exact(101), Count::exact(2), 100, true).is_some());
        assert!(device_invitation_flood("d", Count::exact(150), Count::exact(1), 100, true).is_none());
        assert!(device_invitation_flood("d", Count::exact(150), Count::exact(1), 100, false).is_some());
        assert!(device_invitation_flood("", Count::exact(500), Count::exact(5), 100, false).is_none());
    }

    #[test]
    fn disposable_recipients() {
        assert!(disposable_recipient("x@mailinator.com").is_some());
        assert!(disposable_recipient("x@example.com").is_none());
        assert!(disposable_recipient("").is_none());
    }
}
