//! Test support: a gateway router over in-process state, tokens, requests, and a fake
//! invite-svc (only what the gateway tests need) served on port 0.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{HeaderMap, Request, StatusCode},
};
use gateway::{AppState, ClickBatcher, GatewayConfig, router};
use referral_common::{
    auth::{JwtKeys, Role},
    config::Secret,
};
use referral_proto::invite::v1::{
    invite_service_server::{InviteService, InviteServiceServer},
    *,
};
use serde_json::Value;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Status, metadata::MetadataMap};
use tonic_types::{ErrorDetails, StatusExt};
use tower::ServiceExt;

pub const SECRET: &str = "test-secret-0123456789-abcdefghijkl";
pub const SERVICE_SECRET: &str = "test-service-secret-0123456789-abcdefghijkl";
/// Nothing listens here: calls fail fast with UNAVAILABLE.
pub const NOWHERE: &str = "127.0.0.1:1";

pub struct TestGateway {
    pub router: Router,
    pub state: AppState,
    pub keys: JwtKeys,
    pub clicks: ClickBatcher,
}

pub fn config() -> GatewayConfig {
    GatewayConfig {
        web_tokens: referral_common::auth::WebTokenArgs::secret(&Secret::new(SECRET)),
        service_jwt_secret: Secret::new(SERVICE_SECRET),
        click_signing_keys: Secret::new("k1:gateway-tests-click-key-0123456789abcdef"),
        landing_hosts: "example.com".into(),
        invite_addr: NOWHERE.into(),
        fraud_addr: NOWHERE.into(),
        incentive_addr: NOWHERE.into(),
        analytics_addr: NOWHERE.into(),
        ..GatewayConfig::default()
    }
}

pub async fn gateway(config: GatewayConfig) -> TestGateway {
    let settings = config.validate().expect("valid test config");
    let (state, clicks) = AppState::new(settings).await.expect("state");
    TestGateway {
        router: router(state.clone()),
        state,
        keys: JwtKeys::new(&Secret::new(SECRET)),
        clicks,
    }
}

impl TestGateway {
    pub fn token(&self, sub: &str, role: Role) -> String {
        self.keys
            .mint(sub, role, Some("SUPPLIER"), Duration::from_secs(600))
    }

    pub fn bearer(&self, sub: &str, role: Role) -> String {
        format!("Bearer {}", self.token(sub, role))
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        send(&self.router, req).await
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// `(field, description)` of the first BadRequest violation.
    pub fn violation(&self) -> (String, String) {
        let body = self.json();
        let v = body["details"]
            .as_array()
            .and_then(|d| {
                d.iter()
                    .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            })
            .unwrap_or_else(|| panic!("no BadRequest in {body}"));
        let first = &v["fieldViolations"][0];
        (
            first["field"].as_str().unwrap().into(),
            first["description"].as_str().unwrap().into(),
        )
    }
}

/// Sends through the router as a connection from `203.0.113.10` would arrive.
pub async fn send(router: &Router, mut req: Request<Body>) -> Reply {
    if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 10], 40000))));
    }
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(uri: &str) -> axum::http::request::Builder {
    Request::builder().method("GET").uri(uri)
}

pub fn post_json(uri: &str, body: &str) -> axum::http::request::Builder {
    Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .header("content-length", body.len())
}

/// One call the fake saw: method, metadata, request as proto3 JSON.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: &'static str,
    pub metadata: MetadataMap,
    pub request: Value,
}

impl Seen {
    /// A binary (`-bin`) entry as UTF-8.
    pub fn md_bin(&self, key: &str) -> Option<String> {
        self.metadata
            .get_bin(key)
            .and_then(|v| v.to_bytes().ok())
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }

