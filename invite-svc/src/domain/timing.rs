//! Humane send times: no invitation lands on a Saturday (wedding day for the trade), at
//! night, or in the days around the recipient's own wedding — all judged on the recipient's
//! local clock, which is why every rule here works on local wall time and converts back to
//! UTC with care for daylight-saving gaps and overlaps.

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;

use super::shown;

/// Time zone of a recipient who did not give one: the marketplace is UK-first.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Europe::London;

/// When [`best_slot_within`] aims by default: Tuesday early afternoon, when people read.
pub const DEFAULT_PREFERRED_SLOT: (Weekday, u32) = (Weekday::Tue, 14);

/// How far ahead [`best_slot_within`] looks by default: one full week holds every weekday.
pub const DEFAULT_HORIZON_DAYS: u32 = 7;

/// Longest horizon [`best_slot_within`] honours; it looks at every hour of it.
const MAX_HORIZON_DAYS: u32 = 31;

/// Bound on the search for an allowed instant. Each step jumps to the end of one blackout,
/// and a day holds at most three (night, Saturday, night), so this covers well over 400 days;
/// any valid [`SendRules`] finds a slot within about a week after a wedding blackout.
const MAX_SEARCH_STEPS: usize = 4 * 400;

/// Longest wedding buffer [`SendRules::validate`] accepts.
const MAX_WEDDING_BUFFER_DAYS: u32 = 365;

/// The blackouts, in the recipient's local time. Hours are whole local hours of the day,
/// `0..=24`; a window whose start equals its end is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRules {
    /// Saturday blackout start (inclusive): suppliers are at weddings.
    pub saturday_start: u32,
    /// Saturday blackout end (exclusive).
    pub saturday_end: u32,
    /// Nightly quiet hours start (inclusive); may be later than `quiet_end` (wraps midnight).
    pub quiet_start: u32,
    /// Nightly quiet hours end (exclusive).
    pub quiet_end: u32,
    /// Local dates from `wedding - buffer` to `wedding + buffer` (inclusive) are blocked whole.
    pub wedding_buffer_days: u32,
}

impl Default for SendRules {
    fn default() -> Self {
        Self {
            saturday_start: 9,
            saturday_end: 18,
            quiet_start: 22,
            quiet_end: 8,
            wedding_buffer_days: 3,
        }
    }
}

/// A [`SendRules`] setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendRulesError {
    #[error("{name} must be an hour from 0 to 24, got {value}")]
    HourOutOfRange { name: &'static str, value: u32 },
    #[error("quiet hours from {start}:00 to {end}:00 leave no time of day to send")]
    QuietAllDay { start: u32, end: u32 },
    #[error("wedding_buffer_days must be at most {max}, got {value}", max = MAX_WEDDING_BUFFER_DAYS)]
    WeddingBufferTooLong { value: u32 },
}

impl SendRules {
    /// Checks configured rules at start-up, so a bad setting stops the service instead of
    /// silently scheduling invitations into a blackout.
    pub fn validate(&self) -> Result<(), SendRulesError> {
        for (name, value) in [
            ("saturday_start", self.saturday_start),
            ("saturday_end", self.saturday_end),
            ("quiet_start", self.quiet_start),
            ("quiet_end", self.quiet_end),
        ] {
            if value > 24 {
                return Err(SendRulesError::HourOutOfRange { name, value });
            }
        }
        let quiet_hours = if self.quiet_start <= self.quiet_end {
            self.quiet_end - self.quiet_start
        } else {
            24 - self.quiet_start + self.quiet_end
        };
        if quiet_hours >= 24 {
            return Err(SendRulesError::QuietAllDay {
                start: self.quiet_start,
                end: self.quiet_end,
            });
        }
        if self.wedding_buffer_days > MAX_WEDDING_BUFFER_DAYS {
            return Err(SendRulesError::WeddingBufferTooLong {
                value: self.wedding_buffer_days,
            });
        }
        Ok(())
    }
}

/// A recipient's time zone or wedding date that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("unknown time zone `{0}`; use an IANA name such as Europe/London")]
    UnknownTimeZone(String),
    #[error("wedding date `{0}` is not a date in the form YYYY-MM-DD")]
    BadWeddingDate(String),
}

/// The recipient's IANA time zone; empty means [`DEFAULT_TIME_ZONE`].
pub fn parse_timezone(input: &str) -> Result<Tz, TimingError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Ok(DEFAULT_TIME_ZONE);
    }
    trimmed
        .parse()
        .map_err(|_| TimingError::UnknownTimeZone(shown(trimmed)))
}

