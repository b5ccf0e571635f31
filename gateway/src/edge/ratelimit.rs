//! Request limits: per token subject (or client IP when anonymous) for the API, per client IP
//! for the `/r/{code}` redirect. Every response carries the IETF `RateLimit-Policy` and
//! `RateLimit` headers; a refusal is 429 with `Retry-After`.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use referral_common::ratelimit::{Policy, RateLimiter};

use super::{caller::Caller, client_ip::ClientIp};
use crate::mapping::errors::HttpError;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

pub fn api_policy(per_minute: u32) -> Policy {
    Policy {
        name: "api",
        limit: per_minute,
        window: Duration::from_secs(60),
    }
}

pub fn redirect_policy(per_minute: u32) -> Policy {
    Policy {
        name: "redirect",
        limit: per_minute,
        window: Duration::from_secs(60),
    }
}

/// Internal callers and imports (role `service`) get their own, larger allowance.
pub fn service_policy(per_minute: u32) -> Policy {
    Policy {
        name: "service",
        limit: per_minute,
        window: Duration::from_secs(60),
    }
}

/// The limiters, in memory or in Redis.
#[derive(Clone)]
pub struct Limits {
    pub api: RateLimiter,
    pub redirect: RateLimiter,
    pub service: RateLimiter,
}

/// Probes and scrapes are never limited: a busy client IP must not take a pod out of
/// readiness or hide its metrics.
fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

pub async fn middleware(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    if is_operational(req.uri().path()) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or(ClientIp(None));
    // The unsubscribe link is public like the redirect, and limited like it.
    let (limiter, key) = if req.uri().path().starts_with("/r/") || req.uri().path().starts_with("/u/") {
        (&limits.redirect, format!("ip:{}", ip.text()))
    } else {
        match req.extensions().get::<Caller>().and_then(Caller::principal) {
            Some(p) if p.role == referral_common::auth::Role::Service => {
                (&limits.service, format!("svc:{}", p.sub))
            }
            // Server-to-server callers (billing posting conversions) get the service allowance.
            Some(p) if p.role == referral_common::auth::Role::ApiKey => {
                (&limits.service, format!("key:{}", p.sub))
            }
            Some(p) => (&limits.api, format!("sub:{}", p.sub)),
            None => (&limits.api, format!("ip:{}", ip.text())),
        }
    };
    let decision = limiter.check(&key).await;
    let policy = limiter.policy();
    let mut resp = if decision.allowed {
        next.run(req).await
    } else {
        metrics::counter!("gateway_rate_limited_total", "policy" => policy.name).increment(1);
        HttpError::rate_limited(
            format!(
                "rate limit exceeded: {} requests per {}s",
                policy.limit,
                policy.window.as_secs()
            ),
            decision.reset,
        )
        .into_response()
    };
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&decision.policy_header(policy)) {
        headers.insert(RATELIMIT_POLICY.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&decision.header(policy)) {
        headers.insert(RATELIMIT.clone(), v);
    }
    resp
}
