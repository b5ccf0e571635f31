//! The privacy routes (issue #16), all on invite-svc's `PrivacyRequests`: `DELETE
//! /v1/people/{id}` and `POST /v1/people/{id}/export` open a privacy request (202: every
//! service does its part when it reads the request from invite-svc's log), `GET
//! /v1/privacy/requests/{id}` follows it, and `GET /v1/privacy/requests/{id}/export` is a
//! DONE export's one JSON document, as an attachment.

use axum::{
    http::{HeaderValue, Method, StatusCode, header},
    response::IntoResponse,
};
use referral_proto::common::v1::{CreatePrivacyRequestRequest, GetPrivacyRequestRequest};
use serde_json::{Value, json};

use super::route::{Answer, Body, Handler, JsonFn, Route, Rpc, api, unary};
use crate::mapping::{errors::HttpError, json};

pub const PRIVACY_TAG: &str = "Privacy";

const REQUESTS: &str = "referral.common.v1.PrivacyRequests";

/// Opens a privacy request: 202 with the request (the pending one of the same kind, if any).
fn open_handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let message: CreatePrivacyRequestRequest = json::decode(input)?;
            let mut client = state.clients.privacy_requests.clone();
            let resp = client
                .create_privacy_request(ctx.request(message))
                .await
                .map_err(|s| HttpError::from_upstream("invite-svc", &s))?;
            Ok(json::respond_with(StatusCode::ACCEPTED, resp.get_ref()))
        })
    };
    Handler::Json {
        call,
        decodes: |v| json::decode::<CreatePrivacyRequestRequest>(v).map(|_| ()),
        request_type: std::any::type_name::<CreatePrivacyRequestRequest>,
    }
}

/// The export document itself: the JSON invite-svc assembled, as a download.
fn download_handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let message: GetPrivacyRequestRequest = json::decode(input)?;
            let mut client = state.clients.privacy_requests.clone();
            let doc = client
                .get_privacy_export(ctx.request(message))
                .await
                .map_err(|s| HttpError::from_upstream("invite-svc", &s))?
                .into_inner();
            let mut resp = (StatusCode::OK, doc.document_json).into_response();
            let headers = resp.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            // The id is invite-svc's (a UUIDv7); anything else would not be a header value.
            let disposition = format!("attachment; filename=\"privacy-export-{}.json\"", doc.request_id);
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
            );
            Ok(resp)
        })
    };
    Handler::Json {
        call,
        decodes: |v| json::decode::<GetPrivacyRequestRequest>(v).map(|_| ()),
        request_type: std::any::type_name::<GetPrivacyRequestRequest>,
    }
}

/// The export document's shape.
pub fn export_document_schema() -> Value {
    json!({
        "type": "object",
        "required": ["personId", "requestId", "services"],
        "properties": {
            "personId": {"type": "string"},
            "requestId": {"type": "string"},
            "requestedAt": {"type": "string", "format": "date-time"},
            "generatedAt": {"type": ["string", "null"], "format": "date-time"},
            "services": {
                "type": "object",
                "description": "What each service holds about the person, by service (invite, fraud, incentive, analytics): record kind -> records",
                "additionalProperties": {"type": "object"},
            },
        },
    })
}

/// The privacy routes.
pub fn routes() -> Vec<Route> {
    use Body::None as NoBody;
    use Method as M;
    vec![
        api(
            M::DELETE,
            "/v1/people/{id}",
            "Erase a person's personal data in every service (admin, or the person themself): opens a privacy request \
            (202), one part per service, each done when that service reads it; follow it at /v1/privacy/requests/{id}. \
            While one is pending, asking again answers it",
            PRIVACY_TAG,
            Rpc::new(REQUESTS, "CreatePrivacyRequest", NoBody)
                .param("id", "personId")
                .fixed("kind", "ERASE"),
            open_handler(),
        )
        .answer(Answer::Accepted),
        api(
            M::POST,
            "/v1/people/{id}/export",
            "Gather everything every service holds about a person (admin, or the person themself): opens a privacy \
            request (202); once DONE it carries downloadUrl. While one is pending, asking again answers it",
            PRIVACY_TAG,
            Rpc::new(REQUESTS, "CreatePrivacyRequest", NoBody)
                .param("id", "personId")
                .fixed("kind", "EXPORT"),
            open_handler(),
        )
        .answer(Answer::Accepted),
        api(
            M::GET,
            "/v1/privacy/requests/{id}",
            "A privacy request with each service's part and receipt (admin, or the person it is about)",
            PRIVACY_TAG,
            Rpc::new(REQUESTS, "GetPrivacyRequest", NoBody),
            unary!(privacy_requests in "invite-svc", get_privacy_request(GetPrivacyRequestRequest)),
        ),
        api(
            M::GET,
            "/v1/privacy/requests/{id}/export",
            "A DONE export as one JSON document, as an attachment (admin, or the person it is about); 400 \
            FAILED_PRECONDITION while pending, for an erasure, or once deleted (exports are kept for \
            PRIVACY_EXPORT_RETENTION, 30 days by default)",
            PRIVACY_TAG,
            Rpc::new(REQUESTS, "GetPrivacyExport", NoBody),
            download_handler(),
        )
        .answer(Answer::Schema(export_document_schema)),
    ]
}
