//! What a conversion earns: the conversion reward, milestone rewards and badges, the
//! referee reward, and a campaign's multiplier within its budget cap. Plain functions over
//! plain data; the store feeds them what it read inside the booking transaction.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use referral_proto::{
    common::v1::PartyKind,
    incentive::v1::{Badge, EntryKind},
};

use super::{
    money,
    program::{Program, Tier},
};

/// An attributed first paid conversion, as the ledger needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub conversion_id: String,
    pub referee_id: String,
    pub referee_kind: PartyKind,
    pub referrer_id: String,
    pub referrer_kind: PartyKind,
    pub value_minor: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

/// A campaign with what it has spent so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    /// Multiplier in thousandths (2x = 2000), so money stays integer.
    pub multiplier_milli: i64,
    pub referrer_kind: Option<PartyKind>,
    /// Budget cap in minor units and its currency; none = uncapped.
    pub cap: Option<(i64, String)>,
    /// Bonus already booked under this campaign.
    pub spent_minor: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl Campaign {
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }

    /// What is left of the cap (none when uncapped).
    pub fn remaining(&self) -> Option<i64> {
        self.cap
            .as_ref()
            .map(|(cap, _)| cap.saturating_sub(self.spent_minor).max(0))
    }

    fn applies(&self, kind: PartyKind, currency: &str, at: DateTime<Utc>) -> bool {
        self.is_active(at)
            && self.referrer_kind.is_none_or(|k| k == kind)
            && self.cap.as_ref().is_none_or(|(_, c)| c == currency)
            && self.remaining() != Some(0)
            && self.multiplier_milli > 1000
    }
}

/// The campaign a reward earned at `at` falls under: the highest multiplier among the
/// active ones for this referrer kind with budget left in this currency.
pub fn pick_campaign<'a>(
    campaigns: &'a [Campaign],
    kind: PartyKind,
    currency: &str,
    at: DateTime<Utc>,
) -> Option<&'a Campaign> {
    campaigns
        .iter()
        .filter(|c| c.applies(kind, currency, at))
        .max_by_key(|c| c.multiplier_milli)
}

/// The extra a campaign adds to `base`: base × (multiplier − 1), never past what is left of
/// its budget.
pub fn campaign_bonus(base_minor: i64, multiplier_milli: i64, remaining: Option<i64>) -> i64 {
    if base_minor <= 0 || multiplier_milli <= 1000 {
        return 0;
    }
    let extra = money::saturate(i128::from(base_minor) * (i128::from(multiplier_milli) - 1000) / 1000);
    match remaining {
        Some(left) => extra.min(left.max(0)),
        None => extra,
    }
}

/// The conversion reward: the program's percentage of the first payment (half up to the
/// minor unit), capped per conversion. Only in the program's currency (no FX).
pub fn conversion_reward(program: &Program, value_minor: i64, currency: &str) -> i64 {
    if currency != program.currency || value_minor <= 0 {
        return 0;
    }
    let raw = money::saturate((i128::from(value_minor) * i128::from(program.percent_bp) + 5_000) / 10_000);
    match program.conversion_cap_minor {
        Some(cap) => raw.min(cap),
        None => raw,
    }
}

/// Tiers reached at `successful` referrals that are not booked yet.
pub fn milestones_due<'a>(program: &'a Program, successful: i32, booked: &[i32]) -> Vec<&'a Tier> {
    program
        .tiers
        .iter()
        .filter(|t| t.at <= successful && !booked.contains(&t.at))
        .collect()
}

/// The first tier above `successful`.
pub fn next_milestone(program: &Program, successful: i32) -> Option<&Tier> {
    program.tiers.iter().find(|t| t.at > successful)
}

/// A referrer's tier: the highest badge earned.
pub fn tier_of(badges: &[Badge]) -> Option<Badge> {
    badges.iter().copied().max()
}

/// One reward to book.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub kind: EntryKind,
    /// Makes the reward unique in the ledger (exactly once under redelivery and races).
    pub dedupe_key: String,
    pub referrer_id: String,
    pub referrer_kind: PartyKind,
    /// Including the campaign bonus.
    pub amount_minor: i64,
    pub bonus_minor: i64,
    pub campaign_id: String,
    pub milestone: i32,
    pub badge: Option<Badge>,
}

pub fn conversion_key(referee_id: &str) -> String {
    format!("conversion:{referee_id}")
}

