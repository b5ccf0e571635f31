//! Tracking over gRPC: clicks, signups (attribution) and conversions.

use referral_common::auth::Principal;
use referral_proto::invite::v1::{
    Attribution, Click, ConversionResult, RecordClickRequest, RecordClicksRequest, RecordClicksResponse,
    RecordConversionRequest, RecordSignupRequest,
};
use tonic::{Request, Response, Status};

use super::{InviteApi, client_context, convert};
use crate::store::Store;

pub(super) async fn record_click<S: Store>(
    api: &InviteApi<S>,
    req: Request<RecordClickRequest>,
) -> Result<Response<Click>, Status> {
    let p = Principal::of(&req)?;
    let client = client_context(&req);
    let stored = api.app.record_click(&p, req.into_inner(), &client).await?;
    Ok(Response::new(convert::click(&stored)))
}

pub(super) async fn record_clicks<S: Store>(
    api: &InviteApi<S>,
    req: Request<RecordClicksRequest>,
) -> Result<Response<RecordClicksResponse>, Status> {
    Principal::of(&req)?.require_admin()?;
    let out = api.app.record_clicks(req.into_inner()).await?;
    Ok(Response::new(RecordClicksResponse {
        recorded: out.recorded as i32,
        unknown_codes: out.unknown_codes as i32,
    }))
}

pub(super) async fn record_signup<S: Store>(
    api: &InviteApi<S>,
    req: Request<RecordSignupRequest>,
) -> Result<Response<Attribution>, Status> {
    api.create(req, "RecordSignup", |p, client, body| async move {
        let row = api.app.attribute_signup(&p, body, &client).await?;
        Ok(convert::attribution(&row)?)
    })
    .await
}

pub(super) async fn record_conversion<S: Store>(
    api: &InviteApi<S>,
    req: Request<RecordConversionRequest>,
) -> Result<Response<ConversionResult>, Status> {
    api.create(req, "RecordConversion", |p, _, body| async move {
        let row = api.app.report_conversion(&p, body).await?;
        Ok(convert::conversion(&row))
    })
    .await
}