/// The recipient's wedding date, strictly `YYYY-MM-DD`; empty means none given.
pub fn parse_wedding_date(input: &str) -> Result<Option<NaiveDate>, TimingError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    // chrono alone would also take `2025-6-1` or `+2025-06-01`; the contract says YYYY-MM-DD.
    let shaped = trimmed.len() == 10
        && trimmed.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(TimingError::BadWeddingDate(shown(trimmed)));
    }
    NaiveDate::parse_from_str(trimmed, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| TimingError::BadWeddingDate(shown(trimmed)))
}

/// Whether an invitation may be sent at `at` to a recipient in `tz`.
pub fn is_allowed(at: DateTime<Utc>, tz: Tz, wedding_date: Option<NaiveDate>, rules: &SendRules) -> bool {
    blackout_end(local_time(at, tz), wedding_date, rules).is_none()
}

/// The first instant at or after `earliest` outside every blackout of the recipient's local
/// time. Blackouts are found on the local clock and left at their local end, mapped back to
/// UTC: an end that falls in a spring-forward gap becomes the instant the clocks jump, and
/// one that occurs twice in an autumn overlap becomes its first occurrence not before the
/// current candidate.
///
/// Always terminates: with rules that leave no time to send (which
/// [`SendRules::validate`] refuses) it gives up after a bounded search and returns the
/// instant it reached.
pub fn first_allowed_instant(
    earliest: DateTime<Utc>,
    tz: Tz,
    wedding_date: Option<NaiveDate>,
    rules: &SendRules,
) -> DateTime<Utc> {
    let mut candidate = earliest;
    for _ in 0..MAX_SEARCH_STEPS {
        let Some(end) = blackout_end(local_time(candidate, tz), wedding_date, rules) else {
            return candidate;
        };
        // Every step must move forward, whatever the time zone data says.
        candidate = instant_at_or_after(tz, end, candidate).max(candidate + TimeDelta::seconds(1));
    }
    candidate
}

/// The allowed slot closest to the recipient's preferred local weekday and hour, looking
/// from `earliest` up to `horizon_days` ahead. Slots are the starts of local hours (plus the
/// first allowed instant itself); the target is the first occurrence of the preferred
/// weekday and hour at or after `earliest`; ties go to the earlier slot. The horizon is
/// capped at 31 days. With no allowed slot in the horizon (say, a wedding blackout covers
/// it) this is [`first_allowed_instant`].
pub fn best_slot_within(
    earliest: DateTime<Utc>,
    tz: Tz,
    wedding_date: Option<NaiveDate>,
    rules: &SendRules,
    preferred: (Weekday, u32),
    horizon_days: u32,
) -> DateTime<Utc> {
    let first = first_allowed_instant(earliest, tz, wedding_date, rules);
    let horizon = TimeDelta::days(i64::from(horizon_days.min(MAX_HORIZON_DAYS)));
    let horizon_end = earliest
        .checked_add_signed(horizon)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let Some(target) = next_local_occurrence(earliest, tz, preferred) else {
        return first;
    };
    let in_horizon = |t: &DateTime<Utc>| earliest <= *t && *t <= horizon_end;
    let slots = local_hour_starts(tz, earliest, horizon_end)
        .into_iter()
        .chain(std::iter::once(first))
        .filter(in_horizon)
        .filter(|t| is_allowed(*t, tz, wedding_date, rules));
    slots.min_by_key(|t| ((*t - target).abs(), *t)).unwrap_or(first)
}

/// Where the search for an invitation's send time starts: `send_at` when it is later than
/// `now`, else `now`; with a preferred slot (`optimize`), the best allowed slot within
/// [`DEFAULT_HORIZON_DAYS`] of that. The quota then paces from here
/// ([`place`](super::quota::place) with [`first_allowed_instant`]).
pub fn send_candidate(
    now: DateTime<Utc>,
    send_at: Option<DateTime<Utc>>,
    optimize: Option<(Weekday, u32)>,
    tz: Tz,
    wedding_date: Option<NaiveDate>,
    rules: &SendRules,
) -> DateTime<Utc> {
    let candidate = send_at.filter(|t| *t > now).unwrap_or(now);
    match optimize {
        Some(preferred) => best_slot_within(
            candidate,
            tz,
            wedding_date,
            rules,
            preferred,
            DEFAULT_HORIZON_DAYS,
        ),
        None => candidate,
    }
}

