//! The one place where failures become HTTP: gRPC codes map to statuses per the
//! grpc-gateway v2 table (docs/api.md), rich error details render as JSON with `@type`, and the
//! body is always `{"code", "message", "details"}`.

use std::time::Duration;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use referral_common::idempotency;
use serde_json::{Map, Value, json};
use tonic::Code;
use tonic_types::{ErrorDetail, StatusExt};

const TYPE_PREFIX: &str = "type.googleapis.com/google.rpc.";

pub type HttpResult<T = Response> = Result<T, HttpError>;

/// An error response: HTTP status, gRPC code, message, rendered details, and the headers
/// some of them need (`Retry-After`, `WWW-Authenticate`).
#[derive(Debug, Clone)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    pub details: Vec<Value>,
    pub retry_after: Option<Duration>,
    pub www_authenticate: bool,
}

/// HTTP status for a gRPC code (docs/api.md; grpc-gateway v2).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl HttpError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: http_status(code),
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            www_authenticate: false,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            www_authenticate: true,
            ..Self::new(Code::Unauthenticated, message)
        }
    }

    /// 400 with a `google.rpc.BadRequest` naming each field.
    pub fn bad_request(message: impl Into<String>, violations: &[(String, String)]) -> Self {
        let mut e = Self::new(Code::InvalidArgument, message);
        if !violations.is_empty() {
            e.details.push(json!({
                "@type": format!("{TYPE_PREFIX}BadRequest"),
                "fieldViolations": violations
                    .iter()
                    .map(|(field, description)| json!({"field": field, "description": description}))
                    .collect::<Vec<_>>(),
            }));
        }
        e
    }

    /// 400 naming every violated field, in the message as in the details.
    pub fn invalid_request(violations: &[(String, String)]) -> Self {
        let summary: Vec<String> = violations.iter().map(|(f, d)| format!("{f}: {d}")).collect();
        Self::bad_request(format!("invalid request: {}", summary.join("; ")), violations)
    }

    /// One bad field, and a message that names it.
    pub fn invalid_field(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let message = if field.is_empty() {
            format!("invalid request: {description}")
        } else {
            format!("invalid request: {field}: {description}")
        };
        Self::bad_request(message, &[(field.to_string(), description)])
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            Code::InvalidArgument,
            format!("request body is larger than {limit} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message).with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(Code::Unimplemented, "method not allowed").with_status(StatusCode::METHOD_NOT_ALLOWED)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// 429 with a RetryInfo detail and `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = Self::new(Code::ResourceExhausted, message);
        e.details.push(json!({
            "@type": format!("{TYPE_PREFIX}RetryInfo"),
            "retryDelay": duration_json(retry_after),
        }));
        e.retry_after = Some(retry_after);
        e
    }

    /// A service's answer, from the call to `service` (named in transport failures).
    pub fn from_upstream(service: &str, status: &tonic::Status) -> Self {
        let mut e = Self::from(status);
        // tonic's own transport errors carry a source and addresses; say what failed instead.
        if std::error::Error::source(status).is_some() && status.code() == Code::Unavailable {
            e.message = format!("{service} is unavailable");
        }
        e
    }

    pub fn body(&self) -> Value {
        json!({
            "code": self.code as i32,
            "message": self.message,
            "details": self.details,
        })
    }
}

impl From<&tonic::Status> for HttpError {
    fn from(status: &tonic::Status) -> Self {
        let code = status.code();
        let mut e = Self::new(code, status.message());
        if matches!(code, Code::Internal | Code::Unknown | Code::DataLoss) && status.message().is_empty() {
            e.message = "internal error".into();
        }
        for detail in status.get_error_details_vec() {
            match &detail {
                ErrorDetail::ErrorInfo(info) if info.reason == idempotency::REUSED => {
                    e.status = StatusCode::UNPROCESSABLE_ENTITY;
                }
                ErrorDetail::ErrorInfo(info) if info.reason == idempotency::IN_USE => {
                    e.status = StatusCode::CONFLICT;
                }
                ErrorDetail::RetryInfo(retry) => e.retry_after = retry.retry_delay,
                _ => {}
            }
            if let Some(rendered) = render_detail(&detail) {
                e.details.push(rendered);
            }
        }
        if code == Code::ResourceExhausted && e.retry_after.is_none() {
            e.retry_after = Some(Duration::from_secs(1));
        }
        e
    }
}

impl From<tonic::Status> for HttpError {
    fn from(status: tonic::Status) -> Self {
        Self::from(&status)
    }
}

