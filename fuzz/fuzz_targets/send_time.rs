//! The send-time calculator as `CreateInvitation` runs it: `timing::send_candidate` (sendAt
//! or now, optionally the best slot of the week), then `quota::place` with
//! `timing::first_allowed_instant` for the recipient, over arbitrary clocks, sendAt values
//! (realistic, and any protobuf Timestamp as `from_ts` reads it), IANA zones by index, wedding dates, valid
//! rule sets and per-referrer quota usage. Never panics; the result is never before now or
//! sendAt, never in a blackout and never in a full hour or day bucket.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc, Weekday};
use invite_svc::domain::{
    QuotaLimits, QuotaUsage, SendRules, day_bucket, first_allowed_instant, hour_bucket, is_allowed, place,
    send_candidate,
};
use libfuzzer_sys::fuzz_target;
use referral_common::ids::from_ts;

#[derive(Debug, Arbitrary)]
enum SendAt {
    /// Seconds from now (±68 years): the API's horizon and well beyond.
    Near(i32),
    /// Any protobuf Timestamp a gRPC caller can send (most are refused by `from_ts`).
    Far(i64, i32),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Seconds since 1970, folded into 1970..2100 (the service clock).
    now: u32,
    now_nanos: u32,
    send_at: Option<SendAt>,
    tz: u16,
    /// Days from 0001-01-01, folded into years 1..=9999 (what `YYYY-MM-DD` can say).
    wedding: Option<u32>,
    optimize: Option<(u8, u8)>,
    rules: Option<(u8, u8, u8, u8, u16)>,
    per_hour: u8,
    per_day: u16,
    /// Full buckets: hours / days after the candidate's, with their counts.
    hours: Vec<(u16, u8)>,
    days: Vec<(u16, u16)>,
}

struct Usage {
    hours: HashMap<DateTime<Utc>, u32>,
    days: HashMap<DateTime<Utc>, u32>,
}

impl QuotaUsage for Usage {
    fn hour_count(&self, hour_start: DateTime<Utc>) -> u32 {
        self.hours.get(&hour_start).copied().unwrap_or(0)
    }
    fn day_count(&self, day_start: DateTime<Utc>) -> u32 {
        self.days.get(&day_start).copied().unwrap_or(0)
    }
}

fn instant(secs: i64, nanos: u32) -> Option<DateTime<Utc>> {
    // As `referral_common::ids::from_ts`: microseconds are what the store keeps.
    use chrono::SubsecRound;
    DateTime::from_timestamp(secs, nanos % 1_000_000_000).map(|t| t.trunc_subsecs(6))
}

fuzz_target!(|input: Input| {
    let Some(now) = instant(i64::from(input.now % 4_102_444_800), input.now_nanos) else {
        return;
    };
    let send_at = match input.send_at {
        None => None,
        Some(SendAt::Near(offset)) => now.checked_add_signed(TimeDelta::seconds(i64::from(offset))),
        // Whatever a gRPC caller may send: the service reads it with `from_ts`.
        Some(SendAt::Far(seconds, nanos)) => from_ts(&referral_proto::Timestamp { seconds, nanos }),
    };
    let tz = chrono_tz::TZ_VARIANTS[usize::from(input.tz) % chrono_tz::TZ_VARIANTS.len()];
    let wedding = input
        .wedding
        .and_then(|d| NaiveDate::from_num_days_from_ce_opt(1 + (d % 3_652_059) as i32));
    let optimize = input.optimize.map(|(day, hour)| {
        let weekday = Weekday::try_from(day % 7).expect("0..7 is a weekday");
        (weekday, u32::from(hour % 24))
    });
    let rules = match input.rules {
        Some((a, b, c, d, buffer)) => SendRules {
            saturday_start: u32::from(a % 25),
            saturday_end: u32::from(b % 25),
            quiet_start: u32::from(c % 25),
            quiet_end: u32::from(d % 25),
            wedding_buffer_days: u32::from(buffer % 366),
        },
        None => SendRules::default(),
    };
    if rules.validate().is_err() {
        return;
    }
    let limits = QuotaLimits {
        per_hour: u32::from(input.per_hour).max(1),
        per_day: u32::from(input.per_day).max(1),
    };
    let floor = send_at.filter(|t| *t > now).unwrap_or(now);
    let usage = Usage {
        hours: input
            .hours
            .iter()
            .take(200)
            .filter_map(|(h, n)| {
                Some((
                    hour_bucket(floor).checked_add_signed(TimeDelta::hours(i64::from(*h)))?,
                    u32::from(*n),
                ))
            })
            .collect(),
        days: input
            .days
            .iter()
            .take(200)
            .filter_map(|(d, n)| {
                Some((
                    day_bucket(floor).checked_add_signed(TimeDelta::days(i64::from(*d % 800)))?,
                    u32::from(*n),
                ))
            })
            .collect(),
    };

    // Exactly what `create_one` does.
    let candidate = send_candidate(now, send_at, optimize, tz, wedding, &rules);
    let at = place(candidate, limits, &usage, |t| {
        first_allowed_instant(t, tz, wedding, &rules)
    });

    assert!(
        candidate >= floor,
        "the candidate {candidate} is before now/sendAt {floor}"
    );
    assert!(
        at >= candidate,
        "placed at {at}, before its candidate {candidate}"
    );
    {
        assert!(
            is_allowed(at, tz, wedding, &rules),
            "{at} ({tz}) is in a blackout"
        );
        assert!(
            usage.hour_count(hour_bucket(at)) < limits.per_hour,
            "{at}: its hour is full"
        );
        assert!(
            usage.day_count(day_bucket(at)) < limits.per_day,
            "{at}: its day is full"
        );
    }
});
