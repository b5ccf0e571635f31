//! The tonic services of invite-svc. Each method only translates: the caller and the
//! request decoded, one `app` use case called, its answer encoded (`convert`) and its
//! errors mapped to a `Status`. InviteService's methods live by resource: `codes`,
//! `invitations`, `referrers`, `tracking` (clicks, signups, conversions), `webhooks`.

pub mod api_keys;
mod codes;
pub mod consent;
pub mod convert;
mod invitations;
pub mod parked;
pub mod privacy;
mod referrers;
mod tracking;
mod webhooks;

use referral_common::{
    ApiError, ApiResult,
    auth::{self, Principal},
    error::{error_info_of, violations_of},
    idempotency::Idempotency,
};
use referral_proto::invite::v1::{
    self as pb, Attribution, BatchCreateInvitationsRequest, BatchCreateInvitationsResponse,
    CancelInvitationRequest, Click, ConversionResult, CreateInvitationRequest, CreateReferralCodeRequest,
    EmailWebhookRequest, EmailWebhookResponse, GetInvitationRequest, GetReferralCodeRequest,
    GetReferrerRequest, Invitation, ItemError, ListInvitationsRequest, ListInvitationsResponse,
    RecordClickRequest, RecordClicksRequest, RecordClicksResponse, RecordConversionRequest,
    RecordSignupRequest, ReferralCode, Referrer, ResolveReferralCodeRequest, ResolveReferralCodeResponse,
    SetReferrerTierRequest, invite_service_server::InviteService,
};
use tonic::{Request, Response, Status};

use crate::{
    adapters::fraud::FraudGate,
    app::{App, ClientContext},
    config::RuntimeConfig,
    store::Store,
};

pub struct InviteApi<S> {
    app: App<S>,
    idempotency: Idempotency,
}

impl<S: Store> InviteApi<S> {
    pub fn new(store: S, config: RuntimeConfig, fraud: FraudGate, idempotency: Idempotency) -> Self {
        Self {
            app: App::new(store, config, fraud),
            idempotency,
        }
    }

    /// A create: authenticated, run at most once per Idempotency-Key, errors as `Status`.
    async fn create<Req, T, Fut>(
        &self,
        req: Request<Req>,
        method: &str,
        work: impl FnOnce(Principal, ClientContext, Req) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Req: prost::Message + Clone,
        T: prost::Message + Default,
        Fut: Future<Output = ApiResult<T>>,
    {
        self.idempotency
            .serve(req, method, |r| Ok(client_context(r)), work)
            .await
    }
}

/// Where a web call came from, as the gateway saw it (its metadata).
fn client_context<T>(req: &Request<T>) -> ClientContext {
    let md = req.metadata();
    ClientContext {
        // Absent when the call did not come through the gateway (a service, a test):
        // nothing is known of the client, and the fraud checks treat "" as unknown.
        ip: auth::metadata_text(md, auth::CLIENT_IP).unwrap_or_default(),
        device_id: auth::metadata_text(md, auth::DEVICE_ID)
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect(),
    }
}

fn item_error(e: ApiError) -> ItemError {
    let status: Status = e.into();
    // Only a duplicate names an existing invitation and only a fraud refusal names rules;
    // for every other error they are rightly empty.
    let (existing, rules) = match error_info_of(&status) {
        Some((_, md)) => (
            md.get("existingInvitationId").cloned().unwrap_or_default(),
            md.get("rules")
                .map(|r| {
                    r.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|n| referral_proto::common::v1::Rule {
                            name: n.into(),
                            detail: String::new(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        None => (String::new(), Vec::new()),
    };
    ItemError {
        code: status.code() as i32,
        message: status.message().to_string(),
        field_violations: violations_of(&status)
            .into_iter()
            .map(|(field, description)| pb::FieldViolation { field, description })
            .collect(),
        existing_invitation_id: existing,
        rules,
    }
}

#[tonic::async_trait]
impl<S: Store> InviteService for InviteApi<S> {
    async fn create_referral_code(
        &self,
        req: Request<CreateReferralCodeRequest>,
    ) -> Result<Response<ReferralCode>, Status> {
        codes::create(self, req).await
    }

    async fn get_referral_code(
        &self,
        req: Request<GetReferralCodeRequest>,
    ) -> Result<Response<ReferralCode>, Status> {
        codes::get(self, req).await
    }

    async fn resolve_referral_code(
        &self,
        req: Request<ResolveReferralCodeRequest>,
    ) -> Result<Response<ResolveReferralCodeResponse>, Status> {
        codes::resolve(self, req).await
    }

    async fn create_invitation(
        &self,
        req: Request<CreateInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        invitations::create(self, req).await
    }

    async fn batch_create_invitations(
        &self,
        req: Request<BatchCreateInvitationsRequest>,
    ) -> Result<Response<BatchCreateInvitationsResponse>, Status> {
        invitations::batch_create(self, req).await
    }

    async fn get_invitation(
        &self,
        req: Request<GetInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        invitations::get(self, req).await
    }

    async fn list_invitations(
        &self,
        req: Request<ListInvitationsRequest>,
    ) -> Result<Response<ListInvitationsResponse>, Status> {
        invitations::list(self, req).await
    }

    async fn cancel_invitation(
        &self,
        req: Request<CancelInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        invitations::cancel(self, req).await
    }

    async fn set_referrer_tier(
        &self,
        req: Request<SetReferrerTierRequest>,
    ) -> Result<Response<Referrer>, Status> {
        referrers::set_tier(self, req).await
    }

    async fn get_referrer(&self, req: Request<GetReferrerRequest>) -> Result<Response<Referrer>, Status> {
        referrers::get(self, req).await
    }

    async fn record_click(&self, req: Request<RecordClickRequest>) -> Result<Response<Click>, Status> {
        tracking::record_click(self, req).await
    }

    async fn record_clicks(
        &self,
        req: Request<RecordClicksRequest>,
    ) -> Result<Response<RecordClicksResponse>, Status> {
        tracking::record_clicks(self, req).await
    }

    async fn record_signup(
        &self,
        req: Request<RecordSignupRequest>,
    ) -> Result<Response<Attribution>, Status> {
        tracking::record_signup(self, req).await
    }

    async fn record_conversion(
        &self,
        req: Request<RecordConversionRequest>,
    ) -> Result<Response<ConversionResult>, Status> {
        tracking::record_conversion(self, req).await
    }

    async fn handle_email_webhook(
        &self,
        req: Request<EmailWebhookRequest>,
    ) -> Result<Response<EmailWebhookResponse>, Status> {
        webhooks::handle(self, req).await
    }
}
