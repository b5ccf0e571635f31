//! What happens when invite-svc's or fraud-svc's events arrive (decoded by
//! `adapters::consumers` into [`Work`]):
//!
//! - an attributed, first paid conversion (`Work::Conversion`) is booked under the active
//!   program of the referrer's kind, once per referee (`domain::rewards::conversion_key`):
//!   its initial state follows the strictest fraud action known for it or its signup
//!   (`domain::states::stricter`, `initial`: PENDING, HELD, or nothing on REJECT), and
//!   `domain::rewards::pick_campaign` / `plan_conversion` plan the reward, the milestones
//!   reached and any campaign bonus within its budget;
//! - a fraud assessment (`Work::Decision`, not a resolution) is recorded (a conversion may
//!   come before or after its assessment: whichever comes second sees the first) and
//!   applied to the rewards of its conversion, or of every conversion of its signup's
//!   referee, by `domain::states::on_decision`: REVIEW holds them, REJECT voids them or,
//!   once paid, books a clawback entry (`domain::rewards::clawback_key`, at most once);
//! - a case resolution: APPROVE releases held rewards, REJECT voids or claws back, its
//!   reviewer the actor of the audit rows.
//!
//! The whole batch is applied in one ledger transaction (`Store::begin_ledger` ...
//! `Store::commit`, under the ledger's write lock) with the source's new offset and the ids
//! of the events applied (duplicates dropped by id), so a redelivered event or a replay
//! after a crash books nothing twice and a campaign budget is never read by two bookings at
//! once; the outbox events (RewardGranted, RewardVoided, ...) are staged in that same
//! transaction.

use referral_common::{
    audit::{Actor, AuditEntry, action},
    ids,
};
use referral_proto::{common::v1::FraudAction, incentive::v1::EntryKind};

use crate::{
    domain::{
        Program,
        program::kind_name,
        rewards::{self, Campaign, Conversion, Planned},
        states::{self, Effect, State},
    },
    store::events,
    store::{ApplySummary, Consumed, Decision, EntryRow, Store, StoreResult, Work},
};

/// Applies one batch of `source`'s events to the ledger.
pub async fn apply<S: Store>(store: &S, source: &str, items: Vec<Consumed>) -> StoreResult<ApplySummary> {
    let summary = apply_batch(store, source, items).await?;
    if summary.booked + summary.changed > 0 {
        metrics::counter!("incentive_entries_booked_total").increment(u64::from(summary.booked));
        tracing::info!(
            source,
            booked = summary.booked,
            changed = summary.changed,
            "ledger updated from events"
        );
    }
    Ok(summary)
}

/// Where the consumer of `source` resumes.
pub async fn last_offset<S: Store>(store: &S, source: &str) -> StoreResult<i64> {
    store.last_offset(source).await
}

/// The batch in one ledger transaction with the new offset of `source`, dropping events
/// already applied (by id).
async fn apply_batch<S: Store>(store: &S, source: &str, items: Vec<Consumed>) -> StoreResult<ApplySummary> {
    let mut summary = ApplySummary::default();
    let Some(last) = items.iter().map(|i| i.offset).max() else {
        return Ok(summary);
    };
    let mut tx = store.begin_ledger().await?;
    for item in items {
        if !store.mark_consumed(&mut tx, &item.event_id).await? {
            summary.duplicates += 1;
            continue;
        }
        summary.applied += 1;
        match item.work {
            Work::Nothing => {}
            Work::Conversion(conv, signup_action) => {
                summary.booked += book_conversion(store, &mut tx, &conv, signup_action).await?;
            }
            Work::Decision(d) => {
                let (booked, changed) = decide(store, &mut tx, &d).await?;
                summary.booked += booked;
                summary.changed += changed;
            }
        }
    }
    store.save_offset(&mut tx, source, last).await?;
    store.commit(tx, summary.booked + summary.changed > 0).await?;
    Ok(summary)
}

