//! Pure domain rules of invite-svc: plain functions over plain data, no I/O.
//!
//! Every rule whose numbers the API contract fixes (code shapes, contact normalisation,
//! the invitation state machine, humane send times, quota pacing, attribution) lives here
//! under its own name, so the store and the gRPC glue only move data in and out.

/// Declares a fieldless enum whose variants have fixed API names (`"SIGNED_UP"`), with
/// `ALL`, `as_str`, `parse`, `Display` and `FromStr`, so every such enum spells and reads
/// its names the same way.
macro_rules! api_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $api:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            const NAMES: &'static [&'static str] = &[$($api),+];

            /// The API name (proto enum value name, also what the store persists).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $api),+
                }
            }

            /// Parses an API name exactly as spelled in the contract (case-sensitive,
            /// like the proto3 JSON mapping).
            pub fn parse(s: &str) -> Result<Self, $crate::domain::UnknownName> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::domain::UnknownName::new($what, s, Self::NAMES))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

pub mod api_keys;
pub mod attribution;
pub mod click_ids;
pub mod codes;
pub mod contact;
pub mod delivery;
pub mod party;
pub mod quota;
pub mod review;
pub mod status;
pub mod suppression;
pub mod templates;
pub mod timing;
pub mod webhooks;

pub use attribution::{
    ATTRIBUTION_WINDOW_DAYS, Candidates, Decision, NotAttributedReason, SignupFacts, Touch, TouchKind,
    invitation_expires_at, resolve, resolve_with_window, within_attribution_window,
};
pub use codes::{
    CODE_ALPHABET, CODE_SUFFIX_LEN, COUPLE_PREFIXES, CodeError, SUPPLIER_PREFIXES, code_kind, generate_code,
    normalize_code, prefixes,
};
pub use contact::{ContactError, email_domain, normalize_email, normalize_phone};
pub use party::{Flow, PartyKind, flow};
pub use quota::{
    QuotaConfig, QuotaConfigError, QuotaLimits, QuotaUsage, ReferrerTier, day_bucket, hour_bucket, place,
};
pub use status::{
    Channel, IllegalTransition, InvitationStatus, Screening, Transition, initial_status, released_status,
    transition,
};
pub use timing::{
    DEFAULT_HORIZON_DAYS, DEFAULT_PREFERRED_SLOT, DEFAULT_TIME_ZONE, SendRules, SendRulesError, TimingError,
    best_slot_within, first_allowed_instant, is_allowed, parse_preferred_slot, parse_timezone,
    parse_wedding_date, send_candidate,
};

/// A name that is not one of an API enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of {}", .expected.join(", "))]
pub struct UnknownName {
    /// What was being parsed, e.g. "invitation status".
    pub what: &'static str,
    /// The offending input, shortened for display.
    pub value: String,
    /// The accepted names.
    pub expected: &'static [&'static str],
}

impl UnknownName {
    fn new(what: &'static str, value: &str, expected: &'static [&'static str]) -> Self {
        Self {
            what,
            value: shown(value),
            expected,
        }
    }
}

/// Longest slice of caller input echoed back in an error message; error text must stay
/// readable even when someone posts a megabyte into a field.
const MAX_ECHO_CHARS: usize = 64;

/// Caller input as quoted in error messages: at most [`MAX_ECHO_CHARS`] characters.
pub(crate) fn shown(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_keeps_short_input_and_truncates_long_input() {
        assert_eq!(shown("abc"), "abc");
        let long = "x".repeat(100);
        let echoed = shown(&long);
        assert_eq!(echoed.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(echoed.ends_with('…'));
    }

    #[test]
    fn unknown_name_lists_the_accepted_names() {
        let err = InvitationStatus::parse("sent").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("unknown invitation status `sent`; expected one of"));
        assert!(msg.contains("PENDING_REVIEW, SCHEDULED, SENT"));
    }

    #[test]
    fn api_enums_round_trip_through_their_names() {
        for s in InvitationStatus::ALL {
            assert_eq!(s.as_str().parse::<InvitationStatus>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for t in ReferrerTier::ALL {
            assert_eq!(ReferrerTier::parse(t.as_str()), Ok(*t));
        }
        for f in Flow::ALL {
            assert_eq!(Flow::parse(f.as_str()), Ok(*f));
        }
    }
}
