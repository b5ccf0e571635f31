//! The tonic AnalyticsService: decode, authenticate, call one `app` function, map errors.
//! Global analytics are for admins (and services); a member may read its own funnel and the
//! leaderboards. The live feed is admin only.

use std::sync::Arc;

use referral_common::{ApiResult, Violations, auth::Principal, ids};
use referral_proto::analytics::v1::{
    Activity, AttributionReport, AttributionRequest, Cohorts, CohortsRequest, CreateWebhookEndpointRequest,
    DeleteWebhookEndpointRequest, ExperimentRequest, ExperimentResults, Funnel, FunnelRequest, FxRate,
    GetWebhookEndpointRequest, LeaderboardRequest, ListFxRatesRequest, ListFxRatesResponse,
    ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, LiveEvent, MetricsFilter, PutFxRateRequest,
    RecordActivityRequest, ReferrerNetwork, ReferrerNetworkRequest, StreamEventsRequest, SuperConnectors,
    SuperConnectorsRequest, Timeseries, TimeseriesRequest, ViralMetrics, WebhookEndpoint,
    analytics_service_server::AnalyticsService,
};
use tonic::{Request, Response, Status, codegen::BoxStream};

use super::live::LiveFeed;
use crate::{
    app::{
        fx_rates, network, record_activity,
        reports::{self, MAX_ID_LEN},
        webhook_endpoints,
    },
    config::RuntimeConfig,
    domain::webhooks::target::TargetPolicy,
    store::{Store, webhooks::WebhookStore},
};

/// The most event types one live feed subscription may filter on.
const MAX_TYPES: usize = 50;

pub struct AnalyticsApi<S> {
    store: S,
    /// Pseudonymises the people a network lists.
    pii: referral_common::pii::PiiKeys,
    config: Arc<RuntimeConfig>,
    live: LiveFeed,
    /// The SSRF guard of outbound webhooks, when they run in this process (absent when the
    /// API is built without them).
    webhook_targets: Option<Arc<TargetPolicy>>,
}

impl<S: Store> AnalyticsApi<S> {
    pub fn new(store: S, config: RuntimeConfig, live: LiveFeed, pii: referral_common::pii::PiiKeys) -> Self {
        Self {
            store,
            pii,
            config: Arc::new(config),
            live,
            webhook_targets: None,
        }
    }

    /// With outbound webhooks running (`adapters::webhooks::start`), checking endpoint URLs
    /// against `targets`.
    pub fn with_webhooks(mut self, targets: TargetPolicy) -> Self {
        self.webhook_targets = Some(Arc::new(targets));
        self
    }

    fn webhook_targets(&self) -> Result<&TargetPolicy, Status> {
        self.webhook_targets
            .as_deref()
            .ok_or_else(|| Status::failed_precondition("webhooks are not running in this process"))
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The live feed, for admins: the request's type filter bounded, then a subscription.
    fn stream(&self, p: &Principal, r: StreamEventsRequest) -> ApiResult<BoxStream<LiveEvent>> {
        p.require_admin()?;
        let mut v = Violations::default();
        v.check(r.types.len() > MAX_TYPES, "types", format!("at most {MAX_TYPES}"));
        v.check(
            r.types.iter().any(|t| t.len() > MAX_ID_LEN),
            "types",
            "a type is too long",
        );
        v.into_result()?;
        Ok(Box::pin(self.live.subscribe(r.types)))
    }
}

fn answer<T>(r: ApiResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl<S: Store + WebhookStore> AnalyticsService for AnalyticsApi<S> {
    async fn get_viral_metrics(&self, req: Request<MetricsFilter>) -> Result<Response<ViralMetrics>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::viral::get(&self.store, &p, req.get_ref()).await)
    }

