//! CORS for web apps on the marketplace's own origins (`CORS_ALLOWED_ORIGINS`): exactly the
//! listed origins, with credentials (the signup may carry the `rm_click` cookie), the
//! headers the API reads, and preflights cached. No origins listed: no CORS layer at all, so
//! browsers keep every other origin out.

use std::time::Duration;

use http::{HeaderName, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::RuntimeConfig;

/// How long a browser may reuse a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

pub fn layer(settings: &RuntimeConfig) -> Option<CorsLayer> {
    if settings.cors_allowed_origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(settings.cors_allowed_origins.iter().cloned()))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-device-id"),
            ])
            // What a script needs to back off and to quote a request in a support ticket.
            .expose_headers([
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