/// Books what a conversion earns, once per referee (see the module comment).
async fn book_conversion<S: Store>(
    store: &S,
    tx: &mut S::Tx,
    conv: &Conversion,
    signup_action: FraudAction,
) -> StoreResult<u32> {
    let referrer_kind = kind_name(conv.referrer_kind);
    store.record_conversion(tx, conv).await?;
    if store
        .entry_by_key(tx, &rewards::conversion_key(&conv.referee_id))
        .await?
        .is_some()
    {
        return Ok(0);
    }
    // What fraud said so far, whichever order the events came in.
    let known = store
        .known_actions(tx, &conv.conversion_id, &conv.referee_id)
        .await?;
    let action = known
        .iter()
        .filter_map(|a| FraudAction::from_str_name(a))
        .fold(signup_action, states::stricter);
    let Some(initial) = states::initial(action) else {
        return Ok(0);
    };
    let Some(program) = store.active_program_in(tx, referrer_kind).await? else {
        tracing::warn!(
            kind = referrer_kind,
            "no active reward program; conversion not rewarded"
        );
        return Ok(0);
    };
    let successful_before = store
        .successful_referrals(tx, &conv.referrer_id, &conv.conversion_id)
        .await?;
    let booked_milestones = store.booked_milestones(tx, &conv.referrer_id).await?;
    let campaigns = store.campaigns_at(tx, conv.at).await?;
    let campaigns: Vec<Campaign> = campaigns
        .iter()
        .map(crate::store::convert::campaign_budget)
        .collect();
    let campaign = rewards::pick_campaign(&campaigns, conv.referrer_kind, &program.currency, conv.at);
    let plan = rewards::plan_conversion(&program, conv, successful_before, &booked_milestones, campaign);
    let mut booked = 0;
    for planned in plan {
        // A milestone is earned by the count (reviewed referrals count); only the
        // conversion's own rewards wait for its review.
        let initial = if planned.kind == EntryKind::MilestoneReward {
            State::Pending
        } else {
            initial
        };
        if book(store, tx, &program, conv, &planned, initial).await? {
            booked += 1;
        }
    }
    Ok(booked)
}

/// Inserts one planned reward (a no-op when its dedupe key exists) with its first state and
/// a RewardGranted event.
async fn book<S: Store>(
    store: &S,
    tx: &mut S::Tx,
    program: &Program,
    conv: &Conversion,
    p: &Planned,
    initial: State,
) -> StoreResult<bool> {
    let (eligible_at, expires_at) = program.schedule(conv.at.max(ids::now()));
    let mut e = EntryRow {
        id: ids::new_id(),
        referrer_id: p.referrer_id.clone(),
        referrer_kind: kind_name(p.referrer_kind).to_string(),
        kind: p.kind.as_str_name().to_string(),
        amount_minor: p.amount_minor,
        currency: program.currency.clone(),
        campaign_bonus_minor: p.bonus_minor,
        conversion_id: conv.conversion_id.clone(),
        referee_id: conv.referee_id.clone(),
        program_id: program.id.clone(),
        campaign_id: p.campaign_id.clone(),
        milestone: p.milestone,
        // No badge at this milestone: the column's "none" is the empty string.
        badge: p.badge.map(|b| b.as_str_name().to_string()).unwrap_or_default(),
        eligible_at,
        expires_at,
        reason: String::new(),
        created_at: ids::now(),
        state: initial.as_str().to_string(),
        payout_id: String::new(),
    };
    if !store.insert_entry(tx, &e, &p.dedupe_key).await? {
        return Ok(false);
    }
    if initial == State::Held {
        e.reason = "held for fraud review".into();
    }
    let tier = store.tier(tx, &e.referrer_id).await?;
    store
        .stage(tx, &events::reward_granted(&e, tier.as_deref()))
        .await?;
    Ok(true)
}

