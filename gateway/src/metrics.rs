//! Request counters and latencies by route template and status, for `/metrics`.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};

/// The documented route a response answered (set by the dispatcher; `:action` routes share
/// an axum path, so the matched path alone would merge them).
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

pub async fn middleware(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let resp = next.run(req).await;
    let route = match resp.extensions().get::<RouteLabel>() {
        Some(label) => label.0.to_string(),
        None => matched.unwrap_or_else(|| "unmatched".to_string()),
    };
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("gateway_http_requests_total", &labels).increment(1);
    metrics::histogram!("gateway_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    resp
}
