//! Money in every currency (pure): dated exchange rates as exact decimals, conversion of
//! minor units between currencies of different exponents, and sums that cannot overflow.
//!
//! A rate is "units of the reporting currency per unit of the other", kept as the decimal
//! string the admin typed and parsed into an integer mantissa and a scale. Converting
//! `amount` minor units of a currency with exponent `e_from` into one with exponent `e_to`
//! is `amount × rate × 10^e_to / 10^e_from`, computed in i128 and rounded half away from
//! zero once, at the end: no floating point anywhere on the money path.

use chrono::NaiveDate;

/// Digits a rate may have before its decimal point (rates below 10^9).
pub const RATE_INT_DIGITS: usize = 9;
/// Digits a rate may have after its decimal point.
pub const RATE_FRACTION_DIGITS: usize = 10;
/// The longest rate string (digits, point).
pub const RATE_MAX_CHARS: usize = RATE_INT_DIGITS + RATE_FRACTION_DIGITS + 1;
/// How far a revenue rollup row may grow before the next amount goes to a new row: well
/// inside BIGINT, so adding any amount (at most 10^11) or taking one back never overflows.
pub const ROW_LIMIT: i64 = 4_000_000_000_000_000_000;
/// Rollup rows are summed as `SUM(x / SPLIT)` and `SUM(x % SPLIT)`, each of which stays in
/// BIGINT for any realistic number of rows, and recombined here in i128.
pub const SPLIT: i64 = 1_000_000_000;

/// An exact positive rate: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    mantissa: i128,
    scale: u32,
}

impl Rate {
    /// The identity rate (the reporting currency itself).
    pub const ONE: Rate = Rate {
        mantissa: 1,
        scale: 0,
    };

    /// A plain positive decimal: digits, at most one point, at most [`RATE_INT_DIGITS`]
    /// before it and [`RATE_FRACTION_DIGITS`] after it; no sign, exponent or spaces.
    pub fn parse(s: &str) -> Result<Rate, &'static str> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("must be a positive decimal number such as 1.1642");
        }
        if s.ends_with('.') {
            return Err("must have digits after its decimal point");
        }
        if int.trim_start_matches('0').len() > RATE_INT_DIGITS {
            return Err("must be below 1000000000");
        }
        if frac.len() > RATE_FRACTION_DIGITS {
            return Err("may have at most 10 digits after the decimal point");
        }
        // At most 9 + 10 significant digits (leading zeros add nothing): fits i128.
        let digits = format!("{}{frac}", int.trim_start_matches('0'));
        let mantissa = if digits.is_empty() {
            0
        } else {
            digits.parse::<i128>().map_err(|_| "is not a number")?
        };
        if mantissa == 0 {
            return Err("must be greater than zero");
        }
        Ok(Rate {
            mantissa,
            scale: frac.len() as u32,
        })
    }

    /// The canonical text of the rate (no leading zeros, no trailing fractional zeros).
    pub fn to_text(self) -> String {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        let (int, frac) = if digits.len() > scale {
            digits.split_at(digits.len() - scale)
        } else {
            ("0", "")
        };
        let frac = if digits.len() > scale {
            frac.to_string()
        } else {
            format!("{}{digits}", "0".repeat(scale - digits.len()))
        };
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    }
}

/// The minor-unit exponent of an ISO 4217 currency (GBP 2, JPY 0, BHD 3); 2 when the
/// standard gives none (precious metals, funds).
pub fn exponent(currency: &str) -> u32 {
    iso_currency::Currency::from_code(currency)
        .and_then(|c| c.exponent())
        .map_or(2, u32::from)
}

/// `amount` minor units of `from` in minor units of `to` at `rate`, rounded half away from
/// zero. Saturates (never wraps, never panics) only beyond i128, which no stored data
/// reaches.
pub fn convert(amount: i128, from: &str, to: &str, rate: Rate) -> i128 {
    let (e_from, e_to) = (exponent(from), exponent(to));
    // amount × num / den with num = mantissa × 10^e_to (< 10^23), den = 10^(scale + e_from)
    // (<= 10^14 for the currencies ISO lists).
    let num = rate.mantissa.saturating_mul(10i128.saturating_pow(e_to));
    let den = 10i128.saturating_pow(rate.scale + e_from);
    let (whole, rest) = (amount / den, amount % den);
    let part = rest.saturating_mul(num);
    let (q, r) = (part / den, part % den);
    // Half away from zero on what is left over.
    let round = if r.unsigned_abs() * 2 >= den.unsigned_abs() {
        r.signum()
    } else {
        0
    };
    whole.saturating_mul(num).saturating_add(q).saturating_add(round)
}

/// A summed amount for a wire field (int64): clamped, never wrapped.
pub fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Recombines a `SUM(x / SPLIT)`, `SUM(x % SPLIT)` pair into the exact sum.
pub fn recombine(high: i64, low: i64) -> i128 {
    i128::from(high) * i128::from(SPLIT) + i128::from(low)
}