    pub fn md(&self, key: &str) -> Option<String> {
        self.metadata
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

#[derive(Clone, Default)]
pub struct FakeInvite {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeInvite {
    fn note<T: serde::Serialize>(&self, method: &'static str, req: &tonic::Request<T>) {
        self.seen.lock().unwrap().push(Seen {
            method,
            metadata: req.metadata().clone(),
            request: serde_json::to_value(req.get_ref()).unwrap(),
        });
    }

    pub fn calls(&self, method: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method)
            .cloned()
            .collect()
    }

    /// Serves the fake (and a health service reporting `readiness` SERVING) on port 0.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("readiness", tonic_health::ServingStatus::Serving)
            .await;
        let svc = InviteServiceServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        addr
    }
}

fn invitation(id: &str) -> Invitation {
    Invitation {
        id: id.into(),
        status: InvitationStatus::Scheduled as i32,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl InviteService for FakeInvite {
    async fn resolve_referral_code(
        &self,
        request: tonic::Request<ResolveReferralCodeRequest>,
    ) -> Result<tonic::Response<ResolveReferralCodeResponse>, Status> {
        self.note("ResolveReferralCode", &request);
        let code = request.into_inner().code.to_ascii_uppercase();
        let landing = match code.as_str() {
            "LOVE-ABC234" => "https://example.com/landing?x=1",
            "VOWS-EMPTY2" => "",
            _ => return Err(Status::not_found("no such code")),
        };
        Ok(tonic::Response::new(ResolveReferralCodeResponse {
            code,
            landing_url: landing.into(),
            referrer_id: "r1".into(),
        }))
    }

    async fn record_clicks(
        &self,
        request: tonic::Request<RecordClicksRequest>,
    ) -> Result<tonic::Response<RecordClicksResponse>, Status> {
        self.note("RecordClicks", &request);
        let n = request.get_ref().clicks.len() as i32;
        Ok(tonic::Response::new(RecordClicksResponse {
            recorded: n,
            unknown_codes: 0,
        }))
    }

    async fn record_click(
        &self,
        request: tonic::Request<RecordClickRequest>,
    ) -> Result<tonic::Response<Click>, Status> {
        self.note("RecordClick", &request);
        Ok(tonic::Response::new(Click {
            click_id: "c1".into(),
            code: request.into_inner().code,
            ..Default::default()
        }))
    }

    async fn create_invitation(
        &self,
        request: tonic::Request<CreateInvitationRequest>,
    ) -> Result<tonic::Response<Invitation>, Status> {
        self.note("CreateInvitation", &request);
        // No recipient: no email, answered like any other address (the fake invents nothing).
        let email = request.get_ref().recipient.clone().unwrap_or_default().email;
        let info = |reason: &str| {
            ErrorDetails::with_error_info(reason, "referral-mesh", std::collections::HashMap::new())
        };
        match email.as_str() {
            "reused@example.com" => Err(Status::with_error_details(
                Code::FailedPrecondition,
                "idempotency key reused with a different body",
                info("IDEMPOTENCY_KEY_REUSED"),
            )),
            "inuse@example.com" => Err(Status::with_error_details(
                Code::Aborted,
                "a request with this key is still running",
                info("IDEMPOTENCY_KEY_IN_USE"),
            )),
            "busy@example.com" => Err(Status::with_error_details(
                Code::ResourceExhausted,
                "more than 1000 invitations queued",
                ErrorDetails::with_retry_info(Some(Duration::from_secs(42))),
            )),
            "bad@example.com" => Err(Status::with_error_details(
                Code::InvalidArgument,
                "invalid request: recipient.email: is not deliverable",
                ErrorDetails::with_bad_request_violation("recipient.email", "is not deliverable"),
            )),
            _ => Ok(tonic::Response::new(invitation("inv-1"))),
        }
    }

    async fn list_invitations(
        &self,
        request: tonic::Request<ListInvitationsRequest>,
    ) -> Result<tonic::Response<ListInvitationsResponse>, Status> {
        self.note("ListInvitations", &request);
        Ok(tonic::Response::new(ListInvitationsResponse {
            invitations: vec![invitation("inv-1")],
            next_page_token: String::new(),
        }))
    }

    async fn cancel_invitation(
        &self,
        request: tonic::Request<CancelInvitationRequest>,
    ) -> Result<tonic::Response<Invitation>, Status> {
        self.note("CancelInvitation", &request);
        let mut inv = invitation(&request.get_ref().id);
        inv.status = InvitationStatus::Cancelled as i32;
        Ok(tonic::Response::new(inv))
    }

    async fn set_referrer_tier(
        &self,
        request: tonic::Request<SetReferrerTierRequest>,
    ) -> Result<tonic::Response<Referrer>, Status> {
        self.note("SetReferrerTier", &request);
        let r = request.into_inner();
        Ok(tonic::Response::new(Referrer {
            id: r.referrer_id,
            tier: r.tier,
            queued: 1234,
            updated_at: None,
        }))
    }

    async fn handle_email_webhook(
        &self,
        request: tonic::Request<EmailWebhookRequest>,
    ) -> Result<tonic::Response<EmailWebhookResponse>, Status> {
        self.note("HandleEmailWebhook", &request);
        Ok(tonic::Response::new(EmailWebhookResponse {
            recorded: 1,
            ignored: 0,
            duplicates: 0,
        }))
    }
}

/// A gateway whose invite-svc is a fresh fake (the other services are unreachable).
pub async fn with_fake_invite(tweak: impl FnOnce(&mut GatewayConfig)) -> (TestGateway, FakeInvite) {
    let fake = FakeInvite::default();
    let addr = fake.serve().await;
    let mut c = config();
    c.invite_addr = addr.to_string();
    tweak(&mut c);
    (gateway(c).await, fake)
}

/// Polls until `f` holds (background work such as the click batcher).
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
