//! A referrer's rewards as it sees them: the balance, its tier and badges, what the next
//! milestone pays, and its ledger entries (a member reads only its own).

use referral_common::{ApiResult, auth::Principal, paging};
use referral_proto::incentive::v1::{Balance, GetReferrerRewardsRequest, NextMilestone, ReferrerRewards};

use super::{next_token, own_referrer};
use crate::{
    domain::rewards,
    store::Store,
    store::convert::{self, money},
};

pub async fn get<S: Store>(
    store: &S,
    p: &Principal,
    req: GetReferrerRewardsRequest,
) -> ApiResult<ReferrerRewards> {
    own_referrer(p, &req.referrer_id)?;
    let size = paging::page_size(req.page_size)?;
    let after = paging::decode_token(&req.page_token)?;
    // Entries first: the balance read after them includes every entry listed (a booking
    // committing between the two reads shows in the balance, never only in the list).
    let mut entries = store
        .entries(&req.referrer_id, after.as_deref(), i64::from(size) + 1)
        .await?;
    let standing = store.standing(&req.referrer_id).await?;
    let next = next_token(&mut entries, size, |e| e.id.clone());
    // Whose program says what comes next: the kind the ledger knows, or the caller's own.
    let kind = standing
        .referrer_kind
        .clone()
        .or_else(|| p.kind.clone().filter(|_| p.sub == req.referrer_id));
    let program = match &kind {
        Some(k) => store.active_program(k).await?,
        None => None,
    };
    let currency = if standing.currency.is_empty() {
        program
            .as_ref()
            .map(|p| p.currency.clone())
            .unwrap_or_else(|| "GBP".into())
    } else {
        standing.currency.clone()
    };
    let next_milestone = program
        .as_ref()
        .and_then(|prog| rewards::next_milestone(prog, standing.successful_referrals))
        .map(|t| NextMilestone {
            at: t.at,
            reward: Some(money(t.reward_minor, &currency)),
            badge: t.badge.map(|b| b as i32),
        });
    let tier = convert::tier_name(&standing.badges);
    Ok(ReferrerRewards {
        referrer_id: req.referrer_id.clone(),
        balance: Some(Balance {
            pending: Some(money(standing.pending_minor, &currency)),
            eligible: Some(money(standing.eligible_minor, &currency)),
            paid: Some(money(standing.paid_minor, &currency)),
        }),
        tier: tier.as_deref().and_then(convert::badge).map(|b| b as i32),
        badges: standing
            .badges
            .iter()
            .filter_map(|b| convert::badge(b))
            .map(|b| b as i32)
            .collect(),
        successful_referrals: standing.successful_referrals,
        next_milestone,
        entries: entries
            .iter()
            .map(|e| convert::entry(e, tier.as_deref()))
            .collect(),
        next_page_token: next,
    })
}
