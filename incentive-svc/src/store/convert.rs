//! Stored rows <-> proto messages, in one place.

use referral_common::ids::to_ts;
use referral_proto::{
    common::v1::{Money, PartyKind},
    incentive::v1::{Badge, Campaign, EntryKind, EntryState, LedgerEntry, Payout, payout},
};

use crate::{
    domain::rewards,
    store::{CampaignRow, EntryRow, PayoutView},
};

pub fn money(amount_minor: i64, currency: &str) -> Money {
    Money {
        amount_minor,
        currency: currency.to_string(),
    }
}

pub fn party_kind(s: &str) -> PartyKind {
    PartyKind::from_str_name(s).unwrap_or(PartyKind::Unspecified)
}

pub fn badge(s: &str) -> Option<Badge> {
    Badge::from_str_name(s).filter(|b| *b != Badge::Unspecified)
}

/// The highest of the badges (by rank), by name.
pub fn tier_name(badges: &[String]) -> Option<String> {
    let badges: Vec<Badge> = badges.iter().filter_map(|b| badge(b)).collect();
    rewards::tier_of(&badges).map(|b| b.as_str_name().to_string())
}

/// `multiplier` as thousandths (money stays integer).
pub fn multiplier_milli(multiplier: f64) -> i64 {
    (multiplier * 1000.0).round() as i64
}

pub fn campaign_budget(row: &CampaignRow) -> rewards::Campaign {
    rewards::Campaign {
        id: row.id.clone(),
        multiplier_milli: multiplier_milli(row.multiplier),
        referrer_kind: row.referrer_kind.as_deref().map(party_kind),
        cap: row.cap_minor.zip(row.cap_currency.clone()),
        spent_minor: row.spent_minor(),
        starts_at: row.starts_at,
        ends_at: row.ends_at,
    }
}

pub fn campaign(row: &CampaignRow, now: chrono::DateTime<chrono::Utc>) -> Campaign {
    // No cap, no currency: `spent` is then shown without one (nothing can be compared).
    let currency = row.cap_currency.clone().unwrap_or_default();
    Campaign {
        id: row.id.clone(),
        name: row.name.clone(),
        starts_at: Some(to_ts(row.starts_at)),
        ends_at: Some(to_ts(row.ends_at)),
        multiplier: row.multiplier,
        referrer_kind: row.referrer_kind.as_deref().map(|k| party_kind(k) as i32),
        budget_cap: row.cap_minor.map(|c| money(c, &currency)),
        spent: Some(money(row.spent_minor(), &currency)),
        active: row.starts_at <= now && now < row.ends_at,
        created_at: Some(to_ts(row.created_at)),
    }
}

pub fn entry(e: &EntryRow, tier: Option<&str>) -> LedgerEntry {
    LedgerEntry {
        id: e.id.clone(),
        referrer_id: e.referrer_id.clone(),
        kind: EntryKind::from_str_name(&e.kind).unwrap_or(EntryKind::Unspecified) as i32,
        state: EntryState::from_str_name(&e.state).unwrap_or(EntryState::Unspecified) as i32,
        amount: Some(money(e.amount_minor, &e.currency)),
        conversion_id: e.conversion_id.clone(),
        referee_id: e.referee_id.clone(),
        program_id: e.program_id.clone(),
        campaign_id: e.campaign_id.clone(),
        milestone: e.milestone,
        badge: badge(&e.badge).map(|b| b as i32),
        eligible_at: Some(to_ts(e.eligible_at)),
        expires_at: Some(to_ts(e.expires_at)),
        created_at: Some(to_ts(e.created_at)),
        payout_id: e.payout_id.clone(),
        reason: e.reason.clone(),
        referrer_kind: party_kind(&e.referrer_kind) as i32,
        tier: tier.and_then(badge).map(|b| b as i32),
        campaign_bonus: Some(money(e.campaign_bonus_minor, &e.currency)),
    }
}

pub fn payout(v: &PayoutView) -> Payout {
    let p = &v.payout;
    Payout {
        id: p.id.clone(),
        referrer_id: p.referrer_id.clone(),
        amount: Some(money(p.amount_minor, &p.currency)),
        status: payout::Status::from_str_name(&p.status).unwrap_or(payout::Status::Unspecified) as i32,
        entries: v.entries.clone(),
        created_at: Some(to_ts(p.created_at)),
    }
}
