//! Operations: liveness, readiness (every service's `readiness` health check), Prometheus
//! metrics and the OpenAPI document.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use referral_common::server::READINESS;
use serde_json::{Value, json};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::RawRequest;
use crate::{json, state::AppState};

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
    if not_ready.is_empty() {
        json::respond(&json!({"status": "ready", "services": results}))
    } else {
        json::respond_with(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not ready", "notReady": not_ready, "services": results}),
        )
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

pub async fn openapi(state: AppState, _: RawRequest) -> Response {
    let mut resp = state.openapi.clone().into_response();
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
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "notReady": {"type": "array", "items": {"type": "string"}},
            "services": {"type": "object", "additionalProperties": {"type": "string"},
                         "description": "Health of each service's `readiness` check, e.g. SERVING"},
        },
    })
}

pub fn openapi_schema() -> Value {
    json!({"type": "object", "description": "An OpenAPI 3.1 document"})
}
