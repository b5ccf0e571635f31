//! What an API key may do. A key holds a set of scopes chosen by the admin who created it;
//! it may do what a scope names and nothing else (never an admin route). The set travels
//! between services as a strict comma-separated list of the names below.

use std::fmt;

/// One thing an API key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Report conversions (and refunds): billing.
    ConversionsWrite,
    /// Create invitations for any referrer.
    InvitationsWrite,
    /// Report signups for any user.
    SignupsWrite,
    /// Report users' activity (activation, churn).
    ActivityWrite,
    /// Read the analytics reports (metrics, leaderboard).
    ReportsRead,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::ConversionsWrite,
        Scope::InvitationsWrite,
        Scope::SignupsWrite,
        Scope::ActivityWrite,
        Scope::ReportsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ConversionsWrite => "conversions:write",
            Scope::InvitationsWrite => "invitations:write",
            Scope::SignupsWrite => "signups:write",
            Scope::ActivityWrite => "activity:write",
            Scope::ReportsRead => "reports:read",
        }
    }

    /// Exactly one of the names above (case-sensitive: no second spelling).
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes (small and `Copy`: it rides along with every principal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

/// Why a list of scope names was refused; the message is fit for a 400 on `scopes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("must name at least one scope")]
    Empty,
    #[error(
        "unknown scope {0:?}; known: conversions:write, invitations:write, signups:write, activity:write, reports:read"
    )]
    Unknown(String),
    #[error("names {0} twice")]
    Duplicate(&'static str),
}

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The names, in the fixed order of [`Scope::ALL`].
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// A caller's list: at least one, each known, none twice. Unknown names are echoed
    /// only up to 64 characters, so a huge one does not come back whole.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Scopes, ScopeError> {
        if names.is_empty() {
            return Err(ScopeError::Empty);
        }
        let mut set = Scopes::NONE;
        for name in names {
            let name = name.as_ref();
            let scope =
                Scope::parse(name).ok_or_else(|| ScopeError::Unknown(name.chars().take(64).collect()))?;
            if set.contains(scope) {
                return Err(ScopeError::Duplicate(scope.as_str()));
            }
            set = set.with(scope);
        }
        Ok(set)
    }

    /// The wire form: names joined by commas, no spaces (see [`Scopes::from_wire`]).
    pub fn to_wire(self) -> String {
        self.names().join(",")
    }

    /// Reads [`Scopes::to_wire`] strictly: no empty item, no spaces, no unknown or repeated
    /// name, at least one.
    pub fn from_wire(s: &str) -> Result<Scopes, ScopeError> {
        let names: Vec<&str> = if s.is_empty() {
            Vec::new()
        } else {
            s.split(',').collect()
        };
        Scopes::parse_list(&names)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(Scopes::NONE, Scopes::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        let all: Scopes = Scope::ALL.into_iter().collect();
        assert_eq!(Scopes::from_wire(&all.to_wire()), Ok(all));
        assert_eq!(
            all.to_wire(),
            "conversions:write,invitations:write,signups:write,activity:write,reports:read"
        );
    }

    #[test]
    fn lists_are_strict() {
        assert_eq!(Scopes::parse_list::<&str>(&[]), Err(ScopeError::Empty));
        assert!(matches!(
            Scopes::parse_list(&["admin"]),
            Err(ScopeError::Unknown(_))
        ));
        assert!(matches!(
            Scopes::parse_list(&["Conversions:Write"]),
            Err(ScopeError::Unknown(_))
        ));
        assert_eq!(
            Scopes::parse_list(&["reports:read", "reports:read"]),
            Err(ScopeError::Duplicate("reports:read"))
        );
        for bad in [
            "",
            ",",
            "reports:read,",
            " reports:read",
            "reports:read, signups:write",
            "*",
        ] {
            assert!(Scopes::from_wire(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        let Err(ScopeError::Unknown(echo)) = Scopes::parse_list(&[long.as_str()]) else {
            panic!("unknown")
        };
        assert_eq!(echo.len(), 64);
        let two = Scopes::parse_list(&["signups:write", "conversions:write"]).unwrap();
        assert!(two.contains(Scope::SignupsWrite) && two.contains(Scope::ConversionsWrite));
        assert!(!two.contains(Scope::ReportsRead));
        assert_eq!(two.names(), ["conversions:write", "signups:write"]);
    }
}