/// A `google.rpc` detail as proto3 JSON with its `@type`. Debug info (stack traces) is
/// never shown to callers.
fn render_detail(detail: &ErrorDetail) -> Option<Value> {
    let (kind, mut body) = match detail {
        ErrorDetail::BadRequest(b) => (
            "BadRequest",
            json!({"fieldViolations": b.field_violations.iter().map(|v| {
                let mut o = json!({"field": v.field, "description": v.description});
                if !v.reason.is_empty() {
                    o["reason"] = json!(v.reason);
                }
                o
            }).collect::<Vec<_>>()}),
        ),
        ErrorDetail::ErrorInfo(i) => (
            "ErrorInfo",
            json!({"reason": i.reason, "domain": i.domain, "metadata": i.metadata}),
        ),
        ErrorDetail::RetryInfo(r) => (
            "RetryInfo",
            // No delay given: 0s, "retry at once", as the service said nothing longer.
            json!({"retryDelay": duration_json(r.retry_delay.unwrap_or_default())}),
        ),
        ErrorDetail::QuotaFailure(q) => (
            "QuotaFailure",
            json!({"violations": q.violations.iter().map(|v| json!({"subject": v.subject, "description": v.description})).collect::<Vec<_>>()}),
        ),
        ErrorDetail::PreconditionFailure(p) => (
            "PreconditionFailure",
            json!({"violations": p.violations.iter().map(|v| json!({"type": v.r#type, "subject": v.subject, "description": v.description})).collect::<Vec<_>>()}),
        ),
        ErrorDetail::RequestInfo(r) => (
            "RequestInfo",
            json!({"requestId": r.request_id, "servingData": r.serving_data}),
        ),
        ErrorDetail::ResourceInfo(r) => (
            "ResourceInfo",
            json!({"resourceType": r.resource_type, "resourceName": r.resource_name, "owner": r.owner, "description": r.description}),
        ),
        ErrorDetail::Help(h) => (
            "Help",
            json!({"links": h.links.iter().map(|l| json!({"description": l.description, "url": l.url})).collect::<Vec<_>>()}),
        ),
        ErrorDetail::LocalizedMessage(m) => (
            "LocalizedMessage",
            json!({"locale": m.locale, "message": m.message}),
        ),
        _ => return None,
    };
    let mut out = Map::new();
    out.insert("@type".into(), json!(format!("{TYPE_PREFIX}{kind}")));
    if let Value::Object(fields) = body.take() {
        out.extend(fields);
    }
    Some(Value::Object(out))
}

/// proto3 JSON Duration: seconds with up to nine fractional digits and an `s`.
fn duration_json(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let s = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
        format!("{}s", s.trim_end_matches('0'))
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1.
fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // A `Value` always serializes (its keys are strings): the empty body is unreachable.
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(d) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(d)));
        }
        if self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use referral_common::ApiError;
    use tonic::Status;
    use tonic_types::{ErrorDetails, FieldViolation};

    use super::*;

    #[test]
    fn codes_map_per_the_contract() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
            (Code::Cancelled, 500),
        ];
        for (code, http) in table {
            let e = HttpError::from(Status::new(code, "x"));
            assert_eq!(e.status.as_u16(), http, "{code:?}");
            assert_eq!(e.body()["code"], json!(code as i32));
        }
    }

    #[test]
    fn bad_request_details_render_with_their_type() {
        let status: Status = ApiError::invalid("recipient.email", "is not an e-mail address").into();
        let e = HttpError::from(status);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let body = e.body();
        assert_eq!(
            body["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(
            body["details"][0]["fieldViolations"][0]["field"],
            "recipient.email"
        );
        assert_eq!(
            body["details"][0]["fieldViolations"][0]["description"],
            "is not an e-mail address"
        );
    }

    #[test]
    fn idempotency_reasons_become_422_and_409() {
        let reused = Status::with_error_details(
            Code::FailedPrecondition,
            "key reused with another body",
            ErrorDetails::with_error_info(idempotency::REUSED, "referral-mesh", HashMap::new()),
        );
        let e = HttpError::from(reused);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body()["code"], 9);
        assert_eq!(
            e.body()["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
        assert_eq!(e.body()["details"][0]["reason"], idempotency::REUSED);
        assert_eq!(e.body()["details"][0]["domain"], "referral-mesh");
        let in_use = Status::with_error_details(
            Code::Aborted,
            "still running",
            ErrorDetails::with_error_info(idempotency::IN_USE, "referral-mesh", HashMap::new()),
        );
        assert_eq!(HttpError::from(in_use).status, StatusCode::CONFLICT);
    }

    #[test]
    fn resource_exhausted_carries_retry_after() {
        let status = Status::with_error_details(
            Code::ResourceExhausted,
            "too many queued",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(2500))),
        );
        let resp = HttpError::from(status).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        let bare = HttpError::from(Status::resource_exhausted("no info")).into_response();
        assert_eq!(bare.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn retry_info_renders_as_a_duration() {
        let e = HttpError::rate_limited("slow down", Duration::from_millis(1500));
        assert_eq!(e.body()["details"][0]["retryDelay"], "1.5s");
        assert_eq!(duration_json(Duration::from_secs(7)), "7s");
    }

    #[test]
    fn several_details_travel_together() {
        let mut details = ErrorDetails::with_bad_request(vec![FieldViolation::new("a", "b")]);
        details.set_error_info(
            "DUPLICATE",
            "referral-mesh",
            HashMap::from([("existingInvitationId".into(), "i1".into())]),
        );
        let e = HttpError::from(Status::with_error_details(Code::AlreadyExists, "dup", details));
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.details.len(), 2);
        assert!(
            e.details
                .iter()
                .any(|d| d["metadata"]["existingInvitationId"] == "i1")
        );
    }

    #[test]
    fn unauthenticated_asks_for_a_bearer_token() {
        let resp = HttpError::unauthenticated("missing bearer token").into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
