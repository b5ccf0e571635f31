//! Referral codes over gRPC: create, get, resolve.

use referral_common::auth::Principal;
use referral_proto::invite::v1::{
    CreateReferralCodeRequest, GetReferralCodeRequest, ReferralCode, ResolveReferralCodeRequest,
    ResolveReferralCodeResponse,
};
use tonic::{Request, Response, Status};

use super::{InviteApi, convert};
use crate::{
    domain::codes::code_url,
    store::{CodeRow, Store},
};

pub(super) async fn create<S: Store>(
    api: &InviteApi<S>,
    req: Request<CreateReferralCodeRequest>,
) -> Result<Response<ReferralCode>, Status> {
    api.create(req, "CreateReferralCode", |p, _, body| async move {
        let row = api.app.create_referral_code(&p, body).await?;
        Ok(code_response(api, &row))
    })
    .await
}

pub(super) async fn get<S: Store>(
    api: &InviteApi<S>,
    req: Request<GetReferralCodeRequest>,
) -> Result<Response<ReferralCode>, Status> {
    let p = Principal::of(&req)?;
    let row = api.app.get_referral_code(&p, &req.get_ref().code).await?;
    Ok(Response::new(code_response(api, &row)))
}

pub(super) async fn resolve<S: Store>(
    api: &InviteApi<S>,
    req: Request<ResolveReferralCodeRequest>,
) -> Result<Response<ResolveReferralCodeResponse>, Status> {
    Principal::of(&req)?.require_admin()?;
    let (row, landing) = api.app.resolve_referral_code(&req.get_ref().code).await?;
    Ok(Response::new(ResolveReferralCodeResponse {
        code: row.code,
        landing_url: landing,
        referrer_id: row.referrer_id,
    }))
}

fn code_response<S: Store>(api: &InviteApi<S>, row: &CodeRow) -> ReferralCode {
    let public_url = &api.app.config().public_url;
    convert::referral_code(row, public_url, qr_svg(public_url, &row.code))
}

/// The code's link as an SVG QR code ("" in the unreachable case that it does not fit one:
/// a link of a few dozen characters always does).
fn qr_svg(public_url: &str, code: &str) -> String {
    let url = code_url(public_url, code);
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(qr) => qr
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
        Err(_) => String::new(),
    }
}
