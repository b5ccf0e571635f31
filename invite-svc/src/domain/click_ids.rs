//! Judging the click id a signup names, before any store is asked.
//!
//! A signed id (see `referral_common::click_id`) is evidence on its own: its code and time
//! are trusted once its MAC verifies, whether or not the gateway's batch has written the
//! click's row yet — that is what makes attribution immediate and replica-independent. An
//! id in the older plain format is only as good as the row recorded under it.

use chrono::{DateTime, TimeDelta, Utc};
use referral_common::click_id::{self, ClickKeys};

/// How far a click's time may lie after the signup's and still count, as if it were at the
/// signup instant: the gateway (which stamps clicks) and invite-svc (which stamps signups)
/// keep separate clocks, and a signup posted the instant after a click must not lose it to
/// a few seconds of drift. Further ahead the id is refused as [`RejectedClick::AfterSignup`]:
/// no clock is that far off, so the click did not lead to this signup.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);

api_enum! {
    /// Why a click id attributes to no one (the API's `rejectedClick`).
    pub enum RejectedClick ("rejected click") {
        /// Not a signed id, and not readable as one.
        Malformed => "MALFORMED",
        /// Signed with a key we do not hold (retired, or another deployment's).
        UnknownKey => "UNKNOWN_KEY",
        /// The MAC does not match: altered or forged.
        BadSignature => "BAD_SIGNATURE",
        /// Older than the attribution window.
        Expired => "EXPIRED",
        /// Stamped more than [`CLOCK_SKEW`] after the signup: it cannot have brought it.
        AfterSignup => "AFTER_SIGNUP",
        /// Signed for a code that does not exist (any more).
        UnknownCode => "UNKNOWN_CODE",
        /// A plain (unsigned) id with no click recorded under it.
        UnknownClick => "UNKNOWN_CLICK",
    }
}

/// What a click id says, once judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickEvidence {
    /// A verified signed id: the code clicked (as signed; normalise before looking it up)
    /// and when, already moved onto the signup instant when within [`CLOCK_SKEW`] after it.
    Signed { code: String, at: DateTime<Utc> },
    /// An unsigned id: the stored row, if any, is the only evidence.
    Plain,
}

/// Judges `id` for a signup at `signup_at`; the window is `window_days` (inclusive), and a
/// click up to [`CLOCK_SKEW`] after the signup counts as made at the signup instant.
pub fn judge(
    keys: &ClickKeys,
    id: &str,
    signup_at: DateTime<Utc>,
    window_days: i64,
) -> Result<ClickEvidence, RejectedClick> {
    if !click_id::is_signed_format(id) {
        return Ok(ClickEvidence::Plain);
    }
    let click = keys.verify(id).map_err(|r| match r {
        click_id::Rejection::Malformed => RejectedClick::Malformed,
        click_id::Rejection::UnknownKey => RejectedClick::UnknownKey,
        click_id::Rejection::BadSignature => RejectedClick::BadSignature,
    })?;
    let at = if click.at <= signup_at {
        click.at
    } else if click.at - signup_at <= CLOCK_SKEW {
        signup_at
    } else {
        return Err(RejectedClick::AfterSignup);
    };
    let window = TimeDelta::try_days(window_days).unwrap_or(TimeDelta::MAX);
    if signup_at.signed_duration_since(at) > window {
        return Err(RejectedClick::Expired);
    }
    Ok(ClickEvidence::Signed { code: click.code, at })
}

#[cfg(test)]
mod tests {
    use referral_common::config::Secret;

    use super::*;

    fn keys() -> ClickKeys {
        ClickKeys::parse(
            "CLICK_SIGNING_KEYS",
            &Secret::new("k1:0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    fn signup_at() -> DateTime<Utc> {
        "2026-06-30T12:00:00Z".parse().unwrap()
    }

    fn signed_at(at: DateTime<Utc>) -> Result<ClickEvidence, RejectedClick> {
        let k = keys();
        judge(&k, &k.sign("LOVE-ABCDEF", at), signup_at(), 30)
    }

    #[test]
    fn the_window_edge_is_exact() {
        let edge = signup_at() - TimeDelta::days(30);
        assert_eq!(
            signed_at(edge),
            Ok(ClickEvidence::Signed {
                code: "LOVE-ABCDEF".into(),
                at: edge
            })
        );
        assert!(signed_at(edge + TimeDelta::seconds(1)).is_ok());
        assert_eq!(
            signed_at(edge - TimeDelta::seconds(1)),
            Err(RejectedClick::Expired)
        );
        assert_eq!(
            signed_at(edge - TimeDelta::milliseconds(1)),
            Err(RejectedClick::Expired)
        );
    }

    #[test]
    fn a_few_seconds_of_clock_skew_do_not_lose_the_click() {
        for ahead in [1, 5, 60] {
            assert_eq!(
                signed_at(signup_at() + TimeDelta::seconds(ahead)),
                Ok(ClickEvidence::Signed {
                    code: "LOVE-ABCDEF".into(),
                    at: signup_at()
                }),
                "{ahead}s ahead"
            );
        }
        // A second further ahead no clock drift explains it: refused, with the reason.
        for ahead in [
            TimeDelta::seconds(61),
            TimeDelta::minutes(10),
            TimeDelta::days(400),
        ] {
            assert_eq!(
                signed_at(signup_at() + ahead),
                Err(RejectedClick::AfterSignup),
                "{ahead}"
            );
        }
        assert_eq!(RejectedClick::AfterSignup.as_str(), "AFTER_SIGNUP");
    }

    #[test]
    fn altered_forged_and_foreign_ids_are_named() {
        let k = keys();
        let id = k.sign("LOVE-ABCDEF", signup_at());
        let altered = id.replacen("LOVE-ABCDEF", "LOVE-ABCDEG", 1);
        assert_eq!(
            judge(&k, &altered, signup_at(), 30),
            Err(RejectedClick::BadSignature)
        );
        let foreign = id.replacen("c1.k1.", "c1.k9.", 1);
        assert_eq!(
            judge(&k, &foreign, signup_at(), 30),
            Err(RejectedClick::UnknownKey)
        );
        assert_eq!(
            judge(&k, "c1.garbage", signup_at(), 30),
            Err(RejectedClick::Malformed)
        );
        assert_eq!(
            judge(&k, "0190b6e0-plain", signup_at(), 30),
            Ok(ClickEvidence::Plain)
        );
    }
}