/// A preferred slot as configured, `Weekday HH:00` (e.g. `Tue 14:00`; minutes must be 00,
/// as slots are whole local hours).
pub fn parse_preferred_slot(input: &str) -> Result<(Weekday, u32), String> {
    let bad = || {
        format!(
            "{:?} is not a weekday and whole hour like `Tue 14:00`",
            shown(input)
        )
    };
    let (day, time) = input.trim().split_once(' ').ok_or_else(bad)?;
    let weekday: Weekday = day.trim().parse().map_err(|_| bad())?;
    let (hour, minute) = time.trim().split_once(':').ok_or_else(bad)?;
    let hour: u32 = hour.parse().map_err(|_| bad())?;
    if minute != "00" || hour > 23 {
        return Err(bad());
    }
    Ok((weekday, hour))
}

fn local_time(at: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// `hours` after the local midnight that starts `date` (may run into the following days).
fn local_hour(date: NaiveDate, hours: u32) -> NaiveDateTime {
    date.and_time(NaiveTime::MIN) + TimeDelta::hours(i64::from(hours))
}

/// The local wall time at which a blackout containing `local` ends, or `None` if `local` is
/// in no blackout.
fn blackout_end(
    local: NaiveDateTime,
    wedding_date: Option<NaiveDate>,
    rules: &SendRules,
) -> Option<NaiveDateTime> {
    wedding_blackout_end(local, wedding_date, rules)
        .or_else(|| quiet_hours_end(local, rules))
        .or_else(|| saturday_blackout_end(local, rules))
}

/// Days around the recipient's wedding are blocked whole: they are busy, and an invitation
/// then is unwelcome.
fn wedding_blackout_end(
    local: NaiveDateTime,
    wedding_date: Option<NaiveDate>,
    rules: &SendRules,
) -> Option<NaiveDateTime> {
    let wedding = wedding_date?;
    let buffer = i64::from(rules.wedding_buffer_days);
    let days_from_wedding = local.date().signed_duration_since(wedding).num_days();
    if days_from_wedding.abs() > buffer {
        return None;
    }
    wedding
        .and_time(NaiveTime::MIN)
        .checked_add_signed(TimeDelta::days(buffer + 1))
}

/// Nobody wants a referral invitation at night.
fn quiet_hours_end(local: NaiveDateTime, rules: &SendRules) -> Option<NaiveDateTime> {
    let (start, end) = (rules.quiet_start.min(24), rules.quiet_end.min(24));
    let day = local.date();
    if start < end {
        let window = local_hour(day, start)..local_hour(day, end);
        window.contains(&local).then_some(window.end)
    } else if start > end {
        // Wraps midnight: the evening part ends tomorrow, the early-morning part today.
        if local >= local_hour(day, start) {
            Some(local_hour(day, 24 + end))
        } else if local < local_hour(day, end) {
            Some(local_hour(day, end))
        } else {
            None
        }
    } else {
        None
    }
}

/// Saturday is the wedding day: suppliers are working and couples are at weddings.
fn saturday_blackout_end(local: NaiveDateTime, rules: &SendRules) -> Option<NaiveDateTime> {
    if local.weekday() != Weekday::Sat {
        return None;
    }
    let day = local.date();
    let window = local_hour(day, rules.saturday_start.min(24))..local_hour(day, rules.saturday_end.min(24));
    window.contains(&local).then_some(window.end)
}

/// The first instant whose local wall time in `tz` is `local`, not before `not_before` where
/// `local` occurs twice; if `local` does not exist (clocks jumped over it), the instant the
/// jump happens, which is the first instant whose wall time is past `local`.
fn instant_at_or_after(tz: Tz, local: NaiveDateTime, not_before: DateTime<Utc>) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            let (first, second) = (a.min(b), a.max(b));
            if first >= not_before { first } else { second }
        }
        LocalResult::None => end_of_gap(tz, local),
    }
}

/// The instant a spring-forward gap containing the nonexistent wall time `local` ends.
///
/// Before the jump the zone's offset is `before`, after it `after` (> `before`). The instant
/// `local - after` still shows a wall time before `local`, and `local - before` one at or
/// after it, with exactly one transition between them; transitions fall on whole seconds,
/// so a binary search over whole seconds finds it exactly.
fn end_of_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let offset_at = |t: NaiveDateTime| {
        TimeDelta::seconds(i64::from(tz.offset_from_utc_datetime(&t).fix().local_minus_utc()))
    };
    let before = offset_at(local - TimeDelta::days(1));
    let after = offset_at(local + TimeDelta::days(1));
    let low = (local - after).and_utc();
    let high = (local - before).and_utc();
    let base = low - TimeDelta::nanoseconds(i64::from(low.timestamp_subsec_nanos()));
    let second = |k: i64| base + TimeDelta::seconds(k);
    let reached = |k: i64| local_time(second(k), tz) >= local;
    let (mut lo, mut hi) = (0, (high - base).num_seconds() + 1);
    if lo >= hi || reached(lo) || !reached(hi) {
        // Not the simple gap assumed above; `high` is still past the blackout's end.
        return high;
    }
    while hi - lo > 1 {
        let middle = lo + (hi - lo) / 2;
        if reached(middle) {
            hi = middle;
        } else {
            lo = middle;
        }
    }
    second(hi)
}

