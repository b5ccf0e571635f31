//! The tonic AnalyticsService: decode, authorize, validate, read rollups, compute the
//! metric with `domain`, map errors. Global analytics are for admins (and services); a
//! member may read only its own funnel.

use std::sync::Arc;

use referral_common::auth::Principal;
use referral_proto::analytics::v1::{
    CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, GetWebhookEndpointRequest,
    ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, WebhookEndpoint,
    analytics_service_server::AnalyticsService,
};
use tonic::{Request, Response, Status};

use crate::{settings::Settings, store::Store, webhooks::service::Webhooks};

pub struct AnalyticsApi<S> {
    store: S,
    settings: Arc<Settings>,
    /// Outbound webhooks; absent when the API is built without them (unit tests).
    webhooks: Option<Arc<Webhooks>>,
}

impl<S: Store> AnalyticsApi<S> {
    pub fn new(store: S, settings: Settings) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
            webhooks: None,
        }
    }

    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = Some(Arc::new(webhooks));
        self
    }

    fn webhooks(&self) -> Result<&Webhooks, Status> {
        self.webhooks
            .as_deref()
            .ok_or_else(|| Status::failed_precondition("webhooks are not running in this process"))
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

#[tonic::async_trait]
impl<S: Store> AnalyticsService for AnalyticsApi<S> {
    // Outbound webhooks (webhooks::api), admin only.

    async fn create_webhook_endpoint(
        &self,
        req: Request<CreateWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(
            self.webhooks()?.create(&p, req.into_inner()).await?,
        ))
    }

    async fn get_webhook_endpoint(
        &self,
        req: Request<GetWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(self.webhooks()?.get(&p, req.into_inner()).await?))
    }

    async fn delete_webhook_endpoint(
        &self,
        req: Request<DeleteWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(
            self.webhooks()?.delete(&p, req.into_inner()).await?,
        ))
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(
            self.webhooks()?.deliveries(&p, req.into_inner()).await?,
        ))
    }
}
