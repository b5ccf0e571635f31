//! incentive-svc's events, one per booking: RewardGranted (a reward entered the ledger),
//! RewardEligible (its hold is over), RewardVoided (fraud voided it, or a clawback entry
//! was booked against a paid one), RewardExpired, PayoutPaid. Each ledger entry carries
//! the referrer's id, kind and tier and its badge, so a leaderboard needs nothing else.

use chrono::{DateTime, Utc};
use referral_common::events::new_event;
use referral_proto::events::v1::{
    Event, PayoutPaid, RewardEligible, RewardExpired, RewardGranted, RewardVoided, event::Payload,
};

use crate::{
    store::convert,
    store::{EntryRow, PayoutView},
};

pub const SOURCE: &str = "incentive";

pub fn reward_granted(e: &EntryRow, tier: Option<&str>) -> Event {
    let payload = Payload::RewardGranted(RewardGranted {
        entry: Some(convert::entry(e, tier)),
    });
    new_event(SOURCE, &e.id, e.created_at, payload)
}

pub fn reward_eligible(e: &EntryRow, tier: Option<&str>, at: DateTime<Utc>) -> Event {
    let payload = Payload::RewardEligible(RewardEligible {
        entry: Some(convert::entry(e, tier)),
    });
    new_event(SOURCE, &e.id, at, payload)
}

pub fn reward_voided(e: &EntryRow, tier: Option<&str>, at: DateTime<Utc>) -> Event {
    let payload = Payload::RewardVoided(RewardVoided {
        entry: Some(convert::entry(e, tier)),
    });
    new_event(SOURCE, &e.id, at, payload)
}

pub fn reward_expired(e: &EntryRow, tier: Option<&str>, at: DateTime<Utc>) -> Event {
    let payload = Payload::RewardExpired(RewardExpired {
        entry: Some(convert::entry(e, tier)),
    });
    new_event(SOURCE, &e.id, at, payload)
}

pub fn payout_paid(v: &PayoutView) -> Event {
    let payload = Payload::PayoutPaid(PayoutPaid {
        payout: Some(convert::payout(v)),
    });
    new_event(SOURCE, &v.payout.id, v.payout.created_at, payload)
}
