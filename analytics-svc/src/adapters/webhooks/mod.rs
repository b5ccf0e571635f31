//! Outbound webhooks' adapters (docs/api.md, analytics-svc): a consumer per source log that
//! fans events out to delivery rows (`app::webhook_fan_out`), and the dispatcher that leases
//! due deliveries (two replicas never send the same one at once), signs them per Standard
//! Webhooks, POSTs them through the SSRF-guarded client and records each attempt. Endpoints
//! are managed through the gRPC adapter (`app::webhook_endpoints`).

pub mod consumer;
pub mod dispatcher;
pub mod resolver;

use std::sync::Arc;

use referral_common::{
    consumer::{ConsumerConfig, supervise},
    supervisor::{Supervisor, until_shutdown},
};
use tokio::sync::{Notify, watch};

use self::{consumer::WebhookEvents, dispatcher::Dispatcher};
use crate::{
    config::webhooks::WebhookConfig, domain::webhooks::target::TargetPolicy, store::webhooks::WebhookStore,
};

/// Spawns one consumer per source log and the dispatcher; returns the target policy the
/// endpoint operations check URLs against.
pub fn start<W: WebhookStore>(
    store: W,
    config: &WebhookConfig,
    sources: Vec<ConsumerConfig>,
    shutdown: watch::Receiver<bool>,
    tasks: &Supervisor,
    pii: &referral_common::pii::PiiKeys,
) -> anyhow::Result<TargetPolicy> {
    let targets = config.target_policy()?;
    let retry = config.retry_policy()?;
    let wake = Arc::new(Notify::new());
    for source in sources {
        tracing::info!(source = %source.source, "webhooks: consuming the event log");
        let sink = WebhookEvents::new(store.clone(), wake.clone(), pii.clone());
        let name = format!("analytics-svc.webhooks.consumer.{}", source.source);
        supervise(tasks, name, source, sink, shutdown.clone());
    }
    let dispatcher = Dispatcher::new(store, targets.clone(), retry, config.webhook_timeout, wake)?;
    tasks.spawn("analytics-svc.webhooks.dispatcher", move || {
        until_shutdown(dispatcher.clone().run(shutdown.clone()))
    });
    Ok(targets)
}
