//! The tonic AnalyticsService: decode, authorize, validate, then `reports` reads the
//! rollups and applies the formulas. Global analytics are for admins (and services); a
//! member may read its own funnel and the leaderboards. The live feed is admin only.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    auth::{Principal, Scope},
    ids::{self, from_ts},
    input,
};
use referral_proto::{
    analytics::v1::{
        Activity, AttributionReport, AttributionRequest, Cohorts, CohortsRequest,
        CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, ExperimentRequest, ExperimentResults,
        Funnel, FunnelRequest, FxRate, GetWebhookEndpointRequest, LeaderboardRequest, ListFxRatesRequest,
        ListFxRatesResponse, ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, LiveEvent,
        MetricsFilter, PutFxRateRequest, RecordActivityRequest, StreamEventsRequest, SuperConnectors,
        SuperConnectorsRequest, Timeseries, TimeseriesRequest, ViralMetrics, WebhookEndpoint,
        analytics_service_server::AnalyticsService, cohorts_request, leaderboard_request, timeseries_request,
    },
    common::v1::{AttributionModel, Flow, PartyKind, VendorType},
};
use tonic::{Request, Response, Status, codegen::BoxStream};

use crate::{
    activity,
    domain::{attribution::Model, day_of, metrics::Granularity},
    fx_rates,
    live::LiveFeed,
    reports,
    settings::Settings,
    store::{Ranking, Store, Window},
    webhooks::service::Webhooks,
};

/// The default window: the last 30 days.
const DEFAULT_WINDOW_DAYS: i64 = 30;
/// The longest window a query may ask for (ten years).
const MAX_WINDOW_DAYS: i64 = 3660;
const DEFAULT_LIMIT: i32 = 10;
const MAX_LIMIT: i32 = 100;
const MAX_ID_LEN: usize = 128;
const MAX_TYPES: usize = 50;

pub struct AnalyticsApi<S> {
    store: S,
    settings: Arc<Settings>,
    live: LiveFeed,
    /// Outbound webhooks; absent when the API is built without them (unit tests).
    webhooks: Option<Arc<Webhooks>>,
}

