//! Campaigns: admins create them (a window, a multiplier, an optional kind and budget cap),
//! anyone signed in lists them.

use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids, input, paging,
};
use referral_proto::{
    common::v1::PartyKind,
    incentive::v1::{Campaign, CreateCampaignRequest, ListCampaignsRequest, ListCampaignsResponse},
};

use super::{next_token, required_instant};
use crate::{
    domain::program::{is_iso_currency, kind_name},
    store::convert,
    store::{CampaignRow, Store},
};

const MAX_NAME_LEN: usize = 200;
/// The most a campaign may multiply a reward by (a typo guard).
const MAX_MULTIPLIER: f64 = 10.0;

pub async fn create<S: Store>(
    store: &S,
    p: &Principal,
    actor: &Actor,
    req: CreateCampaignRequest,
) -> ApiResult<Campaign> {
    p.require_admin()?;
    let mut v = Violations::default();
    if req.name.trim().is_empty() {
        v.add("name", "is required");
    } else {
        input::line(&mut v, &req.name, MAX_NAME_LEN, "name");
    }
    let starts = required_instant(&mut v, req.starts_at.as_ref(), "startsAt");
    let ends = required_instant(&mut v, req.ends_at.as_ref(), "endsAt");
    // A campaign runs within ten years either side of now: anything else is a typo, and
    // derived instants stay far inside the storable years.
    let (earliest, latest) = (
        ids::now() - input::BACKFILL_MAX_AGE,
        ids::now() + input::BACKFILL_MAX_AGE,
    );
    if let Some(s) = starts {
        input::instant_between(&mut v, s, earliest, latest, "startsAt");
    }
    if let Some(e) = ends {
        input::instant_between(&mut v, e, earliest, latest, "endsAt");
    }
    if let (Some(s), Some(e)) = (starts, ends) {
        v.check(e <= s, "endsAt", "must be after startsAt");
    }
    if !req.multiplier.is_finite() || req.multiplier < 1.0 || req.multiplier > MAX_MULTIPLIER {
        v.add("multiplier", format!("must be between 1 and {MAX_MULTIPLIER}"));
    }
    let kind = match req.referrer_kind.map(PartyKind::try_from) {
        None => None,
        Some(Ok(k @ (PartyKind::Supplier | PartyKind::Couple))) => Some(kind_name(k).to_string()),
        Some(_) => {
            v.add("referrerKind", "must be SUPPLIER or COUPLE when given");
            None
        }
    };
    if let Some(cap) = &req.budget_cap {
        v.check(
            cap.amount_minor < 0 || cap.amount_minor > input::DEFAULT_MAX_AMOUNT_MINOR,
            "budgetCap.amountMinor",
            format!("must be between 0 and {}", input::DEFAULT_MAX_AMOUNT_MINOR),
        );
        v.check(
            !is_iso_currency(&cap.currency),
            "budgetCap.currency",
            "must be an ISO 4217 code such as GBP",
        );
    }
    v.into_result()?;
    let (Some(starts_at), Some(ends_at)) = (starts, ends) else {
        return Err(ApiError::invalid("startsAt", "is required"));
    };
    let now = ids::now();
    let row = CampaignRow {
        id: ids::new_id(),
        name: req.name.trim().to_string(),
        starts_at,
        ends_at,
        multiplier: req.multiplier,
        referrer_kind: kind,
        cap_minor: req.budget_cap.as_ref().map(|c| c.amount_minor),
        cap_currency: req.budget_cap.as_ref().map(|c| c.currency.clone()),
        created_at: now,
        spent_hi: 0,
        spent_lo: 0,
    };
    let audit = AuditEntry::new(actor, action::CAMPAIGN_CREATE, "campaign", &row.id);
    let row = store.create_campaign(row, &audit).await?;
    Ok(convert::campaign(&row, now))
}

pub async fn list<S: Store>(store: &S, req: ListCampaignsRequest) -> ApiResult<ListCampaignsResponse> {
    let size = paging::page_size(req.page_size)?;
    let after = paging::decode_token(&req.page_token)?;
    let now = ids::now();
    let mut rows = store
        .list_campaigns(req.active, now, after.as_deref(), i64::from(size) + 1)
        .await?;
    let next = next_token(&mut rows, size, |c| c.id.clone());
    Ok(ListCampaignsResponse {
        campaigns: rows.iter().map(|r| convert::campaign(r, now)).collect(),
        next_page_token: next,
    })
}
