//! The dashboard (`GET /`): one static page, its script and its style sheet, compiled into
//! the binary (no build step, nothing fetched from elsewhere, works offline). It needs no
//! token to load; it asks for one and then reads the public JSON API like any client.

use axum::{
    http::{HeaderName, HeaderValue, Method, header},
    response::{IntoResponse, Response},
};

use super::{
    ops::OPS,
    route::{Answer, RawRequest, Route},
};
use crate::state::AppState;

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/dashboard.js");
const STYLE: &str = include_str!("../dashboard/dashboard.css");

/// Only this origin's script, style and API; no inline code, no framing, no form posts.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn index(_: AppState, _: RawRequest) -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script(_: AppState, _: RawRequest) -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style(_: AppState, _: RawRequest) -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidate each time, so a new binary's page is never mixed with an old script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// The dashboard and its assets.
pub fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        Route::new(
            M::GET,
            "/",
            "Dashboard",
            "The dashboard (asks for a token, then reads this API)",
        )
        .tag(OPS)
        .answer(Answer::Html)
        .raw(|s, r| Box::pin(index(s, r))),
        Route::new(
            M::GET,
            "/dashboard.js",
            "DashboardScript",
            "The dashboard's script",
        )
        .tag(OPS)
        .answer(Answer::Text("text/javascript"))
        .raw(|s, r| Box::pin(script(s, r))),
        Route::new(
            M::GET,
            "/dashboard.css",
            "DashboardStyle",
            "The dashboard's style sheet",
        )
        .tag(OPS)
        .answer(Answer::Text("text/css"))
        .raw(|s, r| Box::pin(style(s, r))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_code() {
        assert!(INDEX.contains(r#"<script src="/dashboard.js" defer></script>"#));
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="/dashboard.css">"#));
        assert!(
            !INDEX.contains("<style"),
            "inline styles would need 'unsafe-inline'"
        );
        assert!(
            !INDEX.contains(" style="),
            "inline styles would need 'unsafe-inline'"
        );
        assert!(
            !INDEX.contains("onclick="),
            "inline handlers would need 'unsafe-inline'"
        );
        for text in [INDEX, STYLE] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "no other origin"
            );
        }
        // The one absolute URL in the script is the SVG namespace, which is never fetched.
        let script = SCRIPT.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !script.contains("http://") && !script.contains("https://"),
            "no other origin"
        );
        assert!(
            !SCRIPT.contains("innerHTML"),
            "API values are written as text, never as HTML"
        );
    }
}
