//! analytics-svc's resources: viral metrics, funnel, time series, cohorts, attribution, the
//! leaderboard, activity, exchange rates, super-connectors, experiments, the live event feed
//! (see [`super::events`]) and outbound webhook endpoints (docs/api.md).

use axum::http::Method;
use referral_common::auth::Scope;
use referral_proto::analytics::v1 as analytics;

use super::{
    events,
    route::{Answer, Body, Route, Rpc, api, unary},
};

const ANALYTICS: &str = "referral.analytics.v1.AnalyticsService";

const ANALYTICS_TAG: &str = "Analytics";
const WEBHOOKS: &str = "Outbound webhooks";

/// analytics-svc's routes.
pub fn routes() -> Vec<Route> {
    use Body::{None as NoBody, Whole};
    use Method as M;
    vec![
        api(M::GET, "/v1/metrics/viral", "K-factor, loop K, cycle and doubling time", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetViralMetrics", NoBody),
            unary!(analytics.get_viral_metrics(analytics::MetricsFilter)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/metrics/funnel", "Funnel from SENT to RETAINED with step rates, churn and the bottleneck", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetFunnel", NoBody),
            unary!(analytics.get_funnel(analytics::FunnelRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/metrics/timeseries", "A metric per day, week or month", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetTimeseries", NoBody),
            unary!(analytics.get_timeseries(analytics::TimeseriesRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/metrics/cohorts", "Referrer cohorts by first invitation period", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetCohorts", NoBody),
            unary!(analytics.get_cohorts(analytics::CohortsRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/metrics/attribution", "Conversion revenue credited per referrer and channel", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetAttribution", NoBody),
            unary!(analytics.get_attribution(analytics::AttributionRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/leaderboard", "Ranked referrers with tier and badges; REVENUE in every currency, converted at dated rates", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetLeaderboard", NoBody),
            unary!(analytics.get_leaderboard(analytics::LeaderboardRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::POST, "/v1/activity", "Report that a referred user ACTIVATED or CHURNED (the marketplace: a service or an API key with activity:write)", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "RecordActivity", Whole),
            unary!(analytics.record_activity(analytics::RecordActivityRequest)))
            .key_scope(Scope::ActivityWrite),
        api(M::PUT, "/v1/fx-rates", "Create or replace a dated exchange rate revenue reports convert with (admin)", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "PutFxRate", Whole),
            unary!(analytics.put_fx_rate(analytics::PutFxRateRequest))),
        api(M::GET, "/v1/fx-rates", "Exchange rates by currency and effective day (admin)", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "ListFxRates", NoBody),
            unary!(analytics.list_fx_rates(analytics::ListFxRatesRequest))),
        api(M::GET, "/v1/super-connectors", "Referrers with at least 20 connections, ranked by score", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "ListSuperConnectors", NoBody),
            unary!(analytics.list_super_connectors(analytics::SuperConnectorsRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/referrers/{id}/network", "A referrer's own network, at most maxNetworkDepth levels deep: counts per level, level 1 by pseudonym (the referrer or admin)", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetReferrerNetwork", NoBody).param("id", "referrerId"),
            unary!(analytics.get_referrer_network(analytics::ReferrerNetworkRequest))),
        api(M::GET, "/v1/experiments/{templateId}/results", "Template variants: rates, lift and p-values", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetExperimentResults", NoBody),
            unary!(analytics.get_experiment_results(analytics::ExperimentRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/events", "Live feed of every service's events as server-sent events (admin)", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "StreamEvents", NoBody),
            events::handler())
            .answer(Answer::EventStream("referral.analytics.v1.LiveEvent")),
        api(M::POST, "/v1/webhook-endpoints", "Register an outbound webhook endpoint; the secret is shown once (admin)", WEBHOOKS,
            Rpc::new(ANALYTICS, "CreateWebhookEndpoint", Whole),
            unary!(analytics.create_webhook_endpoint(analytics::CreateWebhookEndpointRequest))),
        api(M::GET, "/v1/webhook-endpoints/{id}", "An outbound webhook endpoint (admin)", WEBHOOKS,
            Rpc::new(ANALYTICS, "GetWebhookEndpoint", NoBody),
            unary!(analytics.get_webhook_endpoint(analytics::GetWebhookEndpointRequest))),
        api(M::DELETE, "/v1/webhook-endpoints/{id}", "Delete an outbound webhook endpoint (admin)", WEBHOOKS,
            Rpc::new(ANALYTICS, "DeleteWebhookEndpoint", NoBody),
            unary!(analytics.delete_webhook_endpoint(analytics::DeleteWebhookEndpointRequest))),
        api(M::GET, "/v1/webhook-endpoints/{id}/deliveries", "Delivery attempts of an endpoint (admin)", WEBHOOKS,
            Rpc::new(ANALYTICS, "ListWebhookDeliveries", NoBody).param("id", "endpointId"),
            unary!(analytics.list_webhook_deliveries(analytics::ListWebhookDeliveriesRequest))),
    ]
}
