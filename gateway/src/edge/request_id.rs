//! Request ids: a caller's `x-request-id` is kept when it is sane, otherwise a UUIDv7 is
//! made; it is returned, passed to every service, and recorded on the request's span.

use std::time::Instant;

use axum::{
    extract::Request,
    http::{HeaderValue, header::HeaderName},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A caller's id is accepted when it is short printable ASCII (it ends up in logs and
/// metadata).
fn accept(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?.trim();
    let sane = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| s.to_string())
}

pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        assert_eq!(
            accept(&HeaderValue::from_static("abc-123")),
            Some("abc-123".into())
        );
        assert_eq!(accept(&HeaderValue::from_static("has space")), None);
        assert_eq!(accept(&HeaderValue::from_str(&"x".repeat(200)).unwrap()), None);
    }
}
