//! `GET /r/{code}`, the hot path: resolve the code's landing URL through the cache, answer
//! 302 to it with a fresh signed click id — as a query parameter the landing page can read
//! (its own domain then keeps it, see `sdk.js`) and as a cookie on the gateway's domain —
//! and queue the click. It never calls fraud, analytics or incentives, and never waits on a
//! write: the signed id attributes a signup before the click's row exists.

use std::time::Duration;

use axum::{
    extract::Query,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use referral_proto::{
    common::v1::Utm,
    invite::v1::{RecordClickRequest, ResolveReferralCodeRequest},
};
use tonic::Code;

use super::{landing, route::RawRequest};
use crate::{edge::cookies, state::AppState};

pub const CLICK_COOKIE: &str = "rm_click";
/// 90 days, the attribution window's outer bound.
pub const CLICK_COOKIE_MAX_AGE: u64 = 90 * 24 * 3600;
/// The redirect must stay fast even when invite-svc is slow: past this, fall back.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn handle(state: AppState, req: RawRequest) -> Response {
    // The route always binds `{code}`; an empty one is refused just below as implausible.
    let code = req.param("code").unwrap_or_default().to_string();
    if !plausible_code(&code) {
        return not_found(&code);
    }
    let invite = state.clients.invite.clone();
    let lookup = state
        .codes
        .resolve(&code, || {
            let mut invite = invite;
            let mut grpc = req.ctx.request(ResolveReferralCodeRequest { code: code.clone() });
            grpc.set_timeout(RESOLVE_TIMEOUT);
            async move {
                match invite.resolve_referral_code(grpc).await {
                    Ok(resp) => Ok(Some(resp.into_inner().landing_url)),
                    Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => Ok(None),
                    Err(s) => Err(s),
                }
            }
        })
        .await;
    let landing = match lookup {
        Ok(Some(url)) if !url.trim().is_empty() => url,
        Ok(Some(_)) => state.settings.default_landing_url.clone(),
        Ok(None) => return not_found(&code),
        Err(status) => {
            // Better a visitor on the default page (click still queued) than an error page.
            tracing::warn!(code = %code, error = %status.message(), "code lookup failed; using the default landing URL");
            state.settings.default_landing_url.clone()
        }
    };
    // One instant, to the millisecond the id carries, for the id and the click's row.
    let now = chrono::Utc::now();
    let now = chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let code = code.to_ascii_uppercase();
    let click_id = state.settings.click_keys.sign(&code, now);
    let settings = &state.settings;
    let target = landing::with_click(&landing, &settings.landing_hosts, &settings.click_param, &click_id)
        .or_else(|| {
            tracing::warn!(code = %code, "landing URL refused (host not in LANDING_HOSTS, or not http(s)); using the default");
            landing::with_click(
                &settings.default_landing_url,
                &settings.landing_hosts,
                &settings.click_param,
                &click_id,
            )
        });
    let location = target
        .and_then(|url| HeaderValue::from_str(&url).ok())
        .unwrap_or(HeaderValue::from_static("/"));

    state.clicks.enqueue(click(&req, &code, &click_id, now)).await;

    let mut resp = StatusCode::FOUND.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(cookie) = HeaderValue::from_str(&click_cookie(&click_id, state.settings.secure_cookies)) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    resp
}

/// `rm_click=<id>; Max-Age=7776000; Path=/; HttpOnly; SameSite=Lax` (+ `Secure` over https).
pub fn click_cookie(click_id: &str, secure: bool) -> String {
    let mut c =
        format!("{CLICK_COOKIE}={click_id}; Max-Age={CLICK_COOKIE_MAX_AGE}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    c
}

fn click(
    req: &RawRequest,
    code: &str,
    click_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> RecordClickRequest {
    // UTM parameters are extras of the click: a query string that does not parse must not
    // cost the visitor the redirect, so it records none.
    let query: Vec<(String, String)> = Query::try_from_uri(&req.parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            // An absent UTM parameter is the empty string of proto3.
            .unwrap_or_default()
    };
    let utm = Utm {
        source: get("utm_source"),
        medium: get("utm_medium"),
        campaign: get("utm_campaign"),
    };
    let has_utm = !(utm.source.is_empty() && utm.medium.is_empty() && utm.campaign.is_empty());
    RecordClickRequest {
        code: code.to_string(),
        click_id: click_id.to_string(),
        visitor_id: String::new(),
        // Absent user agent, IP (in-process tests) or device: proto3's empty "not known".
        user_agent: req.ctx.user_agent.clone().unwrap_or_default(),
        utm: has_utm.then_some(utm),
        ip: req.ctx.client_ip.0.map(|ip| ip.to_string()).unwrap_or_default(),
        device_id: req.ctx.device_id.clone().unwrap_or_default(),
        occurred_at: Some(referral_proto::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        // Invitation links may name their invitation: /r/{code}?inv={id}.
        invitation_id: get("inv"),
        previous_click_id: earlier_click(&req.parts.headers, click_id),
    }
}

/// The visitor's click before this one: the id our cookie still holds, if it reads as one
/// (invite-svc judges its signature when a signup counts it).
fn earlier_click(headers: &http::HeaderMap, click_id: &str) -> String {
    cookies::get(headers, CLICK_COOKIE)
        .filter(|id| {
            id != click_id
                && id.len() <= referral_common::click_id::MAX_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .unwrap_or_default()
}

/// Codes look like `LOVE-7KQ2MX`; anything else is not worth a lookup.
fn plausible_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn not_found(code: &str) -> Response {
    let shown: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Link not found</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem\">\
         <h1>This referral link does not exist</h1>\
         <p>The code <code>{shown}</code> is unknown or no longer active. Please check the link you were sent.</p>\
         </body></html>\n"
    );
    let mut resp = (StatusCode::NOT_FOUND, Html(page)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_first_party_long_lived_and_script_proof() {
        let c = click_cookie("0190-abc", false);
        assert_eq!(
            c,
            "rm_click=0190-abc; Max-Age=7776000; Path=/; HttpOnly; SameSite=Lax"
        );
        assert!(click_cookie("x", true).ends_with("; Secure"));
    }

    #[test]
    fn only_code_shaped_input_is_looked_up() {
        assert!(plausible_code("LOVE-7KQ2MX"));
        assert!(plausible_code("wed-abcdef"));
        assert!(!plausible_code(""));
        assert!(!plausible_code("a b"));
        assert!(!plausible_code("<script>"));
        assert!(!plausible_code(&"A".repeat(65)));
    }

    #[test]
    fn the_earlier_click_is_the_cookie_when_it_reads_as_a_click_id() {
        let with = |cookie: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            h
        };
        assert_eq!(
            earlier_click(&with("rm_click=c1.k1.LOVE-X.1.n.m"), "c1.new"),
            "c1.k1.LOVE-X.1.n.m"
        );
        assert_eq!(earlier_click(&with("rm_click=c1.same"), "c1.same"), "");
        assert_eq!(earlier_click(&with("rm_click=a<b"), "c1.new"), "");
        assert_eq!(
            earlier_click(&with(&format!("rm_click={}", "a".repeat(161))), "c1.new"),
            ""
        );
        assert_eq!(earlier_click(&http::HeaderMap::new(), "c1.new"), "");
    }
}
