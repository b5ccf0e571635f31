//! The ConsentService: the public unsubscribe calls (forwarded by the gateway's `/u/{token}`,
//! whose signed token is the only credential) and the admins' suppression list, translated
//! to and from `app::consent`.

use std::sync::Arc;

use referral_common::{ApiError, audit::Actor, auth::Principal, ids};
use referral_proto::invite::v1::{
    LiftSuppressionRequest, ListSuppressionsRequest, ListSuppressionsResponse, Suppression,
    SuppressionReason, UnsubscribeRequest, UnsubscribeResponse, consent_service_server::ConsentService,
};
use tonic::{Request, Response, Status};

use crate::{
    app::consent::{self, ConsentSettings, UnsubscribeView},
    store::{Store, api_keys::instant, consent::SuppressionRow},
};

pub struct ConsentApi<S> {
    store: S,
    settings: Arc<ConsentSettings>,
}

impl<S: Store> ConsentApi<S> {
    pub fn new(store: S, settings: ConsentSettings) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
        }
    }

    fn view(&self, row: &SuppressionRow) -> Suppression {
        Suppression {
            id: row.id.clone(),
            kind: row.kind.clone(),
            masked_address: self.settings.masked(row),
            reason: SuppressionReason::from_str_name(&row.reason).map_or(0, |r| r as i32),
            source_invitation_id: row.source_invitation_id.clone(),
            created_at: instant(row.created_at).map(ids::to_ts),
            lifted_at: row.lifted_at.and_then(instant).map(ids::to_ts),
            lifted_by: row.lifted_by.clone(),
        }
    }
}

/// Only the gateway forwards unsubscribes (with its service token): the caller is anonymous.
fn forwarded<T>(req: &Request<T>) -> Result<(), Status> {
    if !Principal::of(req)?.is_privileged() {
        return Err(ApiError::PermissionDenied("unsubscribe links come through the gateway".into()).into());
    }
    Ok(())
}

fn admin<T>(req: &Request<T>) -> Result<Actor, Status> {
    Principal::of(req)?.require_admin()?;
    Actor::of(req)
}

fn answer(v: UnsubscribeView) -> Response<UnsubscribeResponse> {
    Response::new(UnsubscribeResponse {
        masked_address: v.masked_address,
        suppressed: v.suppressed,
    })
}

#[tonic::async_trait]
impl<S: Store> ConsentService for ConsentApi<S> {
    async fn check_unsubscribe(
        &self,
        req: Request<UnsubscribeRequest>,
    ) -> Result<Response<UnsubscribeResponse>, Status> {
        forwarded(&req)?;
        let view = consent::check_unsubscribe(&self.store, &self.settings, &req.get_ref().token).await?;
        Ok(answer(view))
    }

    async fn unsubscribe(
        &self,
        req: Request<UnsubscribeRequest>,
    ) -> Result<Response<UnsubscribeResponse>, Status> {
        forwarded(&req)?;
        let view = consent::unsubscribe(&self.store, &self.settings, &req.get_ref().token).await?;
        Ok(answer(view))
    }

    async fn list_suppressions(
        &self,
        req: Request<ListSuppressionsRequest>,
    ) -> Result<Response<ListSuppressionsResponse>, Status> {
        admin(&req)?;
        let (rows, next) = consent::list_suppressions(&self.store, &self.settings, req.get_ref()).await?;
        Ok(Response::new(ListSuppressionsResponse {
            suppressions: rows.iter().map(|r| self.view(r)).collect(),
            next_page_token: next,
        }))
    }

    async fn lift_suppression(
        &self,
        req: Request<LiftSuppressionRequest>,
    ) -> Result<Response<Suppression>, Status> {
        let actor = admin(&req)?;
        let row = consent::lift_suppression(&self.store, &actor, &req.get_ref().id).await?;
        Ok(Response::new(self.view(&row)))
    }
}
