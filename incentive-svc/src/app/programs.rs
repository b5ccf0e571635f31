//! Reward programs as data: admins write them (validated, audited), anyone signed in reads
//! and lists them.

use referral_common::{
    ApiError, ApiResult,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids, paging,
};
use referral_proto::incentive::v1::{
    GetRewardProgramRequest, ListRewardProgramsRequest, ListRewardProgramsResponse, PutRewardProgramRequest,
    RewardProgram,
};

use super::next_token;
use crate::{domain::program, store::Store};

/// Creates or replaces a program (admins only), keeping its first `createdAt`.
pub async fn put<S: Store>(
    store: &S,
    p: &Principal,
    actor: &Actor,
    req: PutRewardProgramRequest,
) -> ApiResult<RewardProgram> {
    p.require_admin()?;
    let Some(mut body) = req.program else {
        return Err(ApiError::invalid(
            "program",
            "the request body must be the program",
        ));
    };
    program::validate(&req.id, &body).map_err(ApiError::Invalid)?;
    body.id = req.id;
    // Omitted means active: a program an admin writes is meant to be used.
    body.active = Some(body.active.unwrap_or(true));
    let audit = AuditEntry::new(actor, action::REWARD_PROGRAM_PUT, "reward_program", &body.id);
    Ok(store.put_program(body, ids::now(), &audit).await?)
}

pub async fn get<S: Store>(store: &S, req: GetRewardProgramRequest) -> ApiResult<RewardProgram> {
    store
        .get_program(&req.id)
        .await?
        .ok_or_else(|| ApiError::not_found("reward program", &req.id))
}

pub async fn list<S: Store>(
    store: &S,
    req: ListRewardProgramsRequest,
) -> ApiResult<ListRewardProgramsResponse> {
    let size = paging::page_size(req.page_size)?;
    let after = paging::decode_token(&req.page_token)?;
    let mut programs = store.list_programs(after.as_deref(), i64::from(size) + 1).await?;
    let next = next_token(&mut programs, size, |p| p.id.clone());
    Ok(ListRewardProgramsResponse {
        programs,
        next_page_token: next,
    })
}
