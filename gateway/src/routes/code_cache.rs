//! Landing URLs of referral codes for the redirect hot path: an in-process map (bounded,
//! positive entries for the TTL, unknown codes briefly), then Redis when configured (shared
//! by replicas), then invite-svc. A stale entry is served when invite-svc cannot answer.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;

/// Unknown codes are remembered this long (a new code must not stay 404 for minutes).
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
struct Entry {
    /// `None`: invite-svc said the code does not exist.
    landing: Option<String>,
    fetched: Instant,
}

#[derive(Clone)]
pub struct CodeCache {
    entries: Arc<RwLock<HashMap<String, Entry>>>,
    ttl: Duration,
    max_entries: usize,
    redis: Option<ConnectionManager>,
}

/// Codes are case-insensitive (invite-svc normalises); so is the cache.
pub fn cache_key(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

impl CodeCache {
    pub fn new(ttl: Duration, redis: Option<ConnectionManager>) -> Self {
        Self {
            entries: Arc::default(),
            ttl,
            max_entries: MAX_ENTRIES,
            redis,
        }
    }

    /// The landing URL of `code` (`None` for an unknown code), fetching with `fetch` on a
    /// miss. `fetch` answers `Ok(None)` for NOT_FOUND.
    pub async fn resolve<F, Fut>(&self, code: &str, fetch: F) -> Result<Option<String>, tonic::Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, tonic::Status>>,
    {
        let key = cache_key(code);
        let cached = self.read(&key);
        if let Some(e) = &cached
            && e.fetched.elapsed() < self.ttl_of(e)
        {
            count(if e.landing.is_some() {
                "hit"
            } else {
                "negative_hit"
            });
            return Ok(e.landing.clone());
        }
        if let Some(landing) = self.redis_get(&key).await {
            count("redis_hit");
            self.write(&key, landing.clone());
            return Ok(landing);
        }
        match fetch().await {
            Ok(landing) => {
                count("miss");
                self.write(&key, landing.clone());
                self.redis_set(&key, &landing).await;
                Ok(landing)
            }
            Err(status) => match cached {
                Some(stale) => {
                    count("stale");
                    tracing::warn!(code = %key, error = %status.message(), "serving a stale landing URL");
                    Ok(stale.landing)
                }
                None => Err(status),
            },
        }
    }

    fn ttl_of(&self, e: &Entry) -> Duration {
        if e.landing.is_some() {
            self.ttl
        } else {
            NEGATIVE_TTL.min(self.ttl)
        }
    }

    fn read(&self, key: &str) -> Option<Entry> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    fn write(&self, key: &str, landing: Option<String>) {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_entries && !map.contains_key(key) {
            let ttl = self.ttl;
            map.retain(|_, e| e.fetched.elapsed() < ttl);
            if map.len() >= self.max_entries {
                // Still full of live entries: start over rather than grow without bound.
                map.clear();
            }
        }
        map.insert(
            key.to_string(),
            Entry {
                landing,
                fetched: Instant::now(),
            },
        );
    }

    /// `+<url>` for a known code, `-` for an unknown one.
    async fn redis_get(&self, key: &str) -> Option<Option<String>> {
        let mut conn = self.redis.clone()?;
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("rm:code:{key}"))
            .query_async(&mut conn)
            .await
            .map_err(|e| tracing::warn!(error = %e, "code cache: Redis GET failed"))
            .ok()?;
        match value?.as_str() {
            "-" => Some(None),
            v => v.strip_prefix('+').map(|url| Some(url.to_string())),
        }
    }

    async fn redis_set(&self, key: &str, landing: &Option<String>) {
        let Some(mut conn) = self.redis.clone() else {
            return;
        };
        let (value, ttl) = match landing {
            Some(url) => (format!("+{url}"), self.ttl),
            None => ("-".to_string(), NEGATIVE_TTL.min(self.ttl)),
        };
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("rm:code:{key}"))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await;
        if let Err(e) = set {
            tracing::warn!(error = %e, "code cache: Redis SET failed");
        }
    }

    #[cfg(test)]
    fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }
}

fn count(result: &'static str) {
    metrics::counter!("gateway_code_cache_total", "result" => result).increment(1);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn hits_skip_the_fetch_and_keys_ignore_case() {
        let cache = CodeCache::new(Duration::from_secs(60), None);
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Some("https://x/".to_string()))
        };
        assert_eq!(
            cache.resolve("love-abc234", fetch).await.unwrap().as_deref(),
            Some("https://x/")
        );
        let again = cache
            .resolve("LOVE-ABC234", || async { Err(tonic::Status::internal("no")) })
            .await;
        assert_eq!(again.unwrap().as_deref(), Some("https://x/"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_codes_are_cached_and_stale_entries_cover_outages() {
        let cache = CodeCache::new(Duration::from_millis(0), None);
        assert_eq!(cache.resolve("a", || async { Ok(None) }).await.unwrap(), None);
        cache
            .resolve("b", || async { Ok(Some("u".into())) })
            .await
            .unwrap();
        // TTL 0: every lookup refetches; when that fails the stale answer is served.
        let stale = cache
            .resolve("b", || async { Err(tonic::Status::unavailable("down")) })
            .await;
        assert_eq!(stale.unwrap().as_deref(), Some("u"));
        let none = cache
            .resolve("c", || async { Err(tonic::Status::unavailable("down")) })
            .await;
        assert_eq!(none.unwrap_err().code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn the_map_stays_bounded() {
        let cache = CodeCache::new(Duration::from_secs(60), None).with_max_entries(10);
        for i in 0..25 {
            cache
                .resolve(&format!("c{i}"), || async { Ok(None) })
                .await
                .unwrap();
        }
        assert!(cache.entries.read().unwrap().len() <= 10);
    }
}