/// The first instant at or after `from` showing the local weekday and hour `preferred`;
/// `None` if the hour is not a valid hour of the day.
fn next_local_occurrence(
    from: DateTime<Utc>,
    tz: Tz,
    (weekday, hour): (Weekday, u32),
) -> Option<DateTime<Utc>> {
    let time = NaiveTime::from_hms_opt(hour, 0, 0)?;
    let first_date = local_time(from, tz).date();
    first_date
        .iter_days()
        .take(15)
        .filter(|date| date.weekday() == weekday)
        .map(|date| instant_at_or_after(tz, date.and_time(time), from))
        .find(|t| *t >= from)
}

/// Every instant in `from..=to` at which a local hour starts (both occurrences of a repeated
/// hour; none for an hour the clocks skip).
fn local_hour_starts(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let (first_date, last_date) = (local_time(from, tz).date(), local_time(to, tz).date());
    let mut starts = Vec::new();
    for date in first_date.iter_days().take_while(|d| *d <= last_date) {
        for hour in 0..24 {
            let wall = local_hour(date, hour);
            let instants: Vec<DateTime<Utc>> = match tz.from_local_datetime(&wall) {
                LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
                LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
                LocalResult::None => Vec::new(),
            };
            starts.extend(instants.into_iter().filter(|t| from <= *t && *t <= to));
        }
    }
    starts.sort();
    starts
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;
    use chrono_tz::America::{Havana, New_York, Santiago};
    use chrono_tz::Asia::Kolkata;
    use chrono_tz::Europe::London;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn first(earliest: &str, tz: Tz, wedding: Option<&str>) -> DateTime<Utc> {
        first_allowed_instant(utc(earliest), tz, wedding.map(date), &SendRules::default())
    }

    fn no_quiet_hours() -> SendRules {
        SendRules {
            quiet_start: 0,
            quiet_end: 0,
            ..SendRules::default()
        }
    }

    /// Regression (fuzz target `send_time`): the latest sendAt a Timestamp can carry
    /// (9999-12-31T23:59:59.999999Z, as `from_ts` reads it) schedules in every zone, with a
    /// wedding that week and with `optimize`, without a panic and outside every blackout.
    #[test]
    fn the_last_representable_send_at_schedules_in_every_zone() {
        let now = utc("2026-01-05T12:00:00Z");
        let last = utc("9999-12-31T23:59:59.999999Z");
        let rules = SendRules::default();
        for tz in chrono_tz::TZ_VARIANTS {
            for wedding in [None, Some(date("9999-12-30"))] {
                for optimize in [None, Some(DEFAULT_PREFERRED_SLOT)] {
                    let at = send_candidate(now, Some(last), optimize, tz, wedding, &rules);
                    let at = first_allowed_instant(at, tz, wedding, &rules);
                    assert!(at >= last, "{tz}");
                    assert!(is_allowed(at, tz, wedding, &rules), "{tz} {at}");
                }
            }
        }
    }

    #[test]
    fn an_allowed_instant_is_kept_to_the_nanosecond() {
        // Tuesday 2024-06-11 11:17:30.25 BST.
        let t = "2024-06-11T10:17:30.250Z";
        assert_eq!(first(t, London, None), utc(t));
    }

    #[test]
    fn quiet_hours_end_at_eight_local() {
        // Tue 23:30 BST -> Wed 08:00 BST.
        assert_eq!(
            first("2024-06-11T22:30:00Z", London, None),
            utc("2024-06-12T07:00:00Z")
        );
        // Wed 07:59:59 BST -> 08:00 BST.
        assert_eq!(
            first("2024-06-12T06:59:59Z", London, None),
            utc("2024-06-12T07:00:00Z")
        );
        // 22:00 sharp is quiet, 21:59:59 is not.
        assert_eq!(
            first("2024-06-11T21:00:00Z", London, None),
            utc("2024-06-12T07:00:00Z")
        );
        assert_eq!(
            first("2024-06-11T20:59:59Z", London, None),
            utc("2024-06-11T20:59:59Z")
        );
        // Winter: GMT, so local and UTC agree.
        assert_eq!(
            first("2024-01-09T23:00:00Z", London, None),
            utc("2024-01-10T08:00:00Z")
        );
    }

    #[test]
    fn saturday_daytime_is_blocked() {
        // Sat 2024-06-15 10:00 BST -> 18:00 BST.
        assert_eq!(
            first("2024-06-15T09:00:00Z", London, None),
            utc("2024-06-15T17:00:00Z")
        );
        // Sat 08:30 BST is before the blackout.
        assert_eq!(
            first("2024-06-15T07:30:00Z", London, None),
            utc("2024-06-15T07:30:00Z")
        );
        // Sat 17:59:59 BST -> 18:00 BST.
        assert_eq!(
            first("2024-06-15T16:59:59Z", London, None),
            utc("2024-06-15T17:00:00Z")
        );
        // Sat 22:00 BST -> Sun 08:00 BST.
        assert_eq!(
            first("2024-06-15T21:00:00Z", London, None),
            utc("2024-06-16T07:00:00Z")
        );
        // Fri 23:00 BST -> Sat 08:00 BST, an allowed hour before the Saturday blackout.
        assert_eq!(
            first("2024-06-14T22:00:00Z", London, None),
            utc("2024-06-15T07:00:00Z")
        );
    }

    #[test]
    fn blackouts_follow_the_recipients_clock() {
        // 06:00 UTC on Sat 2024-06-15 is 07:00 in London (quiet) and 02:00 in New York (quiet).
        assert_eq!(
            first("2024-06-15T06:00:00Z", London, None),
            utc("2024-06-15T07:00:00Z")
        );
        assert_eq!(
            first("2024-06-15T06:00:00Z", New_York, None),
            utc("2024-06-15T12:00:00Z")
        );
        // Kolkata is UTC+05:30: 08:00 IST is 02:30 UTC.
        assert_eq!(
            first("2024-06-11T20:00:00Z", Kolkata, None),
            utc("2024-06-12T02:30:00Z")
        );
    }

    #[test]
    fn wedding_days_plus_minus_three_are_blocked_whole() {
        let wedding = Some("2024-06-20"); // Thursday
        // Mon 17th (wedding - 3) 10:00 BST -> Mon 24th 08:00 BST.
        assert_eq!(
            first("2024-06-17T09:00:00Z", London, wedding),
            utc("2024-06-24T07:00:00Z")
        );
        // Sun 16th (wedding - 4) is not blocked.
        assert_eq!(
            first("2024-06-16T09:00:00Z", London, wedding),
            utc("2024-06-16T09:00:00Z")
        );
        // Sun 23rd (wedding + 3) 20:00 BST is still blocked.
        assert_eq!(
            first("2024-06-23T19:00:00Z", London, wedding),
            utc("2024-06-24T07:00:00Z")
        );
        // A past wedding changes nothing.
        assert_eq!(
            first("2024-06-11T10:00:00Z", London, Some("2023-06-12")),
            utc("2024-06-11T10:00:00Z")
        );
    }

    #[test]
    fn a_wedding_blackout_ending_on_saturday_leaves_its_early_morning() {
        // Wedding Tue 18th: blocked 15th..=21st; Sat 22nd 08:00 BST is allowed.
        assert_eq!(
            first("2024-06-15T12:00:00Z", London, Some("2024-06-18")),
            utc("2024-06-22T07:00:00Z")
        );
    }

    #[test]
    fn the_wedding_day_is_a_local_date() {
        // 23:30 UTC on Sun 16th is 00:30 BST on Mon 17th in London: wedding - 3, blocked.
        assert_eq!(
            first("2024-06-16T23:30:00Z", London, Some("2024-06-20")),
            utc("2024-06-24T07:00:00Z")
        );
        // In New York it is still the evening of the 16th, 19:30 EDT: allowed.
        assert_eq!(
            first("2024-06-16T23:30:00Z", New_York, Some("2024-06-20")),
            utc("2024-06-16T23:30:00Z")
        );
    }

    #[test]
    fn london_spring_forward() {
        // Sat 2024-03-30 23:30 GMT; clocks go 01:00 GMT -> 02:00 BST on Sunday;
        // quiet hours end at 08:00 BST = 07:00 UTC.
        assert_eq!(
            first("2024-03-30T23:30:00Z", London, None),
            utc("2024-03-31T07:00:00Z")
        );
        // Sunday 00:59 GMT, just before the jump.
        assert_eq!(
            first("2024-03-31T00:59:00Z", London, None),
            utc("2024-03-31T07:00:00Z")
        );
    }

    #[test]
    fn london_fall_back() {
        // Sat 2024-10-26 22:30 BST; clocks go 02:00 BST -> 01:00 GMT; 08:00 GMT = 08:00 UTC.
        assert_eq!(
            first("2024-10-26T21:30:00Z", London, None),
            utc("2024-10-27T08:00:00Z")
        );
        // During the repeated hour (second 01:30, GMT).
        assert_eq!(
            first("2024-10-27T01:30:00Z", London, None),
            utc("2024-10-27T08:00:00Z")
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // Sat 2024-03-09 22:00 EST; 02:00 EST -> 03:00 EDT; 08:00 EDT = 12:00 UTC.
        assert_eq!(
            first("2024-03-10T03:00:00Z", New_York, None),
            utc("2024-03-10T12:00:00Z")
        );
        // Sat 2024-11-02 22:00 EDT; 02:00 EDT -> 01:00 EST; 08:00 EST = 13:00 UTC.
        assert_eq!(
            first("2024-11-03T02:00:00Z", New_York, None),
            utc("2024-11-03T13:00:00Z")
        );
    }

    #[test]
    fn a_blackout_ending_in_a_gap_ends_when_the_clocks_jump() {
        // Quiet hours until 02:30, which New York skips on 2024-03-10 (02:00 EST -> 03:00 EDT
        // at 07:00 UTC): the first instant past 02:30 local is the jump itself.
        let rules = SendRules {
            quiet_start: 22,
            quiet_end: 2,
            ..SendRules::default()
        };
        let got = first_allowed_instant(utc("2024-03-10T06:30:00Z"), New_York, None, &rules);
        assert_eq!(got, utc("2024-03-10T07:00:00Z"));
        assert_eq!(got.with_timezone(&New_York).hour(), 3);
    }

    #[test]
    fn a_blackout_ending_at_a_skipped_midnight_ends_when_the_clocks_jump() {
        // Santiago skips 2024-09-08 00:00-01:00 (-04 -> -03 at 04:00 UTC). A wedding on
        // Wed 4th blocks 1st..=7th, ending at that nonexistent midnight.
        let got = first_allowed_instant(
            utc("2024-09-02T15:00:00Z"),
            Santiago,
            Some(date("2024-09-04")),
            &no_quiet_hours(),
        );
        assert_eq!(got, utc("2024-09-08T04:00:00Z"));
        assert_eq!(got.with_timezone(&Santiago).hour(), 1);
        // With quiet hours, on to 08:00 -03.
        assert_eq!(
            first("2024-09-02T15:00:00Z", Santiago, Some("2024-09-04")),
            utc("2024-09-08T11:00:00Z")
        );
        // Havana skips 2024-03-10 00:00-01:00 (-05 -> -04 at 05:00 UTC).
        let got = first_allowed_instant(
            utc("2024-03-08T15:00:00Z"),
            Havana,
            Some(date("2024-03-06")),
            &no_quiet_hours(),
        );
        assert_eq!(got, utc("2024-03-10T05:00:00Z"));
    }

    #[test]
    fn a_repeated_local_time_maps_to_its_first_occurrence_not_before_the_candidate() {
        // London 2024-10-27 01:30 happens at 00:30 UTC (BST) and 01:30 UTC (GMT).
        let wall = date("2024-10-27").and_hms_opt(1, 30, 0).unwrap();
        assert_eq!(
            instant_at_or_after(London, wall, utc("2024-10-27T00:00:00Z")),
            utc("2024-10-27T00:30:00Z")
        );
        assert_eq!(
            instant_at_or_after(London, wall, utc("2024-10-27T00:45:00Z")),
            utc("2024-10-27T01:30:00Z")
        );
        // Quiet hours ending at 01:00, which London shows twice: first occurrence.
        let rules = SendRules {
            quiet_end: 1,
            ..SendRules::default()
        };
        assert_eq!(
            first_allowed_instant(utc("2024-10-26T21:30:00Z"), London, None, &rules),
            utc("2024-10-27T00:00:00Z")
        );
    }

    #[test]
    fn gap_end_is_found_to_the_second() {
        let wall = date("2024-03-31").and_hms_opt(1, 17, 3).unwrap();
        assert_eq!(end_of_gap(London, wall), utc("2024-03-31T01:00:00Z"));
    }

    /// For every starting point, the answer is allowed, not before the start, and minimal:
    /// the second before it is blocked (or before the start).
    #[test]
    fn answers_are_allowed_and_minimal_all_year_in_several_zones() {
        let rules = SendRules::default();
        let wedding = Some(date("2024-07-06"));
        for tz in [London, New_York, Santiago, Kolkata] {
            let mut earliest = utc("2024-01-01T00:00:00Z");
            while earliest < utc("2025-01-01T00:00:00Z") {
                let got = first_allowed_instant(earliest, tz, wedding, &rules);
                assert!(got >= earliest);
                assert!(is_allowed(got, tz, wedding, &rules), "{tz} {earliest} -> {got}");
                let just_before = got - TimeDelta::seconds(1);
                assert!(
                    got == earliest || !is_allowed(just_before, tz, wedding, &rules),
                    "{tz} {earliest} -> {got} is not the first"
                );
                assert!(got - earliest < TimeDelta::days(10), "{tz} {earliest} -> {got}");
                earliest += TimeDelta::minutes(37);
            }
        }
    }

    #[test]
    fn impossible_rules_still_terminate() {
        let rules = SendRules {
            quiet_start: 0,
            quiet_end: 24,
            ..SendRules::default()
        };
        assert!(rules.validate().is_err());
        let start = utc("2024-06-11T10:00:00Z");
        let got = first_allowed_instant(start, London, None, &rules);
        assert!(got > start + TimeDelta::days(400));
    }

    #[test]
    fn validate_accepts_defaults_and_names_bad_settings() {
        assert_eq!(SendRules::default().validate(), Ok(()));
        assert_eq!(no_quiet_hours().validate(), Ok(()));
        let late = SendRules {
            saturday_end: 25,
            ..SendRules::default()
        };
        assert_eq!(
            late.validate().unwrap_err().to_string(),
            "saturday_end must be an hour from 0 to 24, got 25"
        );
        let all_night = SendRules {
            quiet_start: 8,
            quiet_end: 8,
            ..SendRules::default()
        };
        assert_eq!(all_night.validate(), Ok(()), "an empty window blocks nothing");
        let wrap_all_day = SendRules {
            quiet_start: 24,
            quiet_end: 24,
            ..SendRules::default()
        };
        assert_eq!(wrap_all_day.validate(), Ok(()));
        let long_buffer = SendRules {
            wedding_buffer_days: 366,
            ..SendRules::default()
        };
        assert!(long_buffer.validate().is_err());
    }

    #[test]
    fn quiet_hours_need_not_wrap_midnight() {
        let rules = SendRules {
            quiet_start: 12,
            quiet_end: 14,
            ..SendRules::default()
        };
        assert_eq!(
            first_allowed_instant(utc("2024-01-09T12:30:00Z"), London, None, &rules),
            utc("2024-01-09T14:00:00Z")
        );
        assert_eq!(
            first_allowed_instant(utc("2024-01-09T23:30:00Z"), London, None, &rules),
            utc("2024-01-09T23:30:00Z")
        );
    }

    #[test]
    fn parse_timezone_defaults_to_london() {
        assert_eq!(parse_timezone(""), Ok(London));
        assert_eq!(parse_timezone("  "), Ok(London));
        assert_eq!(parse_timezone("America/New_York"), Ok(New_York));
        assert_eq!(parse_timezone(" Asia/Kolkata "), Ok(Kolkata));
        assert_eq!(parse_timezone("UTC"), Ok(chrono_tz::UTC));
        assert_eq!(
            parse_timezone("Mars/Olympus").unwrap_err().to_string(),
            "unknown time zone `Mars/Olympus`; use an IANA name such as Europe/London"
        );
        assert!(parse_timezone("+01:00").is_err());
    }

    #[test]
    fn parse_wedding_date_is_strict() {
        assert_eq!(parse_wedding_date(""), Ok(None));
        assert_eq!(parse_wedding_date("2025-06-21"), Ok(Some(date("2025-06-21"))));
        assert_eq!(parse_wedding_date(" 2028-02-29 "), Ok(Some(date("2028-02-29"))));
        for bad in [
            "2025-02-29",
            "2025-13-01",
            "2025-6-1",
            "21/06/2025",
            "2025-06-21T00:00:00Z",
            "+2025-06-2",
            "tomorrow",
        ] {
            assert_eq!(
                parse_wedding_date(bad),
                Err(TimingError::BadWeddingDate(bad.into())),
                "{bad}"
            );
        }
    }

    fn best(earliest: &str, wedding: Option<&str>, preferred: (Weekday, u32)) -> DateTime<Utc> {
        best_slot_within(
            utc(earliest),
            London,
            wedding.map(date),
            &SendRules::default(),
            preferred,
            DEFAULT_HORIZON_DAYS,
        )
    }

    #[test]
    fn preferred_slots_parse_as_weekday_and_whole_hour() {
        assert_eq!(parse_preferred_slot("Tue 14:00"), Ok(DEFAULT_PREFERRED_SLOT));
        assert_eq!(parse_preferred_slot(" thursday 9:00 "), Ok((Weekday::Thu, 9)));
        for bad in ["", "Tue", "Tue 14", "Tue 14:30", "Tue 24:00", "Someday 10:00"] {
            assert!(parse_preferred_slot(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn best_slot_is_the_preferred_hour_when_allowed() {
        // Mon 2024-06-10 10:00 BST -> Tue 14:00 BST.
        assert_eq!(
            best("2024-06-10T09:00:00Z", None, DEFAULT_PREFERRED_SLOT),
            utc("2024-06-11T13:00:00Z")
        );
        // Already past Tuesday 14:00: next week's, within the 7-day horizon.
        assert_eq!(
            best("2024-06-11T14:00:00Z", None, DEFAULT_PREFERRED_SLOT),
            utc("2024-06-18T13:00:00Z")
        );
        // Exactly at it.
        assert_eq!(
            best("2024-06-11T13:00:00Z", None, DEFAULT_PREFERRED_SLOT),
            utc("2024-06-11T13:00:00Z")
        );
    }

    #[test]
    fn best_slot_moves_to_the_nearest_allowed_hour() {
        // Tue 23:00 is quiet: Tue 21:00 (2 h before) beats Wed 08:00 (9 h after).
        assert_eq!(
            best("2024-06-10T09:00:00Z", None, (Weekday::Tue, 23)),
            utc("2024-06-11T20:00:00Z")
        );
        // Sat 13:00 is blocked: Sat 08:00 and Sat 18:00 are both 5 h away; the earlier wins.
        assert_eq!(
            best("2024-06-10T09:00:00Z", None, (Weekday::Sat, 13)),
            utc("2024-06-15T07:00:00Z")
        );
        // Wedding Fri 14th blocks 11th..=17th: the last allowed hour before is Mon 21:00.
        assert_eq!(
            best("2024-06-10T08:00:00Z", Some("2024-06-14"), DEFAULT_PREFERRED_SLOT),
            utc("2024-06-10T20:00:00Z")
        );
    }

    #[test]
    fn best_slot_falls_back_to_the_first_allowed_instant() {
        // A wedding blackout covering the whole horizon.
        let rules = SendRules {
            wedding_buffer_days: 10,
            ..SendRules::default()
        };
        let got = best_slot_within(
            utc("2024-06-10T09:00:00Z"),
            London,
            Some(date("2024-06-14")),
            &rules,
            DEFAULT_PREFERRED_SLOT,
            DEFAULT_HORIZON_DAYS,
        );
        assert_eq!(got, utc("2024-06-25T07:00:00Z"));
        // An hour that does not exist.
        assert_eq!(
            best("2024-06-10T09:00:00Z", None, (Weekday::Tue, 24)),
            utc("2024-06-10T09:00:00Z")
        );
    }

    #[test]
    fn best_slot_with_a_short_horizon_takes_the_closest_slot_it_can_reach() {
        // Horizon of 1 day from Mon 10:00 BST: Tue 14:00 is 28 h away; the closest reachable
        // allowed slot is Tue 10:00 (the horizon's end).
        let got = best_slot_within(
            utc("2024-06-10T09:00:00Z"),
            London,
            None,
            &SendRules::default(),
            DEFAULT_PREFERRED_SLOT,
            1,
        );
        assert_eq!(got, utc("2024-06-11T09:00:00Z"));
    }

    #[test]
    fn best_slot_across_the_autumn_change() {
        // From Sat 2024-10-26 12:00 BST, Tuesday 14:00 is GMT: 14:00 UTC.
        assert_eq!(
            best("2024-10-26T11:00:00Z", None, DEFAULT_PREFERRED_SLOT),
            utc("2024-10-29T14:00:00Z")
        );
    }

    #[test]
    fn local_hour_starts_skip_the_gap_and_repeat_the_overlap() {
        let spring = local_hour_starts(London, utc("2024-03-31T00:00:00Z"), utc("2024-03-31T02:00:00Z"));
        // 00:00 GMT (00:00Z), then 02:00 BST (01:00Z), 03:00 BST (02:00Z); 01:00 never happens.
        assert_eq!(
            spring,
            [
                utc("2024-03-31T00:00:00Z"),
                utc("2024-03-31T01:00:00Z"),
                utc("2024-03-31T02:00:00Z")
            ]
        );
        let autumn = local_hour_starts(London, utc("2024-10-27T00:00:00Z"), utc("2024-10-27T02:00:00Z"));
        // 01:00 BST (00:00Z), 01:00 GMT (01:00Z), 02:00 GMT (02:00Z).
        assert_eq!(
            autumn,
            [
                utc("2024-10-27T00:00:00Z"),
                utc("2024-10-27T01:00:00Z"),
                utc("2024-10-27T02:00:00Z")
            ]
        );
    }
}
