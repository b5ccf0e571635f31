//! Operations: liveness, readiness (the `readiness` health check of every service, of which
//! those in `READY_REQUIRES` must be SERVING), Prometheus metrics and the OpenAPI document.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    body::Bytes,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use referral_common::server::READINESS;
use serde_json::{Value, json};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::route::{Answer, RawRequest, Route};
use crate::{
    mapping::{errors::HttpError, json},
    state::AppState,
};

const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz(_: AppState, _: RawRequest) -> Response {
    json::respond(&json!({"status": "ok"}))
}

pub async fn readyz(state: AppState, _: RawRequest) -> Response {
    let checks = state.clients.health.iter().map(|(name, client)| {
        let mut client = client.clone();
        async move {
            let mut req = tonic::Request::new(HealthCheckRequest {
                service: READINESS.to_string(),
            });
            req.set_timeout(HEALTH_TIMEOUT);
            let status = match tokio::time::timeout(HEALTH_TIMEOUT, client.check(req)).await {
                Ok(Ok(resp)) => ServingStatus::try_from(resp.into_inner().status)
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_else(|_| "UNKNOWN".to_string()),
                Ok(Err(s)) if s.code() == tonic::Code::NotFound => {
                    "NOT_SERVING (no readiness service)".to_string()
                }
                Ok(Err(s)) => format!("UNREACHABLE ({:?})", s.code()),
                Err(_) => "UNREACHABLE (timeout)".to_string(),
            };
            (*name, status)
        }
    });
    let results: BTreeMap<&str, String> = futures::future::join_all(checks).await.into_iter().collect();
    let not_ready: Vec<&str> = results
        .iter()
        .filter(|(_, s)| s.as_str() != "SERVING")
        .map(|(n, _)| *n)
        .collect();
    let required = &state.settings.ready_requires;
    let status = readiness(required, &not_ready);
    let body = json!({
        "status": status,
        "notReady": not_ready,
        "required": required,
        "services": results,
    });
    if status == NOT_READY {
        json::respond_with(StatusCode::SERVICE_UNAVAILABLE, &body)
    } else {
        json::respond(&body)
    }
}

const NOT_READY: &str = "not ready";

/// `ready` (everything serving), `degraded` (only services the gateway can do without are
/// down: their routes answer 503) or `not ready` (a required one is down).
fn readiness(required: &[&str], not_ready: &[&str]) -> &'static str {
    if not_ready.iter().any(|n| required.contains(n)) {
        NOT_READY
    } else if not_ready.is_empty() {
        "ready"
    } else {
        "degraded"
    }
}

pub async fn metrics(_: AppState, _: RawRequest) -> Response {
    let mut resp = referral_common::metrics::render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// `/openapi.json`, built once by the router from its route table and handed to [`openapi`]
/// with every request (the document is the table's, which the table's handlers cannot
/// name without a loop).
#[derive(Clone)]
pub struct OpenApiDocument(Bytes);

impl OpenApiDocument {
    pub fn new(document: &Value) -> Self {
        Self(Bytes::from(document.to_string()))
    }
}

pub async fn openapi(_: AppState, req: RawRequest) -> Response {
    let Some(OpenApiDocument(document)) = req.parts.extensions.get::<OpenApiDocument>().cloned() else {
        return HttpError::internal("the OpenAPI document is missing").into_response();
    };
    let mut resp = document.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn health_schema() -> Value {
    json!({"type": "object", "properties": {"status": {"type": "string", "const": "ok"}}})
}

pub fn readiness_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ready", "degraded", "not ready"],
                       "description": "`not ready` (503) only when a service in READY_REQUIRES is down"},
            "notReady": {"type": "array", "items": {"type": "string"}},
            "required": {"type": "array", "items": {"type": "string"},
                         "description": "The services READY_REQUIRES names (default invite-svc)"},
            "services": {"type": "object", "additionalProperties": {"type": "string"},
                         "description": "Health of each service's `readiness` check, e.g. SERVING"},
        },
    })
}

pub fn openapi_schema() -> Value {
    json!({"type": "object", "description": "An OpenAPI 3.1 document"})
}

pub const OPS: &str = "Operations";

/// The operations routes.
pub fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        Route::new(M::GET, "/healthz", "Healthz", "Liveness: the process answers")
            .tag(OPS)
            .answer(Answer::Schema(health_schema))
            .raw(|s, r| Box::pin(healthz(s, r))),
        Route::new(M::GET, "/readyz", "Readyz", "Readiness: the services in READY_REQUIRES (default invite-svc) are SERVING; the others are reported")
            .tag(OPS)
            .answer(Answer::Schema(readiness_schema))
            .raw(|s, r| Box::pin(readyz(s, r))),
        Route::new(M::GET, "/metrics", "Metrics", "Prometheus metrics")
            .tag(OPS)
            .answer(Answer::Text("text/plain"))
            .raw(|s, r| Box::pin(metrics(s, r))),
        Route::new(M::GET, "/openapi.json", "OpenApi", "This document")
            .tag(OPS)
            .answer(Answer::Schema(openapi_schema))
            .raw(|s, r| Box::pin(openapi(s, r))),
    ]
}
