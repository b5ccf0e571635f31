//! Invitations over gRPC: create (one or a batch), get, list, cancel.

use referral_common::{audit::Actor, auth::Principal};
use referral_proto::invite::v1::{
    BatchCreateInvitationsRequest, BatchCreateInvitationsResponse, BatchResult, CancelInvitationRequest,
    CreateInvitationRequest, GetInvitationRequest, Invitation, ListInvitationsRequest,
    ListInvitationsResponse,
};
use tonic::{Request, Response, Status};

use super::{InviteApi, client_context, convert, item_error};
use crate::store::Store;

pub(super) async fn create<S: Store>(
    api: &InviteApi<S>,
    req: Request<CreateInvitationRequest>,
) -> Result<Response<Invitation>, Status> {
    api.create(req, "CreateInvitation", |p, client, body| async move {
        let row = api.app.create_invitation(&p, body, &client).await?;
        Ok(convert::invitation(&row, &api.app.config().public_url))
    })
    .await
}

pub(super) async fn batch_create<S: Store>(
    api: &InviteApi<S>,
    req: Request<BatchCreateInvitationsRequest>,
) -> Result<Response<BatchCreateInvitationsResponse>, Status> {
    let p = Principal::of(&req)?;
    let client = client_context(&req);
    let md = req.metadata().clone();
    let body = req.into_inner();
    api.app.check_batch(&p, &body)?;
    let work = async {
        let outcomes = api.app.batch_create_invitations(&p, &body, &client).await?;
        let mut results = Vec::with_capacity(outcomes.len());
        let (mut accepted, mut rejected) = (0, 0);
        for (index, outcome) in outcomes.into_iter().enumerate() {
            results.push(match outcome {
                Ok(row) => {
                    accepted += 1;
                    BatchResult {
                        index: index as i32,
                        invitation: Some(convert::invitation(&row, &api.app.config().public_url)),
                        error: None,
                    }
                }
                Err(e) => {
                    rejected += 1;
                    BatchResult {
                        index: index as i32,
                        invitation: None,
                        error: Some(item_error(e)),
                    }
                }
            });
        }
        Ok::<_, Status>(BatchCreateInvitationsResponse {
            results,
            accepted,
            rejected,
        })
    };
    let out = api
        .idempotency
        .run(&md, &p.sub, "BatchCreateInvitations", &body, work)
        .await?;
    Ok(Response::new(out))
}

pub(super) async fn get<S: Store>(
    api: &InviteApi<S>,
    req: Request<GetInvitationRequest>,
) -> Result<Response<Invitation>, Status> {
    let p = Principal::of(&req)?;
    let row = api.app.get_owned_invitation(&p, &req.get_ref().id).await?;
    Ok(Response::new(convert::invitation(
        &row,
        &api.app.config().public_url,
    )))
}

pub(super) async fn list<S: Store>(
    api: &InviteApi<S>,
    req: Request<ListInvitationsRequest>,
) -> Result<Response<ListInvitationsResponse>, Status> {
    let p = Principal::of(&req)?;
    let (rows, next) = api.app.list_invitations(&p, req.into_inner()).await?;
    Ok(Response::new(ListInvitationsResponse {
        invitations: rows
            .iter()
            .map(|r| convert::invitation(r, &api.app.config().public_url))
            .collect(),
        next_page_token: next,
    }))
}

pub(super) async fn cancel<S: Store>(
    api: &InviteApi<S>,
    req: Request<CancelInvitationRequest>,
) -> Result<Response<Invitation>, Status> {
    let p = Principal::of(&req)?;
    let actor = Actor::of(&req)?;
    let row = api.app.cancel_invitation(&p, &actor, &req.get_ref().id).await?;
    Ok(Response::new(convert::invitation(
        &row,
        &api.app.config().public_url,
    )))
}
