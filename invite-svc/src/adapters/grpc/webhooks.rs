//! Mail providers' webhooks, forwarded by the gateway.

use referral_common::{ApiError, auth::Principal};
use referral_proto::invite::v1::{EmailWebhookRequest, EmailWebhookResponse};
use tonic::{Request, Response, Status};

use super::InviteApi;
use crate::{app::provider_webhook_event::WebhookRefused, store::Store};

pub(super) async fn handle<S: Store>(
    api: &InviteApi<S>,
    req: Request<EmailWebhookRequest>,
) -> Result<Response<EmailWebhookResponse>, Status> {
    // Only the gateway forwards provider webhooks (with its service token).
    let p = Principal::of(&req)?;
    if !p.is_privileged() {
        return Err(ApiError::PermissionDenied("provider webhooks come through the gateway".into()).into());
    }
    let tally = match api.app.provider_webhook_event(req.get_ref()).await {
        Ok(tally) => tally,
        Err(WebhookRefused::Unauthenticated(why)) => return Err(Status::unauthenticated(why)),
        Err(WebhookRefused::Api(e)) => return Err(e.into()),
    };
    Ok(Response::new(EmailWebhookResponse {
        recorded: tally.recorded,
        ignored: tally.ignored,
        duplicates: tally.duplicates,
    }))
}
