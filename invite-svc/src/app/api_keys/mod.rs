//! API keys: admins create, list, rotate and revoke them (each change audited in its
//! transaction); the gateway authenticates a presented key on every request, so a rotation
//! or revocation takes effect at once on every replica. One module per use case.

mod authenticate;
mod create;
mod list;
mod revoke;
mod rotate;

pub use authenticate::{AuthenticatedKey, KeyRefused, authenticate_api_key};
pub use create::create_api_key;
pub use list::list_api_keys;
pub use revoke::revoke_api_key;
pub use rotate::rotate_api_key;

use referral_common::{ApiResult, Violations, input};

/// The subject kind of API key audit entries.
const SUBJECT_KIND: &str = "api_key";

fn check_id(id: &str) -> ApiResult<()> {
    let mut v = Violations::default();
    input::id(&mut v, id, "id");
    v.into_result()
}
