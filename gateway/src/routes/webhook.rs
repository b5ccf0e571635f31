//! `POST /v1/webhooks/email/{provider}`: no bearer token; the raw body and the headers go to
//! invite-svc untouched, which verifies the provider's signature before reading anything.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use referral_proto::invite::v1::EmailWebhookRequest;

use super::route::{RawRequest, answer};
use crate::state::AppState;

pub async fn handle(state: AppState, req: RawRequest) -> Response {
    let ctx = req.ctx.clone();
    let (parts, params, body) = match req.bytes().await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let provider = params
        .iter()
        .find(|(k, _)| k == "provider")
        .map(|(_, v)| v.to_ascii_lowercase())
        // The route always binds `{provider}`; an empty one is no provider invite-svc knows,
        // and it says so.
        .unwrap_or_default();
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in &parts.headers {
        // Header names are lower-case in `http`; repeated headers join as HTTP allows.
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let request = EmailWebhookRequest {
        provider,
        headers,
        body: body.to_vec(),
    };
    let mut client = state.clients.invite.clone();
    answer(
        client.handle_email_webhook(ctx.request(request)).await,
        "invite-svc",
    )
    .unwrap_or_else(|e| e.into_response())
}