pub fn referee_key(referee_id: &str) -> String {
    format!("referee:{referee_id}")
}

pub fn milestone_key(referrer_id: &str, at: i32) -> String {
    format!("milestone:{referrer_id}:{at}")
}

pub fn clawback_key(entry_id: &str) -> String {
    format!("clawback:{entry_id}")
}

/// A dedupe key with the person it names replaced by their pseudonym (erasure), or `None`
/// when it does not name `person_id` (exactly: a key of another id that merely starts with
/// it is left alone). Clawback keys name entries, never people.
pub fn rekey_dedupe(key: &str, person_id: &str, pseudonym: &str) -> Option<String> {
    if key == conversion_key(person_id) {
        return Some(conversion_key(pseudonym));
    }
    if key == referee_key(person_id) {
        return Some(referee_key(pseudonym));
    }
    let at = key
        .strip_prefix("milestone:")?
        .strip_prefix(person_id)?
        .strip_prefix(':')?
        .parse::<i32>()
        .ok()?;
    (key == milestone_key(person_id, at)).then(|| milestone_key(pseudonym, at))
}

/// Everything one conversion earns under `program`: the conversion reward, the milestones
/// its referrer reaches with it (`successful_before` + 1 referrals), and the referee reward.
/// Referrer rewards earned inside `campaign` get its multiplier, spending its budget in
/// order so the batch never passes the cap.
pub fn plan_conversion(
    program: &Program,
    conv: &Conversion,
    successful_before: i32,
    milestones_booked: &[i32],
    campaign: Option<&Campaign>,
) -> Vec<Planned> {
    let mut left = campaign.and_then(Campaign::remaining);
    let mut with_bonus = |base: i64| -> (i64, i64, String) {
        match campaign {
            Some(c) => {
                let bonus = campaign_bonus(base, c.multiplier_milli, left);
                if let Some(l) = left.as_mut() {
                    *l = l.saturating_sub(bonus);
                }
                let id = if bonus > 0 { c.id.clone() } else { String::new() };
                (base.saturating_add(bonus), bonus, id)
            }
            None => (base, 0, String::new()),
        }
    };
    let mut out = Vec::new();
    let base = conversion_reward(program, conv.value_minor, &conv.currency);
    if base > 0 {
        let (amount, bonus, campaign_id) = with_bonus(base);
        out.push(Planned {
            kind: EntryKind::ConversionReward,
            dedupe_key: conversion_key(&conv.referee_id),
            referrer_id: conv.referrer_id.clone(),
            referrer_kind: conv.referrer_kind,
            amount_minor: amount,
            bonus_minor: bonus,
            campaign_id,
            milestone: 0,
            badge: None,
        });
    }
    for tier in milestones_due(program, successful_before + 1, milestones_booked) {
        let (amount, bonus, campaign_id) = with_bonus(tier.reward_minor);
        out.push(Planned {
            kind: EntryKind::MilestoneReward,
            dedupe_key: milestone_key(&conv.referrer_id, tier.at),
            referrer_id: conv.referrer_id.clone(),
            referrer_kind: conv.referrer_kind,
            amount_minor: amount,
            bonus_minor: bonus,
            campaign_id,
            milestone: tier.at,
            badge: tier.badge,
        });
    }
    if let Some(r) = program.referee_reward_minor.filter(|r| *r > 0) {
        out.push(Planned {
            kind: EntryKind::RefereeReward,
            dedupe_key: referee_key(&conv.referee_id),
            referrer_id: conv.referee_id.clone(),
            referrer_kind: conv.referee_kind,
            amount_minor: r,
            bonus_minor: 0,
            campaign_id: String::new(),
            milestone: 0,
            badge: None,
        });
    }
    out
}

/// A past conversion replayed by a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct PastConversion {
    pub referrer_id: String,
    pub value_minor: i64,
    pub currency: String,
    /// Fraud rejected it: it earns nothing and does not count.
    pub rejected: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Simulation {
    pub total_minor: i64,
    pub conversions: i32,
    pub skipped: i32,
    /// referrer -> (conversions, referrer-side rewards), in id order.
    pub referrers: BTreeMap<String, (i32, i64)>,
}

