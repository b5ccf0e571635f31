//! Request counters and latencies by route template and status, for `/metrics`.
//!
//! Every label value comes from a fixed set — the documented routes, the standard methods,
//! the status codes — so no request can add a series: an unknown path is `route="unmatched"`
//! and an unknown method is `method="other"` (an unauthenticated caller must not be able to
//! grow the metrics without bound).

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};

/// The documented route a response answered (set by the dispatcher; `:action` routes share
/// an axum path, so the matched path alone would merge them).
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// The label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

pub async fn middleware(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    // The matched path is a route template (a string of the router, not of the request).
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let resp = next.run(req).await;
    let route = match resp.extensions().get::<RouteLabel>() {
        Some(label) => label.0.to_string(),
        None => matched.unwrap_or_else(|| UNMATCHED.to_string()),
    };
    let status = resp.status().as_u16().to_string();
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("gateway_http_requests_total", &labels).increment(1);
    metrics::histogram!("gateway_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// The standard methods by name; any other (extension methods are arbitrary tokens) "other".
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"FOO").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
