//! What a program would have paid: the window's past conversions replayed under it (admins
//! only), a stored program or one sent in the request.

use std::collections::HashMap;

use chrono::Duration;
use referral_common::{ApiError, ApiResult, Violations, auth::Principal, ids, ids::to_ts};
use referral_proto::incentive::v1::{SimulateRewardProgramRequest, SimulatedReferrer, SimulationResult};

use super::optional_instant;
use crate::{
    domain::{
        program::{self, kind_name},
        rewards,
    },
    store::Store,
    store::convert::money,
};

/// Default simulation window, and the most conversions one simulation replays.
const SIMULATION_DAYS: i64 = 90;
const SIMULATION_LIMIT: i64 = 200_000;

pub async fn simulate<S: Store>(
    store: &S,
    p: &Principal,
    req: SimulateRewardProgramRequest,
) -> ApiResult<SimulationResult> {
    p.require_admin()?;
    let now = ids::now();
    let mut v = Violations::default();
    let to = optional_instant(&mut v, req.to.as_ref(), "to").unwrap_or(now);
    let from =
        optional_instant(&mut v, req.from.as_ref(), "from").unwrap_or(to - Duration::days(SIMULATION_DAYS));
    v.check(from >= to, "from", "must be before to");
    v.check(
        to - from > Duration::days(3 * 366),
        "from",
        "the window may span at most 3 years",
    );
    v.into_result()?;
    let body = match req.program {
        Some(body) => body,
        None => store
            .get_program(&req.id)
            .await?
            .ok_or_else(|| ApiError::not_found("reward program", &req.id))?,
    };
    let prog = program::validate(&req.id, &body).map_err(|v| ApiError::Invalid(v.prefixed("program")))?;
    let kind = kind_name(prog.referrer_kind);
    let (past, prior) = store.past_conversions(kind, from, to, SIMULATION_LIMIT).await?;
    let prior: HashMap<String, i32> = prior
        .into_iter()
        .map(|(r, n)| (r, i32::try_from(n).unwrap_or(i32::MAX)))
        .collect();
    let sim = rewards::simulate(&prog, &past, &prior).map_err(|e| ApiError::FailedPrecondition {
        message: e.to_string(),
        reason: "AMOUNT_OUT_OF_RANGE",
    })?;
    Ok(SimulationResult {
        total: Some(money(sim.total_minor, &prog.currency)),
        conversions: sim.conversions,
        referrers: sim
            .referrers
            .into_iter()
            .map(|(referrer_id, (conversions, total))| SimulatedReferrer {
                referrer_id,
                conversions,
                total: Some(money(total, &prog.currency)),
            })
            .collect(),
        from: Some(to_ts(from)),
        to: Some(to_ts(to)),
        skipped: sim.skipped,
    })
}
