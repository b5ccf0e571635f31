//! Consent routes of invite-svc's suppression list: the public unsubscribe link of every
//! invitation email (`GET /u/{token}` shows a confirmation page and changes nothing, since
//! link scanners follow links; `POST /u/{token}` unsubscribes: RFC 8058 one-click with the
//! form body `List-Unsubscribe=One-Click`, or the page's own form), rate-limited like
//! `/r/{code}`; and the admins' `GET /v1/suppressions` and `DELETE /v1/suppressions/{id}`.

use axum::{
    http::{Method, StatusCode},
    response::{Html, IntoResponse, Response},
};
use referral_proto::invite::v1::{self as invite, UnsubscribeRequest, UnsubscribeResponse};

use super::route::{Answer, Body, RawRequest, Route, Rpc, api, unary};
use crate::{mapping::errors::HttpError, state::AppState};

const CONSENT: &str = "referral.invite.v1.ConsentService";
const CONSENT_TAG: &str = "Consent";

/// The consent routes.
pub fn routes() -> Vec<Route> {
    use Body::None as NoBody;
    use Method as M;
    vec![
        Route::new(M::GET, "/u/{token}", "CheckUnsubscribe",
            "The unsubscribe page of an invitation email's link: the masked address and a button; changes nothing")
            .tag(CONSENT_TAG)
            .rpc(Rpc::new(CONSENT, "CheckUnsubscribe", NoBody))
            .answer(Answer::Html)
            .raw(|s, r| Box::pin(page(s, r))),
        Route::new(M::POST, "/u/{token}", "Unsubscribe",
            "Unsubscribe the invitation's address (RFC 8058 one-click: form body List-Unsubscribe=One-Click); no further invitation reaches it")
            .tag(CONSENT_TAG)
            .rpc(Rpc::new(CONSENT, "Unsubscribe", NoBody))
            .answer(Answer::Html)
            .raw_body("application/x-www-form-urlencoded `List-Unsubscribe=One-Click` (RFC 8058), or the page's empty form")
            .raw(|s, r| Box::pin(confirm(s, r))),
        api(M::GET, "/v1/suppressions", "Suppressed addresses, newest first, masked; search by email or phone (admin)", CONSENT_TAG,
            Rpc::new(CONSENT, "ListSuppressions", NoBody),
            unary!(consent in "invite-svc", list_suppressions(invite::ListSuppressionsRequest))),
        api(M::DELETE, "/v1/suppressions/{id}", "Lift a suppression: the address may be invited again; audited (admin)", CONSENT_TAG,
            Rpc::new(CONSENT, "LiftSuppression", NoBody),
            unary!(consent in "invite-svc", lift_suppression(invite::LiftSuppressionRequest))),
    ]
}

/// The token as the route binds it, checked against the edge's rule before invite-svc is
/// asked (a 400 naming `token`).
fn token_of(req: &RawRequest) -> Result<String, HttpError> {
    let token = req.param("token").unwrap_or_default().to_string();
    let violations = crate::mapping::input_rules::check(
        "referral.invite.v1.UnsubscribeRequest",
        &serde_json::json!({ "token": token }),
    );
    if let Some((field, why)) = violations.into_iter().next() {
        return Err(HttpError::new(
            tonic::Code::InvalidArgument,
            format!("{field}: {why}"),
        ));
    }
    Ok(token)
}

async fn page(state: AppState, req: RawRequest) -> Response {
    let token = match token_of(&req) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut client = state.clients.consent.clone();
    match client
        .check_unsubscribe(req.ctx.request(UnsubscribeRequest { token: token.clone() }))
        .await
    {
        Ok(resp) => Html(confirmation_page(&token, resp.get_ref())).into_response(),
        Err(s) => HttpError::from_upstream("invite-svc", &s).into_response(),
    }
}

async fn confirm(state: AppState, req: RawRequest) -> Response {
    let token = match token_of(&req) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let ctx = req.ctx.clone();
    // The body says nothing we need (RFC 8058's is a fixed form field); it is only read,
    // bounded, so a client sending one is answered properly.
    if let Err(e) = req.bytes().await {
        return e.into_response();
    }
    let mut client = state.clients.consent.clone();
    match client
        .unsubscribe(ctx.request(UnsubscribeRequest { token }))
        .await
    {
        Ok(resp) => (StatusCode::OK, Html(done_page(resp.get_ref()))).into_response(),
        Err(s) => HttpError::from_upstream("invite-svc", &s).into_response(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}button{font-size:1rem;padding:.5rem 1rem}";

fn confirmation_page(token: &str, r: &UnsubscribeResponse) -> String {
    let address = escape(&r.masked_address);
    let body = if r.suppressed {
        format!("<h1>You are unsubscribed</h1><p>{address} receives no more invitations from us.</p>")
    } else {
        format!(
            "<h1>Unsubscribe?</h1><p>Stop all invitations to {address}?</p>\
             <form method=\"post\" action=\"/u/{}\"><button type=\"submit\">Unsubscribe</button></form>",
            escape(token)
        )
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">\
         <title>Unsubscribe</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
}

fn done_page(r: &UnsubscribeResponse) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">\
         <title>Unsubscribed</title><style>{STYLE}</style></head><body><h1>You are unsubscribed</h1>\
         <p>{} receives no more invitations from us.</p></body></html>",
        escape(&r.masked_address)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let r = UnsubscribeResponse {
            masked_address: "<b>@x".into(),
            suppressed: false,
        };
        let page = confirmation_page("t\"><script>", &r);
        assert!(!page.contains("<script>") && !page.contains("<b>@x"), "{page}");
        assert!(page.contains("method=\"post\""));
        let done = done_page(&UnsubscribeResponse {
            masked_address: "a***@example.com".into(),
            suppressed: true,
        });
        assert!(done.contains("a***@example.com receives no more invitations"));
    }
}
