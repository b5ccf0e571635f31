//! The rules every string (and money value) taken from a request must pass, one function per
//! rule, so each service says *which* rule a field follows instead of re-deciding caps and
//! character sets. Each adds a field violation naming the JSON field (a 400) and never panics.
//!
//! Control characters are refused everywhere: a CR/LF in a name reaches mail headers, log
//! lines and CSV exports, and a NUL truncates C strings downstream. Multi-line text (notes,
//! messages) may hold `\n`, `\r\n` and `\t` only.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::Violations;

/// Names of people, businesses, programs and campaigns.
pub const NAME_MAX: usize = 200;
/// Free text: invitation messages, case notes, descriptions.
pub const TEXT_MAX: usize = 2_000;
/// utm_source / utm_medium / utm_campaign values.
pub const UTM_MAX: usize = 200;
/// Absolute URLs (landing pages, webhook targets).
pub const URL_MAX: usize = 2_048;
/// Identifiers chosen by callers (user ids, referrer ids, campaign ids, click ids).
pub const ID_MAX: usize = 128;
/// RFC 5321's limit on a forward path.
pub const EMAIL_MAX: usize = 254;
/// E.164 is 15 digits; room for the formatting people type.
pub const PHONE_MAX: usize = 32;
/// Browser user agents (clipped rather than refused: they are not chosen by people).
pub const USER_AGENT_MAX: usize = 512;

/// A character that must never be stored from input: C0, DEL, C1, and the Unicode line and
/// paragraph separators (they break lines in mail headers and logs just like CR/LF).
pub fn is_forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// True when `s` holds a character no single-line field may hold.
pub fn has_control(s: &str) -> bool {
    s.chars().any(is_forbidden)
}

fn too_long(v: &mut Violations, value: &str, max: usize, field: &str) -> bool {
    // Bytes bound the work before chars are counted (4 bytes per char at most).
    if value.len() > max * 4 || value.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
        return true;
    }
    false
}

/// An optional single-line value (names, subjects, codes): at most `max` characters, no
/// control characters.
pub fn line(v: &mut Violations, value: &str, max: usize, field: &str) {
    if !too_long(v, value, max, field) && has_control(value) {
        v.add(field, "must not contain control characters or line breaks");
    }
}

/// An optional multi-line value (notes, messages): at most `max` characters; line breaks and
/// tabs are allowed, other control characters are not.
pub fn text(v: &mut Violations, value: &str, max: usize, field: &str) {
    if !too_long(v, value, max, field)
        && value
            .chars()
            .any(|c| is_forbidden(c) && !matches!(c, '\n' | '\r' | '\t'))
    {
        v.add(
            field,
            "must not contain control characters other than line breaks and tabs",
        );
    }
}

/// A required identifier: not blank, at most [`ID_MAX`] characters, single line.
pub fn id(v: &mut Violations, value: &str, field: &str) {
    if value.trim().is_empty() {
        v.add(field, "is required");
    } else {
        line(v, value, ID_MAX, field);
    }
}

/// An optional identifier: empty, or as [`id`].
pub fn optional_id(v: &mut Violations, value: &str, field: &str) {
    if !value.is_empty() {
        id(v, value, field);
    }
}

/// An absolute http(s) URL with a host, at most [`URL_MAX`] characters. Returns the parsed
/// URL when it passed.
pub fn url(v: &mut Violations, value: &str, field: &str) -> Option<url::Url> {
    if too_long(v, value, URL_MAX, field) {
        return None;
    }
    if has_control(value) {
        v.add(field, "must not contain control characters");
        return None;
    }
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        _ => {
            v.add(field, "must be an absolute http(s) URL");
            None
        }
    }
}

/// Printable text clipped to `max` characters: for values we record but nobody chooses
/// (user agents), where refusing would lose a real click.
pub fn printable(value: &str, max: usize) -> String {
    value.chars().filter(|c| !is_forbidden(*c)).take(max).collect()
}

/// An ISO 4217 currency code (upper case, as the standard spells it).
pub fn is_currency(code: &str) -> bool {
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && iso_currency::Currency::from_code(code).is_some()
}

/// The largest money amount accepted from input by default (10^11 minor units: a billion
/// pounds), so any realistic number of amounts sums without overflow.
pub const DEFAULT_MAX_AMOUNT_MINOR: i64 = 100_000_000_000;

/// A positive amount of money: `0 < amount_minor <= max` and an ISO 4217 currency.
/// `prefix` is the JSON path of the money message (e.g. `value`).
pub fn money(v: &mut Violations, amount_minor: i64, currency: &str, max: i64, prefix: &str) {
    if amount_minor <= 0 || amount_minor > max {
        v.add(
            &format!("{prefix}.amountMinor"),
            format!("must be more than 0 and at most {max}"),
        );
    }
    if !is_currency(currency) {
        v.add(&format!("{prefix}.currency"), "must be an ISO 4217 code like GBP");
    }
}