/// Whether `amount` may still be added to a rollup row holding `current`.
pub fn fits_row(current: i64, amount: i64) -> bool {
    current.checked_add(amount).is_some_and(|s| s.abs() <= ROW_LIMIT)
}

/// A rate's `effectiveFrom`: a UTC day `YYYY-MM-DD` from 1970 to 2100, as days since 1970.
pub fn parse_day(s: &str) -> Result<i64, &'static str> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date like 2026-12-01")?;
    if s.len() != 10 {
        return Err("must be a date like 2026-12-01");
    }
    // Both constant, valid dates.
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let last = NaiveDate::from_ymd_opt(2100, 12, 31).unwrap_or_default();
    if d < epoch || d > last {
        return Err("must be between 1970-01-01 and 2100-12-31");
    }
    Ok((d - epoch).num_days())
}

/// A day since 1970 as `YYYY-MM-DD`.
pub fn day_text(day: i64) -> String {
    chrono::DateTime::from_timestamp(day.saturating_mul(crate::domain::DAY_SECONDS), 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        // Out of chrono's range only for days parse_day never accepts (1970 to 2100): no text.
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn rates_are_exact_decimals_within_bounds() {
        assert_eq!(rate("1.1642").to_text(), "1.1642");
        assert_eq!(rate("0001.50").to_text(), "1.5");
        assert_eq!(rate("0.0000000001").to_text(), "0.0000000001");
        assert_eq!(rate("999999999.9999999999").to_text(), "999999999.9999999999");
        assert_eq!(rate("2").to_text(), "2");
        for bad in [
            "",
            "0",
            "0.000",
            "-1",
            "+1",
            "1e3",
            "1.",
            ".5",
            "1,5",
            " 1",
            "1.2.3",
            "1000000000",
            "1.00000000001",
            "١",
            "NaN",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn conversion_respects_each_currencys_minor_units_and_rounds_half_away_from_zero() {
        // 100.00 EUR at 0.85 GBP per EUR = 85.00 GBP.
        assert_eq!(convert(10_000, "EUR", "GBP", rate("0.85")), 8_500);
        // 1 000 JPY (no minor units) at 0.0052 GBP per JPY = 5.20 GBP.
        assert_eq!(convert(1_000, "JPY", "GBP", rate("0.0052")), 520);
        // 1.000 BHD (three decimals) at 2.1 GBP = 2.10 GBP.
        assert_eq!(convert(1_000, "BHD", "GBP", rate("2.1")), 210);
        // GBP into JPY: 1.00 GBP at 190.5 JPY per GBP = 190.5 -> 191 JPY (half away from zero).
        assert_eq!(convert(100, "GBP", "JPY", rate("190.5")), 191);
        assert_eq!(convert(-100, "GBP", "JPY", rate("190.5")), -191);
        // 0.01 EUR at 0.333 = 0.00333 GBP -> 0.
        assert_eq!(convert(1, "EUR", "GBP", rate("0.333")), 0);
        assert_eq!(convert(3, "EUR", "GBP", rate("0.5")), 2); // 1.5 -> 2
        assert_eq!(convert(12_345, "GBP", "GBP", Rate::ONE), 12_345);
    }

    #[test]
    fn sums_of_many_maximal_amounts_neither_overflow_nor_lose_a_unit() {
        // Ten million conversions of 10^11 minor units each: 10^18 per day row, far past
        // i64 in total over a thousand rows.
        let per_row: i64 = 10_000_000 * 100_000_000_000;
        let rows = 1_000i128;
        let (mut high, mut low) = (0i64, 0i64);
        for _ in 0..rows {
            high += per_row / SPLIT;
            low += per_row % SPLIT;
        }
        let total = recombine(high, low);
        assert_eq!(total, rows * i128::from(per_row));
        assert!(total > i128::from(i64::MAX));
        assert_eq!(clamp_i64(total), i64::MAX);
        assert_eq!(clamp_i64(-total), i64::MIN);
        assert_eq!(clamp_i64(42), 42);
        // Converted at the largest rate it still does not wrap.
        let converted = convert(total, "EUR", "GBP", rate("999999999.9999999999"));
        assert!(converted > total);
        assert_eq!(convert(i128::MAX, "JPY", "BHD", rate("999999999")), i128::MAX);
    }

    #[test]
    fn a_row_takes_amounts_until_its_limit() {
        assert!(fits_row(0, 100_000_000_000));
        assert!(fits_row(ROW_LIMIT - 5, 5));
        assert!(!fits_row(ROW_LIMIT - 5, 6));
        assert!(!fits_row(i64::MAX, 1));
        assert!(fits_row(-ROW_LIMIT + 1, -1));
    }

    #[test]
    fn effective_days_are_plain_utc_dates() {
        assert_eq!(parse_day("1970-01-02"), Ok(1));
        assert_eq!(day_text(parse_day("2026-12-07").unwrap()), "2026-12-07");
        for bad in [
            "2026-13-01",
            "2026-1-1",
            "1969-12-31",
            "2101-01-01",
            "2026-12-07T00:00:00Z",
            "",
        ] {
            assert!(parse_day(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
