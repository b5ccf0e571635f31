//! An identity provider's keys for web tokens (`JWT_JWKS_URL` or `JWT_JWKS_FILE`), kept
//! current the way providers rotate them:
//! - read once at start-up (unreadable: start-up fails, naming the setting);
//! - refreshed by a supervised task every `JWT_JWKS_REFRESH`, a file also as soon as it
//!   changes (modification time or length, looked at every couple of seconds);
//! - refreshed on a token whose `kid` we do not know (a key newer than our copy), at most
//!   once per [`JwksOptions::min_refetch`] so random `kid`s cannot make us hammer the
//!   provider;
//! - a refresh that fails (unreachable, not a set, no usable key) is logged and counted
//!   (`jwks_refreshes_total{result="error"}`) and the last good set stays in force.

pub mod keyset;
pub mod source;
#[cfg(test)]
pub(crate) mod testkeys;

use std::{
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
pub use keyset::{Key, KeySet, NoKey};
pub use source::Source;
use tokio::sync::Notify;

use crate::supervisor::Supervisor;

/// Default of `JWT_JWKS_REFRESH`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Fewest seconds between two fetches for unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// How often a file's stamp is looked at.
pub const FILE_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct JwksOptions {
    /// Every so often the set is fetched again anyway.
    pub refresh: Duration,
    /// Fewest time between two fetches caused by unknown `kid`s.
    pub min_refetch: Duration,
    /// How often a file source is checked for changes.
    pub file_poll: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            refresh: DEFAULT_REFRESH,
            min_refetch: MIN_REFETCH,
            file_poll: FILE_POLL,
        }
    }
}

/// The key set in force and what keeps it current. Cheap to clone; the refresher stops
/// once the last clone is dropped.
#[derive(Clone)]
pub struct Jwks(Arc<Inner>);

struct Inner {
    source: Source,
    options: JwksOptions,
    current: ArcSwap<KeySet>,
    /// One fetch at a time; waiters for an unknown `kid` see the result of the one running.
    fetching: tokio::sync::Mutex<()>,
    /// When a fetch for an unknown `kid` last ran.
    last_unknown_fetch: Mutex<Option<Instant>>,
    /// The file's stamp when last read.
    stamp: Mutex<source::Stamp>,
    /// Wakes the refresher for an unknown `kid` seen where nobody can wait (gRPC interceptors).
    wake: Notify,
}

impl Jwks {
    /// Reads the set now (an error names the setting and the reason) and starts the
    /// refresher under a supervisor.
    pub async fn load(source: Source, options: JwksOptions) -> Result<Jwks, crate::config::ConfigError> {
        let setting = source.setting();
        let stamp = source.stamp();
        let set = read(&source)
            .await
            .map_err(|e| crate::config::ConfigError::new(setting, format!("cannot load the JWK Set: {e}")))?;
        record_keys(set.len());
        let jwks = Jwks(Arc::new(Inner {
            source,
            options,
            current: ArcSwap::from_pointee(set),
            fetching: tokio::sync::Mutex::new(()),
            last_unknown_fetch: Mutex::new(None),
            stamp: Mutex::new(stamp),
            wake: Notify::new(),
        }));
        let weak = Arc::downgrade(&jwks.0);
        Supervisor::new().spawn("jwks.refresher", move || refresher(weak.clone()));
        Ok(jwks)
    }

    /// The set in force.
    pub fn current(&self) -> Arc<KeySet> {
        self.0.current.load_full()
    }

    pub fn source(&self) -> &Source {
        &self.0.source
    }

    /// Fetches the set now; on failure the set in force stays (and the error is returned).
    pub async fn refresh(&self) -> Result<(), String> {
        let _one = self.0.fetching.lock().await;
        self.0.refresh_locked().await
    }

    /// For a token naming `kid` we do not have: fetches the set unless another fetch for an
    /// unknown `kid` ran within `min_refetch` (or the key arrived meanwhile).
    pub async fn refresh_for_kid(&self, kid: &str) {
        self.0.refresh_for_unknown(Some(kid)).await;
    }

    /// The same, from where nobody can wait: the refresher does it soon.
    pub fn nudge(&self) {
        self.0.wake.notify_one();
    }
}

impl Inner {
    async fn refresh_locked(&self) -> Result<(), String> {
        let stamp = self.source.stamp();
        match read(&self.source).await {
            Ok(set) => {
                record_keys(set.len());
                metrics::counter!("jwks_refreshes_total", "result" => "ok").increment(1);
                self.current.store(Arc::new(set));
                *lock(&self.stamp) = stamp;
                Ok(())
            }
            Err(e) => {
                metrics::counter!("jwks_refreshes_total", "result" => "error").increment(1);
                tracing::warn!(
                    setting = self.source.setting(),
                    error = %e,
                    "JWK Set refresh failed; keeping the keys in force"
                );
                // A broken file is not read again until it changes again.
                *lock(&self.stamp) = stamp;
                Err(e)
            }
        }
    }

    async fn refresh_for_unknown(&self, kid: Option<&str>) {
        let _one = self.fetching.lock().await;
        if kid.is_some_and(|k| self.current.load().contains_kid(k)) {
            return;
        }
        {
            let mut last = lock(&self.last_unknown_fetch);
            if last.is_some_and(|t| t.elapsed() < self.options.min_refetch) {
                return;
            }
            *last = Some(Instant::now());
        }
        let _ = self.refresh_locked().await;
    }
}

async fn read(source: &Source) -> Result<KeySet, String> {
    KeySet::parse(&source.read().await?)
}

fn record_keys(n: usize) {
    metrics::gauge!("jwks_keys").set(n as f64);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps the set current until the last [`Jwks`] is dropped.
async fn refresher(weak: Weak<Inner>) -> Result<(), std::convert::Infallible> {
    let mut next_refresh = match weak.upgrade() {
        Some(inner) => Instant::now() + inner.options.refresh,
        None => return Ok(()),
    };
    loop {
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let tick = match inner.source {
            Source::File(_) => inner.options.file_poll.min(inner.options.refresh),
            Source::Url(_) => inner.options.refresh,
        };
        let woken = tokio::select! {
            _ = inner.wake.notified() => true,
            _ = tokio::time::sleep(tick) => false,
        };
        if woken {
            inner.refresh_for_unknown(None).await;
        }
        // Checked after a wake-up too, so a stream of unknown `kid`s cannot hold back the
        // periodic refresh or a changed file.
        if Instant::now() >= next_refresh {
            next_refresh = Instant::now() + inner.options.refresh;
            let _one = inner.fetching.lock().await;
            let _ = inner.refresh_locked().await;
        } else if inner.source.stamp() != *lock(&inner.stamp) {
            let _one = inner.fetching.lock().await;
            let _ = inner.refresh_locked().await;
        }
    }
}

#[cfg(test)]
mod tests;
