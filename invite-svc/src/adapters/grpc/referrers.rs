//! Referrers over gRPC: set a tier (admin), get one.

use referral_common::{audit::Actor, auth::Principal};
use referral_proto::invite::v1::{GetReferrerRequest, Referrer, SetReferrerTierRequest};
use tonic::{Request, Response, Status};

use super::{InviteApi, convert};
use crate::store::Store;

pub(super) async fn set_tier<S: Store>(
    api: &InviteApi<S>,
    req: Request<SetReferrerTierRequest>,
) -> Result<Response<Referrer>, Status> {
    Principal::of(&req)?.require_admin()?;
    let actor = Actor::of(&req)?;
    let row = api.app.set_referrer_tier(&actor, req.into_inner()).await?;
    Ok(Response::new(convert::referrer(&row)))
}

pub(super) async fn get<S: Store>(
    api: &InviteApi<S>,
    req: Request<GetReferrerRequest>,
) -> Result<Response<Referrer>, Status> {
    let p = Principal::of(&req)?;
    let row = api.app.get_referrer(&p, &req.get_ref().referrer_id).await?;
    Ok(Response::new(convert::referrer(&row)))
}