/// Clock skew tolerated for instants that must not be in the future (`occurredAt`).
pub const FUTURE_SKEW: TimeDelta = TimeDelta::minutes(5);
/// How far back a backfilled `occurredAt` may go: ten years of history is plenty for a
/// marketplace's imports, and keeps derived instants (expiries, windows) far from the
/// storable range's edges.
pub const BACKFILL_MAX_AGE: TimeDelta = TimeDelta::days(3_660);

/// A past instant (a backfill): not older than [`BACKFILL_MAX_AGE`], not later than now plus
/// [`FUTURE_SKEW`].
pub fn past_instant(v: &mut Violations, at: DateTime<Utc>, now: DateTime<Utc>, field: &str) {
    if at > now + FUTURE_SKEW {
        v.add(field, "must not be in the future");
    } else if at < now - BACKFILL_MAX_AGE {
        v.add(
            field,
            format!("must be at most {} days in the past", BACKFILL_MAX_AGE.num_days()),
        );
    }
}

/// An instant inside `[from, to]` (a period bound such as a campaign's start).
pub fn instant_between(
    v: &mut Violations,
    at: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    field: &str,
) {
    if at < from || at > to {
        v.add(
            field,
            format!(
                "must be between {} and {}",
                from.to_rfc3339_opts(SecondsFormat::Secs, true),
                to.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: impl FnOnce(&mut Violations)) -> Vec<String> {
        let mut v = Violations::default();
        f(&mut v);
        v.0.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn lines_refuse_control_characters_and_length() {
        assert!(fields(|v| line(v, "Ana Müller", 200, "name")).is_empty());
        for bad in [
            "a\r\nBcc: x@y",
            "a\nb",
            "a\u{0}b",
            "a\u{7f}",
            "a\u{85}b",
            "a\u{2028}b",
            "\t",
        ] {
            assert_eq!(fields(|v| line(v, bad, 200, "name")), ["name"], "{bad:?}");
        }
        assert_eq!(fields(|v| line(v, &"é".repeat(201), 200, "name")), ["name"]);
        assert!(fields(|v| line(v, &"é".repeat(200), 200, "name")).is_empty());
    }

    #[test]
    fn text_keeps_line_breaks_but_not_other_controls() {
        assert!(fields(|v| text(v, "Hi,\r\n\tsee you\n", 2000, "note")).is_empty());
        assert_eq!(fields(|v| text(v, "a\u{1b}[31m", 2000, "note")), ["note"]);
        assert_eq!(fields(|v| text(v, &"x".repeat(2001), 2000, "note")), ["note"]);
    }

    #[test]
    fn ids_are_required_bounded_and_single_line() {
        assert_eq!(fields(|v| id(v, " ", "userId")), ["userId"]);
        assert_eq!(fields(|v| id(v, &"u".repeat(129), "userId")), ["userId"]);
        assert_eq!(fields(|v| id(v, "u\n1", "userId")), ["userId"]);
        assert!(fields(|v| id(v, "user-1", "userId")).is_empty());
        assert!(fields(|v| optional_id(v, "", "clickId")).is_empty());
    }

    #[test]
    fn urls_are_bounded_absolute_http() {
        assert!(
            fields(|v| {
                url(v, "https://example.com/a?b#c", "landingUrl");
            })
            .is_empty()
        );
        let huge = format!("https://example.com/{}", "a".repeat(900_000));
        for bad in [
            huge.as_str(),
            "ftp://x.com",
            "/relative",
            "https://x.com/\r\nLocation: y",
        ] {
            assert_eq!(
                fields(|v| {
                    url(v, bad, "landingUrl");
                }),
                ["landingUrl"]
            );
        }
    }

    #[test]
    fn money_is_positive_bounded_and_iso() {
        let max = DEFAULT_MAX_AMOUNT_MINOR;
        assert!(fields(|v| money(v, 2500, "GBP", max, "value")).is_empty());
        assert!(fields(|v| money(v, max, "EUR", max, "value")).is_empty());
        for amount in [0, -1, max + 1, i64::MAX, i64::MIN] {
            assert_eq!(
                fields(|v| money(v, amount, "GBP", max, "value")),
                ["value.amountMinor"]
            );
        }
        for currency in ["gbp", "XYZ", "", "GBPX", "£££"] {
            assert_eq!(
                fields(|v| money(v, 1, currency, max, "value")),
                ["value.currency"]
            );
        }
    }

    #[test]
    fn backfills_are_past_and_bounded() {
        let now: DateTime<Utc> = "2026-12-06T12:00:00Z".parse().unwrap();
        let ok = |at: DateTime<Utc>| fields(|v| past_instant(v, at, now, "occurredAt")).is_empty();
        assert!(ok(now) && ok(now + TimeDelta::minutes(4)) && ok(now - TimeDelta::days(3_000)));
        assert!(!ok(now + TimeDelta::minutes(6)));
        assert!(!ok(now - TimeDelta::days(3_661)));
    }

    #[test]
    fn printable_clips_and_drops_controls() {
        assert_eq!(printable("Mozilla/5.0\r\n(X)", 512), "Mozilla/5.0(X)");
        assert_eq!(printable(&"a".repeat(600), 512).len(), 512);
    }
}
