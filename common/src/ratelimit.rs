//! Request rate limits: in-process GCRA (governor) by default; a fixed window in Redis when
//! configured, so that the limit holds across replicas. Both answer the same `Decision`,
//! which the gateway turns into 429 + `Retry-After` and the IETF RateLimit headers.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    Quota, RateLimiter as Governor, clock::Clock, clock::DefaultClock,
    middleware::StateInformationMiddleware, state::keyed::DashMapStateStore,
};

/// A named limit: `limit` requests per `window`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: &'static str,
    pub limit: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window has room again.
    pub reset: Duration,
}

impl Decision {
    /// `RateLimit-Policy` header value, e.g. `"requests";q=100;w=60`.
    pub fn policy_header(&self, policy: &Policy) -> String {
        format!(
            "\"{}\";q={};w={}",
            policy.name,
            policy.limit,
            policy.window.as_secs().max(1)
        )
    }

    /// `RateLimit` header value, e.g. `"requests";r=42;t=17`.
    pub fn header(&self, policy: &Policy) -> String {
        // Round up: a window that resets in 0.2 s has not reset yet.
        let reset = self.reset.as_secs_f64().ceil() as u64;
        format!("\"{}\";r={};t={reset}", policy.name, self.remaining)
    }
}

type Keyed = Governor<String, DashMapStateStore<String>, DefaultClock, StateInformationMiddleware>;

#[derive(Clone)]
enum Backend {
    Memory(Arc<Keyed>),
    Redis(redis::aio::ConnectionManager),
}

#[derive(Clone)]
pub struct RateLimiter {
    policy: Policy,
    backend: Backend,
    clock: DefaultClock,
}

impl RateLimiter {
    pub fn in_memory(policy: Policy) -> Self {
        let limit = NonZeroU32::new(policy.limit.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = policy.window / limit.get();
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(limit))
            .allow_burst(limit);
        let gov = Governor::dashmap(quota).with_middleware::<StateInformationMiddleware>();
        Self {
            policy,
            backend: Backend::Memory(Arc::new(gov)),
            clock: DefaultClock::default(),
        }
    }

    pub fn redis(policy: Policy, conn: redis::aio::ConnectionManager) -> Self {
        Self {
            policy,
            backend: Backend::Redis(conn),
            clock: DefaultClock::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub async fn check(&self, key: &str) -> Decision {
        let limit = self.policy.limit;
        match &self.backend {
            Backend::Memory(gov) => match gov.check_key(&key.to_string()) {
                Ok(snapshot) => Decision {
                    allowed: true,
                    limit,
                    remaining: snapshot.remaining_burst_capacity(),
                    reset: self.policy.window / limit.max(1) * (limit - snapshot.remaining_burst_capacity()),
                },
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    Decision {
                        allowed: false,
                        limit,
                        remaining: 0,
                        reset: wait.max(Duration::from_secs(1)),
                    }
                }
            },
            Backend::Redis(conn) => self.check_redis(conn.clone(), key).await,
        }
    }

    async fn check_redis(&self, mut conn: redis::aio::ConnectionManager, key: &str) -> Decision {
        let window = self.policy.window.as_secs().max(1);
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let bucket = now / window;
        let reset = Duration::from_secs(window - now % window);
        let slot = format!("rl:{}:{key}:{bucket}", self.policy.name);
        let counted: redis::RedisResult<(u64,)> = redis::pipe()
            .atomic()
            .incr(&slot, 1u64)
            .expire(&slot, window as i64 + 1)
            .ignore()
            .query_async(&mut conn)
            .await;
        let limit = self.policy.limit;
        match counted {
            Ok((n,)) => Decision {
                allowed: n <= u64::from(limit),
                limit,
                remaining: u64::from(limit).saturating_sub(n) as u32,
                reset,
            },
            Err(e) => {
                // A limiter must not take the API down with it: fail open, loudly.
                tracing::warn!(error = %e, "rate limiter unreachable; allowing request");
                Decision {
                    allowed: true,
                    limit,
                    remaining: limit,
                    reset,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_limit_refuses_past_the_quota_per_key() {
        let rl = RateLimiter::in_memory(Policy {
            name: "t",
            limit: 3,
            window: Duration::from_secs(60),
        });
        for i in 0..3 {
            let d = rl.check("a").await;
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let d = rl.check("a").await;
        assert!(!d.allowed);
        assert!(d.reset >= Duration::from_secs(1));
        assert!(rl.check("b").await.allowed);
    }
}
