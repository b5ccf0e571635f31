//! Money sums that cannot overflow, whatever is stored.
//!
//! Amounts are i64 minor units; a sum of them can pass i64 (a stored `amountMinor` of
//! 9223372036854775807 from before input was bounded, or many large ones). SQL `SUM` then
//! fails on both backends (SQLite raises "integer overflow", Postgres's cast back to BIGINT
//! "out of range"), which was a 500 for every caller. So the database sums each amount's
//! high and low 32-bit halves separately (`SUM(x / 4294967296)`, `SUM(x % 4294967296)`), neither of which can overflow for
//! fewer than 2^31 rows, and Rust joins them in i128. What does not fit an i64 answer is a
//! clear [`TooLarge`] error, or saturates where only a bound matters (a campaign's spend).

/// 2^32: amounts are summed as `amount / SPLIT` and `amount % SPLIT` (truncating division on
/// both backends, so `amount == hi * SPLIT + lo` exactly).
pub const SPLIT: i64 = 1 << 32;

/// A sum that does not fit an i64 amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is {sum} minor units, beyond the largest amount that can be shown (stored amounts need attention)"
)]
pub struct TooLarge {
    pub what: &'static str,
    pub sum: i128,
}

/// The exact sum from its two halves.
pub fn join(hi: i64, lo: i64) -> i128 {
    i128::from(hi) * i128::from(SPLIT) + i128::from(lo)
}

/// Exact sum of amounts (i128 cannot overflow for fewer than 2^64 of them).
pub fn sum(amounts: impl IntoIterator<Item = i64>) -> i128 {
    amounts.into_iter().map(i128::from).sum()
}

/// `sum` as an amount, or a [`TooLarge`] naming `what`.
pub fn amount(what: &'static str, sum: i128) -> Result<i64, TooLarge> {
    i64::try_from(sum).map_err(|_| TooLarge { what, sum })
}

/// `sum` clamped into i64: for values only compared against a bound.
pub fn saturate(sum: i128) -> i64 {
    i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQL computes: truncating division and remainder (Rust's `/` and `%` on i64).
    fn split(a: i64) -> (i64, i64) {
        (a / SPLIT, a % SPLIT)
    }

    #[test]
    fn halves_join_back_exactly() {
        for a in [
            0,
            1,
            -1,
            SPLIT - 1,
            SPLIT,
            -SPLIT,
            i64::MAX,
            i64::MIN,
            2_500,
            -123_456_789_012,
        ] {
            let (hi, lo) = split(a);
            assert_eq!(join(hi, lo), i128::from(a), "{a}");
        }
        let amounts = [i64::MAX, i64::MAX, 5, i64::MIN, -7];
        let (hi, lo) = amounts
            .iter()
            .map(|a| split(*a))
            .fold((0i64, 0i64), |(h, l), (a, b)| (h + a, l + b));
        assert_eq!(join(hi, lo), sum(amounts));
    }

    #[test]
    fn sums_beyond_i64_are_errors_or_saturate() {
        let big = sum([i64::MAX, 1]);
        assert_eq!(
            amount("the balance", big),
            Err(TooLarge {
                what: "the balance",
                sum: big
            })
        );
        assert_eq!(amount("x", sum([2_500, -500])), Ok(2_000));
        assert_eq!(saturate(big), i64::MAX);
        assert_eq!(saturate(sum([i64::MIN, -1])), i64::MIN);
    }
}