    async fn get_funnel(&self, req: Request<FunnelRequest>) -> Result<Response<Funnel>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::funnel::get(&self.store, &p, req.get_ref()).await)
    }

    async fn get_timeseries(&self, req: Request<TimeseriesRequest>) -> Result<Response<Timeseries>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::timeseries::get(&self.store, &p, req.get_ref()).await)
    }

    async fn get_cohorts(&self, req: Request<CohortsRequest>) -> Result<Response<Cohorts>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::cohorts::get(&self.store, &p, req.get_ref()).await)
    }

    async fn get_attribution(
        &self,
        req: Request<AttributionRequest>,
    ) -> Result<Response<AttributionReport>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::attribution::get(&self.store, &p, req.get_ref()).await)
    }

    async fn get_leaderboard(
        &self,
        req: Request<LeaderboardRequest>,
    ) -> Result<Response<referral_proto::analytics::v1::Leaderboard>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::leaderboard::get(&self.store, &p, req.get_ref(), &self.config.currency).await)
    }

    async fn list_super_connectors(
        &self,
        req: Request<SuperConnectorsRequest>,
    ) -> Result<Response<SuperConnectors>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::super_connectors::get(&self.store, &p, req.get_ref()).await)
    }

    async fn get_referrer_network(
        &self,
        req: Request<ReferrerNetworkRequest>,
    ) -> Result<Response<ReferrerNetwork>, Status> {
        let p = Principal::of(&req)?;
        let max = self.config.max_network_depth;
        answer(network::get(&self.store, &self.pii, max, &p, req.get_ref()).await)
    }

    async fn get_experiment_results(
        &self,
        req: Request<ExperimentRequest>,
    ) -> Result<Response<ExperimentResults>, Status> {
        let p = Principal::of(&req)?;
        answer(reports::experiment::get(&self.store, &p, req.get_ref()).await)
    }

    async fn stream_events(
        &self,
        req: Request<StreamEventsRequest>,
    ) -> Result<Response<BoxStream<LiveEvent>>, Status> {
        let p = Principal::of(&req)?;
        answer(self.stream(&p, req.into_inner()))
    }

    // Outbound webhooks (app::webhook_endpoints), admin only.

    async fn create_webhook_endpoint(
        &self,
        req: Request<CreateWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let p = Principal::of(&req)?;
        let actor = referral_common::audit::Actor::of(&req)?;
        let targets = self.webhook_targets()?;
        answer(webhook_endpoints::create(&self.store, targets, &p, &actor, req.into_inner()).await)
    }

    async fn get_webhook_endpoint(
        &self,
        req: Request<GetWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let p = Principal::of(&req)?;
        self.webhook_targets()?;
        answer(webhook_endpoints::get(&self.store, &p, req.into_inner()).await)
    }

    async fn delete_webhook_endpoint(
        &self,
        req: Request<DeleteWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let p = Principal::of(&req)?;
        let actor = referral_common::audit::Actor::of(&req)?;
        self.webhook_targets()?;
        answer(webhook_endpoints::delete(&self.store, &p, &actor, req.into_inner()).await)
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        let p = Principal::of(&req)?;
        self.webhook_targets()?;
        answer(webhook_endpoints::deliveries(&self.store, &p, req.into_inner()).await)
    }

    async fn record_activity(
        &self,
        req: Request<RecordActivityRequest>,
    ) -> Result<Response<Activity>, Status> {
        let p = Principal::of(&req)?;
        answer(record_activity::record(&self.store, &p, req.get_ref(), ids::now()).await)
    }

    async fn put_fx_rate(&self, req: Request<PutFxRateRequest>) -> Result<Response<FxRate>, Status> {
        let p = Principal::of(&req)?;
        let actor = referral_common::audit::Actor::of(&req)?;
        answer(fx_rates::put(&self.store, &p, &actor, req.get_ref(), &self.config.currency).await)
    }

    async fn list_fx_rates(
        &self,
        req: Request<ListFxRatesRequest>,
    ) -> Result<Response<ListFxRatesResponse>, Status> {
        let p = Principal::of(&req)?;
        answer(fx_rates::list(&self.store, &p, req.get_ref()).await)
    }
}
