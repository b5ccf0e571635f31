//! incentive-svc's use cases, one module each: the one place that orchestrates domain rules,
//! store calls and outgoing events, shared by every adapter that triggers it.
//!
//! - [`programs`]: write, read and list reward programs; [`seed_programs`]: the defaults on
//!   first start; [`simulate_program`]: replay past conversions under a program.
//! - [`campaigns`]: create and list campaigns.
//! - [`referrer_rewards`]: a referrer's balance, tier, badges, next milestone and entries.
//! - [`payouts`]: pay out the eligible balance, read a payout.
//! - [`apply_events`]: consumed conversions booked as rewards, fraud decisions holding,
//!   releasing, voiding or clawing them back.
//! - [`advance_rewards`]: the scheduler's pass (PENDING -> ELIGIBLE, unclaimed -> EXPIRED).

pub mod advance_rewards;
pub mod apply_events;
pub mod campaigns;
pub mod payouts;
pub mod privacy;
pub mod programs;
pub mod referrer_rewards;
pub mod seed_programs;
pub mod simulate_program;

use chrono::{DateTime, Utc};
use referral_common::{ApiResult, Violations, auth::Principal, ids::from_ts, input, paging};

const MAX_ID_LEN: usize = 128;

/// Trims a page fetched with one row extra and returns the token of the next page.
fn next_token<T>(rows: &mut Vec<T>, size: u32, key: impl Fn(&T) -> String) -> String {
    if rows.len() > size as usize {
        rows.truncate(size as usize);
        rows.last()
            .map(|r| paging::encode_token(&key(r)))
            // Only reached with `rows` non-empty (longer than `size`): never empty.
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// A referrer id a member may only name for itself: present, one bounded line, and the
/// caller may act as (`Principal::may_act_as`).
fn own_referrer(p: &Principal, referrer_id: &str) -> ApiResult<()> {
    let mut v = Violations::default();
    if referrer_id.trim().is_empty() {
        v.add("referrerId", "is required");
    } else {
        input::line(&mut v, referrer_id, MAX_ID_LEN, "referrerId");
    }
    v.into_result()?;
    p.require_self(referrer_id, "referrerId")
}

fn optional_instant(
    v: &mut Violations,
    ts: Option<&referral_proto::Timestamp>,
    field: &str,
) -> Option<DateTime<Utc>> {
    let ts = ts?;
    let t = from_ts(ts);
    if t.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    t
}

fn required_instant(
    v: &mut Violations,
    ts: Option<&referral_proto::Timestamp>,
    field: &str,
) -> Option<DateTime<Utc>> {
    if ts.is_none() {
        v.add(field, "is required (RFC 3339)");
        return None;
    }
    optional_instant(v, ts, field)
}
