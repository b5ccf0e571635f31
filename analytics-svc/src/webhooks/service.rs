//! Webhooks as one piece for analytics-svc's `serve`: start the consumers (one per source
//! log) and the dispatcher on the service's own database, and answer the four RPCs. The
//! backend is chosen at start-up, so the API type is an enum over the two stores.

use referral_common::supervisor::{Supervisor, until_shutdown};
use std::sync::Arc;

use referral_common::{
    ApiResult,
    audit::Actor,
    auth::Principal,
    consumer::{self, ConsumerConfig},
};
use referral_proto::analytics::v1::{
    CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, GetWebhookEndpointRequest,
    ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, WebhookEndpoint,
};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::{Notify, watch};

use super::{
    api::WebhookApi,
    consumer::WebhookEvents,
    dispatcher::Dispatcher,
    settings::WebhookSettings,
    store::{PgWebhooks, SqliteWebhooks, WebhookStore},
};

/// A store whose database also holds the webhook tables (migration 0002).
pub trait WebhookBackend {
    fn start_webhooks(
        &self,
        settings: &WebhookSettings,
        sources: Vec<ConsumerConfig>,
        shutdown: watch::Receiver<bool>,
        tasks: &Supervisor,
    ) -> anyhow::Result<Webhooks>;
}

impl WebhookBackend for crate::store::PgStore {
    fn start_webhooks(
        &self,
        settings: &WebhookSettings,
        sources: Vec<ConsumerConfig>,
        shutdown: watch::Receiver<bool>,
        tasks: &Supervisor,
    ) -> anyhow::Result<Webhooks> {
        Webhooks::start_postgres(self.pool().clone(), settings, sources, shutdown, tasks)
    }
}

impl WebhookBackend for crate::store::SqliteStore {
    fn start_webhooks(
        &self,
        settings: &WebhookSettings,
        sources: Vec<ConsumerConfig>,
        shutdown: watch::Receiver<bool>,
        tasks: &Supervisor,
    ) -> anyhow::Result<Webhooks> {
        Webhooks::start_sqlite(self.pool().clone(), settings, sources, shutdown, tasks)
    }
}

pub enum Webhooks {
    Postgres(WebhookApi<PgWebhooks>),
    Sqlite(WebhookApi<SqliteWebhooks>),
}

impl Webhooks {
    /// Starts webhooks on analytics-svc's Postgres schema (already migrated).
    pub fn start_postgres(
        pool: PgPool,
        settings: &WebhookSettings,
        sources: Vec<ConsumerConfig>,
        shutdown: watch::Receiver<bool>,
        tasks: &Supervisor,
    ) -> anyhow::Result<Self> {
        Ok(Self::Postgres(start(
            PgWebhooks::new(pool),
            settings,
            sources,
            shutdown,
            tasks,
        )?))
    }

    /// Starts webhooks on analytics-svc's SQLite file (already migrated).
    pub fn start_sqlite(
        pool: SqlitePool,
        settings: &WebhookSettings,
        sources: Vec<ConsumerConfig>,
        shutdown: watch::Receiver<bool>,
        tasks: &Supervisor,
    ) -> anyhow::Result<Self> {
        Ok(Self::Sqlite(start(
            SqliteWebhooks::new(pool),
            settings,
            sources,
            shutdown,
            tasks,
        )?))
    }

    pub async fn create(
        &self,
        p: &Principal,
        actor: &Actor,
        req: CreateWebhookEndpointRequest,
    ) -> ApiResult<WebhookEndpoint> {
        match self {
            Self::Postgres(api) => api.create(p, actor, req).await,
            Self::Sqlite(api) => api.create(p, actor, req).await,
        }
    }

    pub async fn get(&self, p: &Principal, req: GetWebhookEndpointRequest) -> ApiResult<WebhookEndpoint> {
        match self {
            Self::Postgres(api) => api.get(p, req).await,
            Self::Sqlite(api) => api.get(p, req).await,
        }
    }

    pub async fn delete(
        &self,
        p: &Principal,
        actor: &Actor,
        req: DeleteWebhookEndpointRequest,
    ) -> ApiResult<WebhookEndpoint> {
        match self {
            Self::Postgres(api) => api.delete(p, actor, req).await,
            Self::Sqlite(api) => api.delete(p, actor, req).await,
        }
    }

    pub async fn deliveries(
        &self,
        p: &Principal,
        req: ListWebhookDeliveriesRequest,
    ) -> ApiResult<ListWebhookDeliveriesResponse> {
        match self {
            Self::Postgres(api) => api.deliveries(p, req).await,
            Self::Sqlite(api) => api.deliveries(p, req).await,
        }
    }
}

/// Spawns one consumer per source log and the dispatcher; returns the RPCs' API.
pub fn start<W: WebhookStore>(
    store: W,
    settings: &WebhookSettings,
    sources: Vec<ConsumerConfig>,
    shutdown: watch::Receiver<bool>,
    tasks: &Supervisor,
) -> anyhow::Result<WebhookApi<W>> {
    let targets = settings.target_policy()?;
    let retry = settings.retry_policy()?;
    let wake = Arc::new(Notify::new());
    for source in sources {
        tracing::info!(source = %source.source, "webhooks: consuming the event log");
        let sink = WebhookEvents::new(store.clone(), wake.clone());
        let name = format!("analytics-svc.webhooks.consumer.{}", source.source);
        consumer::supervise(tasks, name, source, sink, shutdown.clone());
    }
    let dispatcher = Dispatcher::new(
        store.clone(),
        targets.clone(),
        retry,
        settings.webhook_timeout,
        wake,
    )?;
    tasks.spawn("analytics-svc.webhooks.dispatcher", move || {
        until_shutdown(dispatcher.clone().run(shutdown.clone()))
    });
    Ok(WebhookApi::new(store, targets))
}
