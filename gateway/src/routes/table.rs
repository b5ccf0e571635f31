//! Every route of the gateway, in API.md's order: the router and `/openapi.json` are both
//! built from this list.

use std::sync::LazyLock;

use axum::http::Method;
use referral_common::auth::Scope;
use referral_proto::{
    analytics::v1 as analytics, fraud::v1 as fraud, incentive::v1 as incentive, invite::v1 as invite,
};

use super::{
    Answer, Body, Handler, Route, Rpc, api_keys, audit, dashboard, ops, parked, privacy, sdk, webhook,
};
use crate::{errors::HttpError, json, redirect, sse};

pub const INVITE: &str = "referral.invite.v1.InviteService";
pub const API_KEYS: &str = "referral.invite.v1.ApiKeyService";
pub const FRAUD: &str = "referral.fraud.v1.FraudService";
pub const INCENTIVE: &str = "referral.incentive.v1.IncentiveService";
pub const ANALYTICS: &str = "referral.analytics.v1.AnalyticsService";
pub const PRIVACY: &str = "referral.common.v1.PrivacyService";
pub const AUDIT: &str = "referral.common.v1.AuditLog";
pub const PARKED: &str = "referral.common.v1.ParkedWork";

/// A unary RPC as a JSON handler: decode the request message (400 naming the field on bad
/// input), call the service with the caller's context, answer its message as JSON.
macro_rules! unary {
    ($client:ident . $method:ident ( $req:ty )) => {
        unary!($client in concat!(stringify!($client), "-svc"), $method($req))
    };
    // A client whose service is named otherwise (in transport failures).
    ($client:ident in $service:expr, $method:ident ( $req:ty )) => {
        Handler::Json {
            call: |state, ctx, input| {
                Box::pin(async move {
                    let message: $req = json::decode(input)?;
                    let mut client = state.clients.$client.clone();
                    let resp = client
                        .$method(ctx.request(message))
                        .await
                        .map_err(|s| HttpError::from_upstream($service, &s))?;
                    Ok(json::respond(resp.get_ref()))
                })
            },
            decodes: |v| json::decode::<$req>(v).map(|_| ()),
            request_type: std::any::type_name::<$req>,
        }
    };
}

pub fn table() -> &'static [Route] {
    &TABLE
}

static TABLE: LazyLock<Vec<Route>> = LazyLock::new(routes);

/// An authenticated route mapped to `service/method`.
fn api(
    method: Method,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    rpc: Rpc,
    handler: Handler,
) -> Route {
    Route::new(method, path, rpc.method, summary)
        .tag(tag)
        .bearer()
        .rpc(rpc)
        .handler(handler)
}

const CODES: &str = "Referral codes";
const INVITATIONS: &str = "Invitations";
const TRACKING: &str = "Tracking and attribution";
const FRAUD_TAG: &str = "Fraud review";
const REWARDS: &str = "Rewards";
const ANALYTICS_TAG: &str = "Analytics";
const WEBHOOKS: &str = "Outbound webhooks";
const PRIVACY_TAG: &str = "Privacy";
const API_KEYS_TAG: &str = "API keys";
const OPS: &str = "Operations";