impl<S: Store> AnalyticsApi<S> {
    pub fn new(store: S, settings: Settings, live: LiveFeed) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
            live,
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

/// A metrics filter checked, as a window of whole UTC days `[from, to)` and dimensions.
pub fn window(v: &mut Violations, f: Option<&MetricsFilter>, now: DateTime<Utc>) -> Window {
    let f = f.cloned().unwrap_or_default();
    let instant = |v: &mut Violations, ts: Option<&referral_proto::Timestamp>, field: &str| {
        let t = ts.map(from_ts);
        if matches!(t, Some(None)) {
            v.add(field, "is not a valid timestamp");
        }
        t.flatten()
    };
    let to = instant(v, f.to.as_ref(), "to").unwrap_or(now);
    // Checked: an instant at the edge of chrono's range must not panic.
    let before = |t: DateTime<Utc>, d: Duration| t.checked_sub_signed(d).unwrap_or(t);
    let from = instant(v, f.from.as_ref(), "from").unwrap_or(before(to, Duration::days(DEFAULT_WINDOW_DAYS)));
    v.check(from >= to, "from", "must be before to");
    v.check(
        to - from > Duration::days(MAX_WINDOW_DAYS),
        "from",
        format!("the window may span at most {MAX_WINDOW_DAYS} days"),
    );
    let from_day = day_of(from);
    Window {
        from_day,
        // `to` is exclusive: an instant at midnight ends the day before.
        to_day: day_of(before(to, Duration::microseconds(1))).max(from_day),
        flow: enum_name(v, f.flow, "flow", |x: Flow| x.as_str_name()),
        referrer_kind: enum_name(v, f.referrer_kind, "referrerKind", |x: PartyKind| x.as_str_name()),
        vendor_type: enum_name(v, f.vendor_type, "vendorType", |x: VendorType| x.as_str_name()),
    }
}

/// An optional enum filter by its API name; unspecified or unknown values name the field.
fn enum_name<E: TryFrom<i32>>(
    v: &mut Violations,
    value: Option<i32>,
    field: &str,
    name: impl Fn(E) -> &'static str,
) -> Option<String> {
    let value = value?;
    match E::try_from(value).map(name) {
        Ok(n) if value != 0 => Some(n.to_string()),
        _ => {
            v.add(field, "must be one of the listed values");
            None
        }
    }
}

fn limit(v: &mut Violations, limit: i32) -> i32 {
    v.check(
        !(0..=MAX_LIMIT).contains(&limit),
        "limit",
        format!("must be between 1 and {MAX_LIMIT}"),
    );
    if limit == 0 {
        DEFAULT_LIMIT
    } else {
        limit.clamp(1, MAX_LIMIT)
    }
}

fn answer<T>(r: ApiResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

impl<S: Store> AnalyticsApi<S> {
    async fn viral(&self, p: &Principal, f: &MetricsFilter) -> ApiResult<ViralMetrics> {
        p.authorize(Scope::ReportsRead, Principal::require_admin)?;
        let mut v = Violations::default();
        let w = window(&mut v, Some(f), ids::now());
        v.into_result()?;
        Ok(reports::viral(&self.store, &w).await?)
    }

    async fn funnel(&self, p: &Principal, r: &FunnelRequest) -> ApiResult<Funnel> {
        let mut v = Violations::default();
        input::line(&mut v, &r.referrer_id, MAX_ID_LEN, "referrerId");
        let w = window(&mut v, r.filter.as_ref(), ids::now());
        v.into_result()?;
        if r.referrer_id.is_empty() {
            p.authorize(Scope::ReportsRead, Principal::require_admin)?;
        } else {
            p.authorize(Scope::ReportsRead, |p| {
                p.require_self(&r.referrer_id, "referrerId")
            })?;
        }
        Ok(reports::funnel(&self.store, &w, &r.referrer_id).await?)
    }

    async fn timeseries(&self, p: &Principal, r: &TimeseriesRequest) -> ApiResult<Timeseries> {
        p.authorize(Scope::ReportsRead, Principal::require_admin)?;
        let mut v = Violations::default();
        let w = window(&mut v, r.filter.as_ref(), ids::now());
        let metric = if r.metric.is_empty() {
            "invitations"
        } else {
            r.metric.as_str()
        };
        v.check(
            !reports::SERIES.contains(&metric),
            "metric",
            format!("must be one of {}", reports::SERIES.join(", ")),
        );
        use timeseries_request::Granularity as G;
        let g = match G::try_from(r.granularity) {
            Ok(G::Unspecified | G::Day) => Granularity::Day,
            Ok(G::Week) => Granularity::Week,
            Ok(G::Month) => Granularity::Month,
            Err(_) => {
                v.add("granularity", "must be DAY, WEEK or MONTH");
                Granularity::Day
            }
        };
        v.into_result()?;
        Ok(reports::timeseries(&self.store, &w, g, metric).await?)
    }

    async fn cohorts(&self, p: &Principal, r: &CohortsRequest) -> ApiResult<Cohorts> {
        p.authorize(Scope::ReportsRead, Principal::require_admin)?;
        let mut v = Violations::default();
        let w = window(&mut v, r.filter.as_ref(), ids::now());
        use cohorts_request::Granularity as G;
        let g = match G::try_from(r.granularity) {
            Ok(G::Unspecified | G::Week) => Granularity::Week,
            Ok(G::Month) => Granularity::Month,
            Err(_) => {
                v.add("granularity", "must be WEEK or MONTH");
                Granularity::Week
            }
        };
        v.into_result()?;
        Ok(reports::cohorts(&self.store, &w, g).await?)
    }

    async fn attribution(&self, p: &Principal, r: &AttributionRequest) -> ApiResult<AttributionReport> {
        p.authorize(Scope::ReportsRead, Principal::require_admin)?;
        let mut v = Violations::default();
        let w = window(&mut v, r.filter.as_ref(), ids::now());
        // LAST_TOUCH when none is named.
        let api = match AttributionModel::try_from(r.model) {
            Ok(AttributionModel::Unspecified) => AttributionModel::LastTouch,
            Ok(m) => m,
            Err(_) => {
                v.add(
                    "model",
                    "must be FIRST_TOUCH, LAST_TOUCH, LINEAR, TIME_DECAY or POSITION_BASED",
                );
                AttributionModel::LastTouch
            }
        };
        v.into_result()?;
        let model =
            Model::parse(api.as_str_name()).ok_or_else(|| ApiError::invalid("model", "is not supported"))?;
        Ok(reports::attribution(&self.store, &w, model, api).await?)
    }

    async fn leaderboard(
        &self,
        p: &Principal,
        r: &LeaderboardRequest,
    ) -> ApiResult<referral_proto::analytics::v1::Leaderboard> {
        // Every member and admin may read it; an API key needs reports:read.
        p.authorize(Scope::ReportsRead, |_| Ok(()))?;
        let mut v = Violations::default();
        let kind = enum_name(&mut v, r.referrer_kind, "referrerKind", |x: PartyKind| {
            x.as_str_name()
        });
        let vendor = enum_name(&mut v, r.vendor_type, "vendorType", |x: VendorType| {
            x.as_str_name()
        });
        let n = limit(&mut v, r.limit);
        use leaderboard_request::{Metric as M, Period as P};
        let today = day_of(ids::now());
        let days = match P::try_from(r.period) {
            Ok(P::Unspecified | P::All) => None,
            Ok(P::Week) => Some((today - 6, today)),
            Ok(P::Month) => Some((today - 29, today)),
            Err(_) => {
                v.add("period", "must be WEEK, MONTH or ALL");
                None
            }
        };
        let ranking = match M::try_from(r.metric) {
            Ok(M::Unspecified | M::Referrals) => Ranking::Referrals,
            Ok(M::Revenue) => Ranking::Revenue,
            Ok(M::ConversionRate) => Ranking::ConversionRate,
            Err(_) => {
                v.add("metric", "must be REFERRALS, REVENUE or CONVERSION_RATE");
                Ranking::Referrals
            }
        };
        v.into_result()?;
        let board = reports::Board {
            kind: kind.as_deref(),
            vendor: vendor.as_deref(),
            days,
            currency: &self.settings.currency,
        };
        Ok(reports::leaderboard(&self.store, board, ranking, i64::from(n)).await?)
    }

    async fn super_connectors(
        &self,
        p: &Principal,
        r: &SuperConnectorsRequest,
    ) -> ApiResult<SuperConnectors> {
        p.authorize(Scope::ReportsRead, Principal::require_admin)?;
        let mut v = Violations::default();
        let n = limit(&mut v, r.limit);
        v.into_result()?;
        Ok(reports::super_connectors(&self.store, day_of(ids::now()), n as usize).await?)
    }

    async fn experiment(&self, p: &Principal, r: &ExperimentRequest) -> ApiResult<ExperimentResults> {
        p.authorize(Scope::ReportsRead, Principal::require_admin)?;
        let mut v = Violations::default();
        v.require(&r.template_id, "templateId");
        input::line(&mut v, &r.template_id, MAX_ID_LEN, "templateId");
        let w = window(&mut v, r.filter.as_ref(), ids::now());
        v.into_result()?;
        Ok(reports::experiment(&self.store, &r.template_id, &w).await?)
    }

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

#[tonic::async_trait]
impl<S: Store> AnalyticsService for AnalyticsApi<S> {
    async fn get_viral_metrics(&self, req: Request<MetricsFilter>) -> Result<Response<ViralMetrics>, Status> {
        let p = Principal::of(&req)?;
        answer(self.viral(&p, req.get_ref()).await)
    }

    async fn get_funnel(&self, req: Request<FunnelRequest>) -> Result<Response<Funnel>, Status> {
        let p = Principal::of(&req)?;
        answer(self.funnel(&p, req.get_ref()).await)
    }

    async fn get_timeseries(&self, req: Request<TimeseriesRequest>) -> Result<Response<Timeseries>, Status> {
        let p = Principal::of(&req)?;
        answer(self.timeseries(&p, req.get_ref()).await)
    }

    async fn get_cohorts(&self, req: Request<CohortsRequest>) -> Result<Response<Cohorts>, Status> {
        let p = Principal::of(&req)?;
        answer(self.cohorts(&p, req.get_ref()).await)
    }

    async fn get_attribution(
        &self,
        req: Request<AttributionRequest>,
    ) -> Result<Response<AttributionReport>, Status> {
        let p = Principal::of(&req)?;
        answer(self.attribution(&p, req.get_ref()).await)
    }

    async fn get_leaderboard(
        &self,
        req: Request<LeaderboardRequest>,
    ) -> Result<Response<referral_proto::analytics::v1::Leaderboard>, Status> {
        let p = Principal::of(&req)?;
        answer(self.leaderboard(&p, req.get_ref()).await)
    }

    async fn list_super_connectors(
        &self,
        req: Request<SuperConnectorsRequest>,
    ) -> Result<Response<SuperConnectors>, Status> {
        let p = Principal::of(&req)?;
        answer(self.super_connectors(&p, req.get_ref()).await)
    }

    async fn get_experiment_results(
        &self,
        req: Request<ExperimentRequest>,
    ) -> Result<Response<ExperimentResults>, Status> {
        let p = Principal::of(&req)?;
        answer(self.experiment(&p, req.get_ref()).await)
    }

    async fn stream_events(
        &self,
        req: Request<StreamEventsRequest>,
    ) -> Result<Response<BoxStream<LiveEvent>>, Status> {
        let p = Principal::of(&req)?;
        answer(self.stream(&p, req.into_inner()))
    }

    // Outbound webhooks (webhooks::api), admin only.

    async fn create_webhook_endpoint(
        &self,
        req: Request<CreateWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let p = Principal::of(&req)?;
        let actor = referral_common::audit::Actor::of(&req)?;
        Ok(Response::new(
            self.webhooks()?.create(&p, &actor, req.into_inner()).await?,
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
        let actor = referral_common::audit::Actor::of(&req)?;
        Ok(Response::new(
            self.webhooks()?.delete(&p, &actor, req.into_inner()).await?,
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

    async fn record_activity(
        &self,
        req: Request<RecordActivityRequest>,
    ) -> Result<Response<Activity>, Status> {
        let p = Principal::of(&req)?;
        answer(activity::record(&self.store, &p, req.get_ref(), ids::now()).await)
    }

    async fn put_fx_rate(&self, req: Request<PutFxRateRequest>) -> Result<Response<FxRate>, Status> {
        let p = Principal::of(&req)?;
        let actor = referral_common::audit::Actor::of(&req)?;
        answer(fx_rates::put(&self.store, &p, &actor, req.get_ref(), &self.settings.currency).await)
    }

    async fn list_fx_rates(
        &self,
        req: Request<ListFxRatesRequest>,
    ) -> Result<Response<ListFxRatesResponse>, Status> {
        let p = Principal::of(&req)?;
        answer(fx_rates::list(&self.store, &p, req.get_ref()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_default_to_the_last_30_days_and_bad_filters_name_their_field() {
        let now = at("2026-11-21T15:00:00Z");
        let mut v = Violations::default();
        let w = window(&mut v, None, now);
        assert!(v.is_empty());
        assert_eq!(w.to_day - w.from_day, 30);
        assert_eq!(w.to_day, day_of(now));
        // `to` at midnight ends the day before.
        let f = MetricsFilter {
            from: Some(ids::to_ts(at("2026-11-01T00:00:00Z"))),
            to: Some(ids::to_ts(at("2026-11-08T00:00:00Z"))),
            flow: Some(Flow::CoupleToCouple as i32),
            ..Default::default()
        };
        let w = window(&mut v, Some(&f), now);
        assert!(v.is_empty());
        assert_eq!(
            (w.from_day, w.to_day),
            (
                day_of(at("2026-11-01T00:00:00Z")),
                day_of(at("2026-11-07T12:00:00Z"))
            )
        );
        assert_eq!(w.flow.as_deref(), Some("COUPLE_TO_COUPLE"));
        let bad = MetricsFilter {
            from: Some(ids::to_ts(at("2026-11-08T00:00:00Z"))),
            to: Some(ids::to_ts(at("2026-11-01T00:00:00Z"))),
            flow: Some(0),
            vendor_type: Some(99),
            ..Default::default()
        };
        let mut v = Violations::default();
        window(&mut v, Some(&bad), now);
        let fields: Vec<&str> = v.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["from", "flow", "vendorType"]);
        let far = MetricsFilter {
            from: Some(referral_proto::Timestamp {
                seconds: -8_000_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let mut v = Violations::default();
        window(&mut v, Some(&far), now);
        assert!(!v.is_empty(), "out of range or too long, never a panic");
    }
}