/// What `program` would have paid for `conversions` (oldest first), each referrer starting
/// from the successful referrals it had before the window (`prior`). Campaigns are not
/// replayed: a simulation compares programs.
pub fn simulate(
    program: &Program,
    conversions: &[PastConversion],
    prior: &HashMap<String, i32>,
) -> Result<Simulation, money::TooLarge> {
    let mut sim = Simulation::default();
    let mut counts: HashMap<&str, i32> = HashMap::new();
    // Exact in i128 whatever the stored values; only the answer must fit an amount.
    let mut total: i128 = 0;
    let mut per_referrer: BTreeMap<String, (i32, i128)> = BTreeMap::new();
    for c in conversions {
        if c.rejected {
            sim.skipped = sim.skipped.saturating_add(1);
            continue;
        }
        sim.conversions = sim.conversions.saturating_add(1);
        let before = *counts
            .entry(&c.referrer_id)
            .or_insert_with(|| prior.get(&c.referrer_id).copied().unwrap_or(0));
        let after = before.saturating_add(1);
        counts.insert(&c.referrer_id, after);
        let earned = i128::from(conversion_reward(program, c.value_minor, &c.currency))
            + money::sum(
                program
                    .tiers
                    .iter()
                    .filter(|t| t.at > before && t.at <= after)
                    .map(|t| t.reward_minor),
            );
        let slot = per_referrer.entry(c.referrer_id.clone()).or_default();
        slot.0 = slot.0.saturating_add(1);
        slot.1 += earned;
        total += earned + i128::from(program.referee_reward_minor.unwrap_or(0));
    }
    sim.total_minor = money::amount("the simulated total", total)?;
    for (referrer, (n, earned)) in per_referrer {
        sim.referrers.insert(
            referrer,
            (n, money::amount("a referrer's simulated rewards", earned)?),
        );
    }
    Ok(sim)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::program::{default_couple, default_supplier, validate};

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(h)
    }

    fn supplier() -> Program {
        validate("supplier-default", &default_supplier()).unwrap()
    }

    fn conv(referee: &str, value: i64) -> Conversion {
        Conversion {
            conversion_id: format!("c-{referee}"),
            referee_id: referee.into(),
            referee_kind: PartyKind::Couple,
            referrer_id: "sup".into(),
            referrer_kind: PartyKind::Supplier,
            value_minor: value,
            currency: "GBP".into(),
            at: at(0),
        }
    }

    fn weekend(cap: Option<i64>, spent: i64) -> Campaign {
        Campaign {
            id: "double".into(),
            multiplier_milli: 2000,
            referrer_kind: Some(PartyKind::Supplier),
            cap: cap.map(|c| (c, "GBP".to_string())),
            spent_minor: spent,
            starts_at: at(-1),
            ends_at: at(48),
        }
    }

    #[test]
    fn conversion_reward_is_a_percentage_rounded_half_up_and_capped() {
        let p = supplier();
        assert_eq!(conversion_reward(&p, 20_000, "GBP"), 3_000);
        assert_eq!(conversion_reward(&p, 4_999, "GBP"), 750); // 749.85
        assert_eq!(conversion_reward(&p, 20_000, "EUR"), 0);
        let c = validate("couple-default", &default_couple()).unwrap();
        assert_eq!(conversion_reward(&c, 20_000, "GBP"), 1_000);
        assert_eq!(conversion_reward(&c, 500_000, "GBP"), 5_000, "5% capped at 50.00");
    }

    #[test]
    fn the_first_and_fifth_referrals_reach_milestones_and_the_fifth_a_badge() {
        let p = supplier();
        let first = plan_conversion(&p, &conv("u1", 20_000), 0, &[], None);
        let kinds: Vec<_> = first
            .iter()
            .map(|r| (r.kind, r.amount_minor, r.milestone))
            .collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::ConversionReward, 3_000, 0),
                (EntryKind::MilestoneReward, 2_500, 1)
            ]
        );
        let third = plan_conversion(&p, &conv("u3", 20_000), 2, &[1], None);
        assert_eq!(third.len(), 1);
        let fifth = plan_conversion(&p, &conv("u5", 20_000), 4, &[1], None);
        assert_eq!(fifth[1].milestone, 5);
        assert_eq!(fifth[1].badge, Some(Badge::Bronze));
        assert_eq!(fifth[1].dedupe_key, "milestone:sup:5");
        assert_eq!(
            rekey_dedupe(&fifth[1].dedupe_key, "sup", "anon-1").as_deref(),
            Some("milestone:anon-1:5")
        );
        assert_eq!(next_milestone(&p, 5).map(|t| t.at), Some(10));
        assert_eq!(tier_of(&[Badge::Bronze, Badge::Silver]), Some(Badge::Silver));
        assert_eq!(tier_of(&[]), None);
    }

    #[test]
    fn a_campaign_doubles_rewards_until_its_cap_and_never_beyond() {
        let p = supplier();
        // Cap 40.00: the first conversion's 30.00 bonus fits, then 10.00 of the milestone's 25.00.
        let c = weekend(Some(4_000), 0);
        let first = plan_conversion(&p, &conv("u1", 20_000), 0, &[], Some(&c));
        assert_eq!((first[0].amount_minor, first[0].bonus_minor), (6_000, 3_000));
        assert_eq!((first[1].amount_minor, first[1].bonus_minor), (3_500, 1_000));
        assert_eq!(first[1].campaign_id, "double");
        // Spent out: not picked any more, so rewards are back to the base.
        let spent = weekend(Some(4_000), 4_000);
        assert!(pick_campaign(std::slice::from_ref(&spent), PartyKind::Supplier, "GBP", at(0)).is_none());
        assert_eq!(campaign_bonus(3_000, 2000, Some(0)), 0);
        assert_eq!(campaign_bonus(3_000, 1500, None), 1_500);
        // Outside its window, for another kind or currency: not applied.
        let c = weekend(None, 0);
        let all = [c.clone()];
        assert!(pick_campaign(&all, PartyKind::Supplier, "GBP", at(0)).is_some());
        assert!(pick_campaign(&all, PartyKind::Supplier, "GBP", at(48)).is_none());
        assert!(pick_campaign(&all, PartyKind::Couple, "GBP", at(0)).is_none());
        let capped = [weekend(Some(100), 0)];
        assert!(pick_campaign(&capped, PartyKind::Supplier, "EUR", at(0)).is_none());
    }

    #[test]
    fn a_double_sided_program_books_the_referee_reward_to_the_referee() {
        let mut p = supplier();
        p.referee_reward_minor = Some(1_000);
        let plan = plan_conversion(&p, &conv("u1", 20_000), 1, &[1], None);
        let referee = plan.last().unwrap();
        assert_eq!(referee.kind, EntryKind::RefereeReward);
        assert_eq!(
            (referee.referrer_id.as_str(), referee.amount_minor),
            ("u1", 1_000)
        );
        assert_eq!(referee.referrer_kind, PartyKind::Couple);
    }

    #[test]
    fn a_simulation_replays_conversions_with_milestones_from_prior_counts() {
        let mut p = supplier();
        p.percent_bp = 2000;
        let past = |r: &str, v: i64, rejected: bool| PastConversion {
            referrer_id: r.into(),
            value_minor: v,
            currency: "GBP".into(),
            rejected,
        };
        let convs = [
            past("a", 10_000, false),
            past("a", 10_000, false),
            past("b", 10_000, true),
            past("b", 10_000, false),
        ];
        let prior = HashMap::from([("a".to_string(), 4)]);
        let sim = simulate(&p, &convs, &prior).unwrap();
        // a: 2 × 20.00 + the 5-referral milestone (100.00); b: 20.00 + the first (25.00).
        assert_eq!(sim.referrers["a"], (2, 14_000));
        assert_eq!(sim.referrers["b"], (1, 4_500));
        assert_eq!((sim.total_minor, sim.conversions, sim.skipped), (18_500, 3, 1));
    }

    #[test]
    fn erasure_rekeys_only_the_keys_that_name_the_person() {
        let re = |k: &str| rekey_dedupe(k, "u1", "anon-x");
        assert_eq!(re("conversion:u1").as_deref(), Some("conversion:anon-x"));
        assert_eq!(re("referee:u1").as_deref(), Some("referee:anon-x"));
        assert_eq!(re("milestone:u1:25").as_deref(), Some("milestone:anon-x:25"));
        // Another person whose id starts with the erased one's, and entry-named keys.
        assert_eq!(re("conversion:u12"), None);
        assert_eq!(re("milestone:u12:5"), None);
        assert_eq!(re("milestone:u1:5x"), None);
        assert_eq!(re("clawback:u1"), None);
    }
}