/// Records a fraud decision and applies it to the rewards of its conversion (or of
/// every conversion of its signup's referee). Returns (booked, changed).
async fn decide<S: Store>(store: &S, tx: &mut S::Tx, d: &Decision) -> StoreResult<(u32, u32)> {
    let referee: Option<String> = if !d.referee_id.is_empty() {
        Some(d.referee_id.clone())
    } else if d.subject_type == "CONVERSION" {
        store.referee_of_conversion(tx, &d.subject_id).await?
    } else {
        store.referee_of_decision(tx, &d.subject_id).await?
    };
    // A subject this ledger has not seen yet: the decision is kept without a
    // referee (the column's "unknown"), and matched by subject id alone.
    let referee = referee.unwrap_or_default();
    store.record_decision(tx, d, &referee).await?;
    // A first assessment that approves changes nothing; only a reviewer releases.
    if d.action == FraudAction::Approve && !d.resolution {
        return Ok((0, 0));
    }
    let affected: Vec<EntryRow> = if d.subject_type == "CONVERSION" {
        store.rewards_of_conversion(tx, &d.subject_id).await?
    } else if !referee.is_empty() {
        store.rewards_of_referee(tx, &referee).await?
    } else {
        Vec::new()
    };
    let reason = match (d.action, d.resolution) {
        (FraudAction::Reject, true) => "fraud review rejected the referral",
        (FraudAction::Reject, false) => "fraud check rejected the referral",
        (FraudAction::Review, _) => "held for fraud review",
        _ => "released by fraud review",
    };
    let (mut booked, mut changed) = (0, 0);
    for mut e in affected {
        let Some(current) = State::parse(&e.state) else {
            continue;
        };
        match states::on_decision(current, d.action) {
            Effect::Nothing => {}
            Effect::To(to) => {
                let from = e.state.clone();
                store.transition(tx, &mut e, to, "", reason, d.at).await?;
                if to == State::Voided {
                    let tier = store.tier(tx, &e.referrer_id).await?;
                    store
                        .stage(tx, &events::reward_voided(&e, tier.as_deref(), d.at))
                        .await?;
                    let entry = reversal_audit(d, &e.id, reason)
                        .before(serde_json::json!({ "state": from, "amountMinor": e.amount_minor.to_string(), "currency": e.currency }))
                        .after(serde_json::json!({ "state": e.state, "amountMinor": e.amount_minor.to_string(), "currency": e.currency }));
                    store.audit(tx, &entry).await?;
                }
                changed += 1;
            }
            Effect::Clawback => {
                let claw = EntryRow {
                    id: ids::new_id(),
                    kind: "CLAWBACK".into(),
                    amount_minor: -e.amount_minor,
                    campaign_bonus_minor: 0,
                    campaign_id: String::new(),
                    milestone: 0,
                    badge: String::new(),
                    eligible_at: d.at,
                    // Owed until recovered from a later payout.
                    expires_at: d.at + chrono::Duration::days(100 * 365),
                    reason: format!("{reason} after payout {}", e.payout_id),
                    created_at: d.at,
                    state: State::Eligible.as_str().to_string(),
                    payout_id: String::new(),
                    ..e.clone()
                };
                if store
                    .insert_entry(tx, &claw, &rewards::clawback_key(&e.id))
                    .await?
                {
                    let tier = store.tier(tx, &claw.referrer_id).await?;
                    store
                        .stage(tx, &events::reward_voided(&claw, tier.as_deref(), d.at))
                        .await?;
                    let entry = reversal_audit(d, &e.id, &claw.reason)
                        .before(serde_json::json!({ "state": e.state, "amountMinor": e.amount_minor.to_string(), "currency": e.currency }))
                        .after(serde_json::json!({ "clawbackEntryId": claw.id, "amountMinor": claw.amount_minor.to_string(), "currency": claw.currency }));
                    store.audit(tx, &entry).await?;
                    booked += 1;
                }
            }
        }
    }
    Ok((booked, changed))
}

/// The audit row of a reward a fraud decision reverses: by the reviewer who resolved
/// the case when the event names one, else by the system (the fraud check itself).
fn reversal_audit(d: &Decision, entry_id: &str, reason: &str) -> AuditEntry {
    // Only admins resolve cases (fraud-svc refuses anyone else).
    let actor = Actor::origin(d.origin.as_deref(), Some("admin"));
    AuditEntry::new(&actor, action::REWARD_REVERSE, "reward", entry_id).note(reason)
}
