//! One tonic client per service over a lazily connecting channel, each call carrying the
//! gateway's service token (the interceptor) and the web caller's context (see
//! [`crate::edge::context`]); plus plain health clients for `/readyz`.

use referral_common::{
    auth::{ServiceCredentials, ServiceKeys},
    server::channel,
};
use referral_proto::{
    analytics::v1::analytics_service_client::AnalyticsServiceClient,
    common::v1::{
        audit_log_client::AuditLogClient, parked_work_client::ParkedWorkClient,
        privacy_requests_client::PrivacyRequestsClient, privacy_service_client::PrivacyServiceClient,
    },
    fraud::v1::fraud_service_client::FraudServiceClient,
    incentive::v1::incentive_service_client::IncentiveServiceClient,
    invite::v1::{
        api_key_service_client::ApiKeyServiceClient, consent_service_client::ConsentServiceClient,
        invite_service_client::InviteServiceClient,
    },
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::health_client::HealthClient;

use crate::config::RuntimeConfig;

pub type Authed = InterceptedService<Channel, ServiceCredentials>;

#[derive(Clone)]
pub struct Clients {
    pub invite: InviteServiceClient<Authed>,
    /// invite-svc's API keys: admin routes, and the check of every `Bearer rmk_...`.
    pub api_keys: ApiKeyServiceClient<Authed>,
    /// invite-svc's suppression list: `/u/{token}` and the admins' `/v1/suppressions`.
    pub consent: ConsentServiceClient<Authed>,
    pub fraud: FraudServiceClient<Authed>,
    pub incentive: IncentiveServiceClient<Authed>,
    pub analytics: AnalyticsServiceClient<Authed>,
    /// invite-svc's book of privacy requests (erasure and export of a person).
    pub privacy_requests: PrivacyRequestsClient<Authed>,
    /// Every service's PrivacyService, by service name (admin tooling; the person routes
    /// open privacy requests instead).
    pub privacy: Vec<(&'static str, PrivacyServiceClient<Authed>)>,
    /// Every service's AuditLog, by service name, for `GET /v1/audit`.
    pub audit: Vec<(&'static str, AuditLogClient<Authed>)>,
    /// Every service's ParkedWork, by service name, for `GET /v1/parked` and retries.
    pub parked: Vec<(&'static str, ParkedWorkClient<Authed>)>,
    /// Health (open, no token) by service name.
    pub health: Vec<(&'static str, HealthClient<Channel>)>,
}

impl Clients {
    /// Channels connect lazily: the gateway starts before (or without) its services. Call
    /// it inside a Tokio runtime (TLS material is watched by a task).
    pub fn new(settings: &RuntimeConfig, keys: &ServiceKeys) -> anyhow::Result<Self> {
        // Forwarding: every request states its web caller or "none" (see `context`), so a
        // request that forgot to is refused rather than run with the gateway's authority.
        let creds = ServiceCredentials::forwarding(keys, "gateway");
        let tls = settings.grpc_tls.load()?;
        let invite = channel(&settings.invite_addr, &tls)?;
        let fraud = channel(&settings.fraud_addr, &tls)?;
        let incentive = channel(&settings.incentive_addr, &tls)?;
        let analytics = channel(&settings.analytics_addr, &tls)?;
        let authed = |ch: &Channel| InterceptedService::new(ch.clone(), creds.clone());
        let channels = [
            ("invite-svc", &invite),
            ("fraud-svc", &fraud),
            ("incentive-svc", &incentive),
            ("analytics-svc", &analytics),
        ];
        Ok(Self {
            invite: InviteServiceClient::new(authed(&invite)),
            api_keys: ApiKeyServiceClient::new(authed(&invite)),
            consent: ConsentServiceClient::new(authed(&invite)),
            privacy_requests: PrivacyRequestsClient::new(authed(&invite)),
            fraud: FraudServiceClient::new(authed(&fraud)),
            incentive: IncentiveServiceClient::new(authed(&incentive)),
            analytics: AnalyticsServiceClient::new(authed(&analytics)),
            privacy: channels
                .iter()
                .map(|(name, ch)| (*name, PrivacyServiceClient::new(authed(ch))))
                .collect(),
            audit: channels
                .iter()
                .map(|(name, ch)| (*name, AuditLogClient::new(authed(ch))))
                .collect(),
            parked: channels
                .iter()
                .map(|(name, ch)| (*name, ParkedWorkClient::new(authed(ch))))
                .collect(),
            health: channels
                .iter()
                .map(|(name, ch)| (*name, HealthClient::new((*ch).clone())))
                .collect(),
        })
    }
}
