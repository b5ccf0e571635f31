//! `GET /v1/sdk.js`: the landing-page snippet. Dependency-free, under 3 KB, cacheable; its
//! path carries its version. It moves the click id from the landing URL into a cookie on
//! the page's own domain and offers `referralMesh.clickId()` to the signup form.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use super::route::RawRequest;
use crate::state::AppState;

const SDK: &str = include_str!("../sdk/sdk.js");

/// The script with the configured click parameter (validated as `[A-Za-z0-9_-]{1,32}`, so
/// it needs no escaping inside a JS string).
pub fn render(click_param: &str) -> String {
    SDK.replace("__RM_PARAM__", click_param)
}

pub async fn script(state: AppState, _: RawRequest) -> Response {
    let mut resp = render(&state.settings.click_param).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Loaded by other origins' pages: shared caches may keep it for a day.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest the served script may be (the issue's budget).
    const MAX_BYTES: usize = 3 * 1024;

    #[test]
    fn the_script_is_small_versioned_and_names_the_parameter() {
        let js = render("rm_click");
        assert!(js.len() < MAX_BYTES, "{} bytes", js.len());
        assert!(js.starts_with("/*! referral-mesh sdk.js v1"));
        assert!(js.contains(r#"var PARAM = "rm_click""#));
        assert!(!js.contains("__RM_PARAM__"));
        assert!(render("ref").contains(r#"var PARAM = "ref""#));
        // Nothing fetched, nothing evaluated.
        for banned in ["fetch(", "XMLHttpRequest", "eval(", "import(", "<script"] {
            assert!(!js.contains(banned), "{banned}");
        }
    }
}
