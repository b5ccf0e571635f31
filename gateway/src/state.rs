//! What every handler shares: settings, keys, service clients, limits, the referral-code
//! cache and the click queue.

use std::{ops::Deref, sync::Arc};

use referral_common::{
    auth::{JwtKeys, ServiceKeys},
    ratelimit::RateLimiter,
};
use tokio::sync::watch;

use crate::{
    clients::Clients,
    config::RuntimeConfig,
    edge::ratelimit::{Limits, api_policy, redirect_policy, service_policy},
    routes::{
        clicks::{ClickBatcher, ClickQueue},
        code_cache::CodeCache,
    },
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: RuntimeConfig,
    pub keys: JwtKeys,
    pub clients: Clients,
    pub limits: Limits,
    pub codes: CodeCache,
    pub clicks: ClickQueue,
    /// Set at shutdown: long-lived responses (event streams) end so the server can drain.
    closing: watch::Sender<bool>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Ends the event streams (shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`AppState::close`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Clients, limiters and caches for `settings`, and the click batcher (already running;
    /// hand it to [`ClickBatcher::drain`] at shutdown). Connects to Redis when configured.
    pub async fn new(settings: RuntimeConfig) -> anyhow::Result<(AppState, ClickBatcher)> {
        // Install the recorder before the first metric is touched (no-op when installed).
        let _ = referral_common::metrics::handle();
        // Web tokens only at the edge: the service key signs, it never verifies here. A JWKS
        // that cannot be read stops start-up here, naming its setting.
        let keys = settings.web_tokens.keys().await?;
        let clients = Clients::new(&settings, &ServiceKeys::new(&settings.service_jwt_secret))?;
        let redis = match &settings.redis_url {
            Some(url) => Some(
                referral_common::redis_client::client(url, settings.redis_ca_file.as_deref())?
                    .get_connection_manager()
                    .await
                    .map_err(|e| anyhow::anyhow!("invalid setting REDIS_URL: cannot connect ({e})"))?,
            ),
            None => None,
        };
        let api = api_policy(settings.api_rate_limit_per_minute);
        let redirect = redirect_policy(settings.redirect_rate_limit_per_minute);
        let service = service_policy(settings.service_rate_limit_per_minute);
        let limits = match &redis {
            Some(conn) => Limits {
                api: RateLimiter::redis(api, conn.clone()),
                redirect: RateLimiter::redis(redirect, conn.clone()),
                service: RateLimiter::redis(service, conn.clone()),
            },
            None => Limits {
                api: RateLimiter::in_memory(api),
                redirect: RateLimiter::in_memory(redirect),
                service: RateLimiter::in_memory(service),
            },
        };
        let codes = CodeCache::new(settings.code_cache_ttl, redis);
        let (clicks, batcher) = ClickBatcher::start(clients.invite.clone());
        let state = AppState(Arc::new(Inner {
            settings,
            keys,
            clients,
            limits,
            codes,
            clicks,
            closing: watch::channel(false).0,
        }));
        Ok((state, batcher))
    }
}