fn routes() -> Vec<Route> {
    use Body::{Field, None as NoBody, Whole};
    use Method as M;
    vec![
        // invite-svc: referral codes
        api(M::POST, "/v1/referral-codes", "Create a memorable referral code", CODES,
            Rpc::new(INVITE, "CreateReferralCode", Whole),
            unary!(invite.create_referral_code(invite::CreateReferralCodeRequest))),
        api(M::GET, "/v1/referral-codes/{code}", "A referral code with its click, signup and conversion counts", CODES,
            Rpc::new(INVITE, "GetReferralCode", NoBody),
            unary!(invite.get_referral_code(invite::GetReferralCodeRequest))),
        Route::new(M::GET, "/r/{code}", "Redirect", "Follow a referral link: 302 to its landing page, setting the attribution cookie")
            .tag(CODES)
            .answer(Answer::Redirect)
            .raw(|s, r| Box::pin(redirect::handle(s, r))),
        // invite-svc: invitations
        api(M::POST, "/v1/invitations", "Create an invitation (fraud-checked, scheduled, paced by quota)", INVITATIONS,
            Rpc::new(INVITE, "CreateInvitation", Whole),
            unary!(invite.create_invitation(invite::CreateInvitationRequest)))
            .key_scope(Scope::InvitationsWrite),
        api(M::POST, "/v1/invitations:batchCreate", "Create up to 100 invitations, each judged alone", INVITATIONS,
            Rpc::new(INVITE, "BatchCreateInvitations", Whole),
            unary!(invite.batch_create_invitations(invite::BatchCreateInvitationsRequest)))
            .key_scope(Scope::InvitationsWrite),
        api(M::GET, "/v1/invitations/{id}", "An invitation", INVITATIONS,
            Rpc::new(INVITE, "GetInvitation", NoBody),
            unary!(invite.get_invitation(invite::GetInvitationRequest))),
        api(M::GET, "/v1/invitations", "A referrer's invitations, newest first", INVITATIONS,
            Rpc::new(INVITE, "ListInvitations", NoBody),
            unary!(invite.list_invitations(invite::ListInvitationsRequest))),
        api(M::POST, "/v1/invitations/{id}:cancel", "Cancel an invitation before it is sent", INVITATIONS,
            Rpc::new(INVITE, "CancelInvitation", Whole),
            unary!(invite.cancel_invitation(invite::CancelInvitationRequest))),
        api(M::PUT, "/v1/referrers/{id}/tier", "Set a referrer's sending tier (admin)", INVITATIONS,
            Rpc::new(INVITE, "SetReferrerTier", Whole).param("id", "referrerId"),
            unary!(invite.set_referrer_tier(invite::SetReferrerTierRequest))),
        api(M::GET, "/v1/referrers/{id}", "A referrer's tier and queued invitations", INVITATIONS,
            Rpc::new(INVITE, "GetReferrer", NoBody).param("id", "referrerId"),
            unary!(invite.get_referrer(invite::GetReferrerRequest))),
        // invite-svc: tracking and attribution
        api(M::POST, "/v1/clicks", "Record a click on a referral code (the client IP is the connection's)", TRACKING,
            Rpc::new(INVITE, "RecordClick", Whole).client_fields(),
            unary!(invite.record_click(invite::RecordClickRequest))),
        api(M::POST, "/v1/signups", "Record a signup and attribute it", TRACKING,
            Rpc::new(INVITE, "RecordSignup", Whole).client_fields().cookie_field(redirect::CLICK_COOKIE, "clickId"),
            unary!(invite.record_signup(invite::RecordSignupRequest)))
            .key_scope(Scope::SignupsWrite),
        Route::new(M::GET, "/v1/sdk.js", "Sdk", "The landing-page script: keeps the click id from the landing URL in a first-party cookie and offers referralMesh.clickId()")
            .tag(TRACKING)
            .answer(Answer::Text("text/javascript"))
            .raw(|s, r| Box::pin(sdk::script(s, r))),
        api(M::POST, "/v1/conversions", "Record a paid conversion", TRACKING,
            Rpc::new(INVITE, "RecordConversion", Whole),
            unary!(invite.record_conversion(invite::RecordConversionRequest)))
            .key_scope(Scope::ConversionsWrite),
        Route::new(M::POST, "/v1/webhooks/email/{provider}", "HandleEmailWebhook",
            "Delivery events from resend, sendgrid, mailgun or postmark, verified by the provider's signature")
            .tag(TRACKING)
            .answer(Answer::Message("referral.invite.v1.EmailWebhookResponse"))
            .raw_body("The provider's webhook payload, exactly as sent (it is signature-checked)")
            .raw(|s, r| Box::pin(webhook::handle(s, r))),
        // fraud-svc
        api(M::GET, "/v1/fraud/cases", "Fraud review cases (admin)", FRAUD_TAG,
            Rpc::new(FRAUD, "ListCases", NoBody),
            unary!(fraud.list_cases(fraud::ListCasesRequest))),
        api(M::GET, "/v1/fraud/cases/{id}", "A fraud review case with its assessment and cluster (admin)", FRAUD_TAG,
            Rpc::new(FRAUD, "GetCase", NoBody),
            unary!(fraud.get_case(fraud::GetCaseRequest))),
        api(M::GET, "/v1/fraud/assessments", "How one subject was assessed: its score, every signal and rule (admin). \
            subjectType INVITATION | SIGNUP | CONVERSION; subjectId the invitation or conversion id, or a signup's user id", FRAUD_TAG,
            Rpc::new(FRAUD, "GetAssessment", NoBody),
            unary!(fraud.get_assessment(fraud::GetAssessmentRequest))),
        api(M::POST, "/v1/fraud/cases/{id}:resolve", "Resolve a case: APPROVE releases held rewards, REJECT voids them (admin)", FRAUD_TAG,
            Rpc::new(FRAUD, "ResolveCase", Whole),
            unary!(fraud.resolve_case(fraud::ResolveCaseRequest))),
        // incentive-svc
        api(M::PUT, "/v1/reward-programs/{id}", "Create or replace a reward program (admin); the body is the program", REWARDS,
            Rpc::new(INCENTIVE, "PutRewardProgram", Field("program")),
            unary!(incentive.put_reward_program(incentive::PutRewardProgramRequest))),
        api(M::GET, "/v1/reward-programs", "Reward programs", REWARDS,
            Rpc::new(INCENTIVE, "ListRewardPrograms", NoBody),
            unary!(incentive.list_reward_programs(incentive::ListRewardProgramsRequest))),
        api(M::GET, "/v1/reward-programs/{id}", "A reward program", REWARDS,
            Rpc::new(INCENTIVE, "GetRewardProgram", NoBody),
            unary!(incentive.get_reward_program(incentive::GetRewardProgramRequest))),
        api(M::POST, "/v1/reward-programs/{id}:simulate", "Dry-run a program over past conversions; writes nothing (admin)", REWARDS,
            Rpc::new(INCENTIVE, "SimulateRewardProgram", Whole),
            unary!(incentive.simulate_reward_program(incentive::SimulateRewardProgramRequest))),
        api(M::POST, "/v1/campaigns", "Create a campaign that multiplies rewards (admin)", REWARDS,
            Rpc::new(INCENTIVE, "CreateCampaign", Whole),
            unary!(incentive.create_campaign(incentive::CreateCampaignRequest))),
        api(M::GET, "/v1/campaigns", "Campaigns", REWARDS,
            Rpc::new(INCENTIVE, "ListCampaigns", NoBody),
            unary!(incentive.list_campaigns(incentive::ListCampaignsRequest))),
        api(M::GET, "/v1/referrers/{id}/rewards", "A referrer's balance, tier, badges, next milestone and ledger", REWARDS,
            Rpc::new(INCENTIVE, "GetReferrerRewards", NoBody).param("id", "referrerId"),
            unary!(incentive.get_referrer_rewards(incentive::GetReferrerRewardsRequest))),
        api(M::POST, "/v1/payouts", "Pay a referrer's whole eligible balance (idempotent)", REWARDS,
            Rpc::new(INCENTIVE, "CreatePayout", Whole),
            unary!(incentive.create_payout(incentive::CreatePayoutRequest))),
        api(M::GET, "/v1/payouts/{id}", "A payout", REWARDS,
            Rpc::new(INCENTIVE, "GetPayout", NoBody),
            unary!(incentive.get_payout(incentive::GetPayoutRequest))),
        // analytics-svc
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
        api(M::GET, "/v1/experiments/{templateId}/results", "Template variants: rates, lift and p-values", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "GetExperimentResults", NoBody),
            unary!(analytics.get_experiment_results(analytics::ExperimentRequest)))
            .key_scope(Scope::ReportsRead),
        api(M::GET, "/v1/events", "Live feed of every service's events as server-sent events (admin)", ANALYTICS_TAG,
            Rpc::new(ANALYTICS, "StreamEvents", NoBody),
            sse::handler())
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
        // every service: privacy
        api(M::DELETE, "/v1/people/{id}", "Erase a person's personal data in every service (admin or the person)", PRIVACY_TAG,
            Rpc::new(PRIVACY, "ErasePerson", Whole).param("id", "personId"),
            privacy::erase_handler())
            .answer(Answer::Schema(privacy::erasure_schema)),
        api(M::GET, "/v1/people/{id}/export", "Everything every service holds about a person (admin or the person)", PRIVACY_TAG,
            Rpc::new(PRIVACY, "ExportPerson", NoBody).param("id", "personId"),
            privacy::export_handler())
            .answer(Answer::Schema(privacy::export_schema)),
        // every service: the audit log
        api(M::GET, "/v1/audit", "The audit log of admin and money actions, newest first, merged from every service (admin). \
            actor, action and subject (id) match exactly; since is inclusive, until exclusive (RFC 3339); \
            a service that cannot answer fails the read (503 naming it) rather than leave its actions out", PRIVACY_TAG,
            Rpc::new(AUDIT, "ListAuditEntries", NoBody),
            audit::list_handler()),
        // invite-svc: API keys of server-to-server callers (admin)
        api(M::POST, "/v1/api-keys", "Create an API key with scopes; its secret is shown once (admin)", API_KEYS_TAG,
            Rpc::new(API_KEYS, "CreateApiKey", Whole),
            unary!(api_keys in "invite-svc", create_api_key(invite::CreateApiKeyRequest)))
            .body_schema(api_keys::create_body_schema)
            .answer(Answer::Schema(api_keys::created_schema)),
        api(M::GET, "/v1/api-keys", "API keys, oldest first: never their secrets (admin)", API_KEYS_TAG,
            Rpc::new(API_KEYS, "ListApiKeys", NoBody),
            unary!(api_keys in "invite-svc", list_api_keys(invite::ListApiKeysRequest)))
            .answer(Answer::Schema(api_keys::list_schema)),
        api(M::POST, "/v1/api-keys/{id}:rotate", "A new secret for a key, shown once; the old one stops working at once (admin)", API_KEYS_TAG,
            Rpc::new(API_KEYS, "RotateApiKey", Whole),
            unary!(api_keys in "invite-svc", rotate_api_key(invite::RotateApiKeyRequest)))
            .answer(Answer::Schema(api_keys::created_schema)),
        api(M::DELETE, "/v1/api-keys/{id}", "Revoke an API key at once; revoking again answers the same (admin)", API_KEYS_TAG,
            Rpc::new(API_KEYS, "RevokeApiKey", NoBody),
            unary!(api_keys in "invite-svc", revoke_api_key(invite::RevokeApiKeyRequest)))
            .answer(Answer::Schema(api_keys::key_schema)),
        // every service: parked work
        api(M::GET, "/v1/parked", "Work the services gave up retrying on their own, newest id first, merged from every service (admin): \
            events a consumer could not apply CONSUMER_PARK_AFTER times (kind EVENT) and invitation sends that panicked \
            PARK_AFTER times (kind SEND). service= asks one service only; a service that cannot answer fails the read (503 naming it)", OPS,
            Rpc::new(PARKED, "ListParked", NoBody),
            parked::list_handler()),
        api(M::POST, "/v1/parked/{id}:retry", "Retry parked work now (admin, audited): an event is re-applied through its consumer \
            (outcome APPLIED, gone from the list; or FAILED, still parked with the new reason and attempts + 1, answered 200 with \
            retried false), a send is released to the scheduler (RELEASED). The id's prefix names the service", OPS,
            Rpc::new(PARKED, "RetryParked", Whole),
            parked::retry_handler()),
        // operations
        Route::new(M::GET, "/healthz", "Healthz", "Liveness: the process answers")
            .tag(OPS)
            .answer(Answer::Schema(ops::health_schema))
            .raw(|s, r| Box::pin(ops::healthz(s, r))),
        Route::new(M::GET, "/readyz", "Readyz", "Readiness: the services in READY_REQUIRES (default invite-svc) are SERVING; the others are reported")
            .tag(OPS)
            .answer(Answer::Schema(ops::readiness_schema))
            .raw(|s, r| Box::pin(ops::readyz(s, r))),
        Route::new(M::GET, "/metrics", "Metrics", "Prometheus metrics")
            .tag(OPS)
            .answer(Answer::Text("text/plain"))
            .raw(|s, r| Box::pin(ops::metrics(s, r))),
        Route::new(M::GET, "/openapi.json", "OpenApi", "This document")
            .tag(OPS)
            .answer(Answer::Schema(ops::openapi_schema))
            .raw(|s, r| Box::pin(ops::openapi(s, r))),
        Route::new(M::GET, "/", "Dashboard", "The dashboard (asks for a token, then reads this API)")
            .tag(OPS)
            .answer(Answer::Html)
            .raw(|s, r| Box::pin(dashboard::index(s, r))),
        Route::new(M::GET, "/dashboard.js", "DashboardScript", "The dashboard's script")
            .tag(OPS)
            .answer(Answer::Text("text/javascript"))
            .raw(|s, r| Box::pin(dashboard::script(s, r))),
        Route::new(M::GET, "/dashboard.css", "DashboardStyle", "The dashboard's style sheet")
            .tag(OPS)
            .answer(Answer::Text("text/css"))
            .raw(|s, r| Box::pin(dashboard::style(s, r))),
    ]
}
