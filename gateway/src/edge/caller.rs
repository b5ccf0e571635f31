//! Who is calling, as the auth middleware ([`super::auth`]) worked it out: the rate limiter
//! keys on it, routes demand its principal or not, and the call context carries it on.

use referral_common::auth::Principal;

use crate::mapping::errors::HttpError;

/// What the `Authorization` header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Authenticated(Principal),
    /// A token was sent and rejected; why.
    Rejected(String),
    /// An API key was sent and could not be checked (invite-svc did not answer): 503, never
    /// a guess either way.
    Unverified(String),
}

impl Caller {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Authenticated(p) => Some(p),
            _ => None,
        }
    }

    /// The principal of a route that needs one, or the 401.
    pub fn require(&self) -> Result<&Principal, HttpError> {
        match self {
            Caller::Authenticated(p) => Ok(p),
            Caller::Anonymous => Err(HttpError::unauthenticated(
                "missing bearer token: send Authorization: Bearer <JWT or API key>",
            )),
            Caller::Rejected(why) => Err(HttpError::unauthenticated(why.clone())),
            Caller::Unverified(why) => Err(HttpError::new(tonic::Code::Unavailable, why.clone())),
        }
    }
}
