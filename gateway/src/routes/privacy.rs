//! The privacy routes: `DELETE /v1/people/{id}`, `POST /v1/people/{id}/export` and
//! `GET /v1/privacy/requests/{id}` (invite-svc's `PrivacyRequests`). Being rebuilt on privacy
//! requests (issue #16): until then the person routes are not served.

use super::route::Route;

pub const PRIVACY_TAG: &str = "Privacy";

/// The privacy routes.
pub fn routes() -> Vec<Route> {
    Vec::new()
}
