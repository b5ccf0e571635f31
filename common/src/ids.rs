//! Identifiers and clocks: UUIDv7 (time-ordered) strings everywhere.

use chrono::{DateTime, Datelike, SubsecRound, Utc};

/// A new UUIDv7 as a lower-case hyphenated string.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now, truncated to microseconds so that it survives a round trip through Postgres.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Protobuf timestamp from a chrono instant.
pub fn to_ts(t: DateTime<Utc>) -> referral_proto::Timestamp {
    referral_proto::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Optional protobuf timestamp from an optional chrono instant.
pub fn to_ts_opt(t: Option<DateTime<Utc>>) -> Option<referral_proto::Timestamp> {
    t.map(to_ts)
}

/// The years an instant may have to be taken from the wire and stored.
///
/// SQLite keeps instants as sqlx writes them, RFC 3339 text (`2026-12-06T12:00:00.5+00:00`),
/// and every service compares and sorts them as text. That order is time order only while
/// the year has exactly four digits: year 10000 is written `+10000-…` and sorts before 1970.
/// Every instant from input or from another service passes [`from_ts`], so this is the one
/// guard that keeps the text encoding order-preserving (see `sqlite_text_order_is_time_order`).
pub const STORABLE_YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// Whether `t` may be stored (its year is in [`STORABLE_YEARS`]).
pub fn is_storable(t: DateTime<Utc>) -> bool {
    STORABLE_YEARS.contains(&t.year())
}

/// Earliest `google.protobuf.Timestamp` the proto spec allows: 0001-01-01T00:00:00Z.
pub const MIN_TS_SECONDS: i64 = -62_135_596_800;
/// Latest `google.protobuf.Timestamp` the proto spec allows: 9999-12-31T23:59:59Z (the
/// JSON mapping cannot say more either).
pub const MAX_TS_SECONDS: i64 = 253_402_300_799;

/// When a consumed event's fact happened: its own timestamp field if readable, else the
/// event's `occurred_at` (`fallback`), else now.
pub fn at_or(ts: Option<&referral_proto::Timestamp>, fallback: Option<DateTime<Utc>>) -> DateTime<Utc> {
    ts.and_then(from_ts).or(fallback).unwrap_or_else(now)
}

/// Chrono instant from a protobuf timestamp; `None` outside the range the proto spec gives a
/// Timestamp (nanos below one second included: chrono would read 1e9 as a leap second) or
/// outside [`STORABLE_YEARS`] (callers answer "is not a valid timestamp"). chrono alone would
/// take years up to 262,143, where the services' local-time arithmetic overflows (a panic,
/// found by fuzzing `send_time`).
pub fn from_ts(ts: &referral_proto::Timestamp) -> Option<DateTime<Utc>> {
    if !(MIN_TS_SECONDS..=MAX_TS_SECONDS).contains(&ts.seconds) {
        return None;
    }
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    DateTime::from_timestamp(ts.seconds, nanos)
        .map(|t| t.trunc_subsecs(6))
        .filter(|t| is_storable(*t))
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use sqlx::{Row, sqlite::SqlitePoolOptions};

    use super::*;

    #[test]
    fn instants_outside_the_storable_years_are_refused() {
        let ts = |seconds: i64| referral_proto::Timestamp { seconds, nanos: 0 };
        assert!(from_ts(&ts(0)).is_some());
        assert!(from_ts(&ts(253_402_300_799)).is_some(), "9999-12-31T23:59:59Z");
        assert!(from_ts(&ts(253_402_300_800)).is_none(), "year 10000");
        assert!(from_ts(&ts(-1)).is_none(), "1969");
        assert!(from_ts(&ts(i64::MAX)).is_none());
        assert!(
            from_ts(&referral_proto::Timestamp {
                seconds: 0,
                nanos: -1
            })
            .is_none()
        );
    }

    /// The property the SQLite stores rely on: for instants in [`STORABLE_YEARS`], SQLite's
    /// text comparison of what sqlx writes agrees with time order. Checked through sqlx and
    /// SQLite themselves (their encoder, their collation), on random pairs and on the edges
    /// where widths differ (whole seconds against fractions, 3 against 6 digits).
    #[tokio::test]
    async fn sqlite_text_order_is_time_order() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let lo = DateTime::<Utc>::from_timestamp(0, 0).unwrap().timestamp_micros();
        let hi = "9999-12-31T23:59:59.999999Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp_micros();
        let mut rng = rand::rng();
        let base = "2026-12-06T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let mut pairs: Vec<(DateTime<Utc>, DateTime<Utc>)> = [0, 1, 1_000, 500_000, 123_000, 123_456]
            .iter()
            .flat_map(|a| [0, 1, 1_000, 500_000, 123_000, 123_456].map(|b| (*a, b)))
            .map(|(a, b)| {
                (
                    base + chrono::TimeDelta::microseconds(a),
                    base + chrono::TimeDelta::microseconds(b),
                )
            })
            .collect();
        for _ in 0..2_000 {
            let a = rng.random_range(lo..=hi);
            // Half the pairs close together, where only the fraction differs.
            let b = if rng.random_bool(0.5) {
                (a + rng.random_range(-2_000_000..=2_000_000)).clamp(lo, hi)
            } else {
                rng.random_range(lo..=hi)
            };
            pairs.push((
                DateTime::from_timestamp_micros(a).unwrap(),
                DateTime::from_timestamp_micros(b).unwrap(),
            ));
        }
        for (a, b) in pairs {
            assert!(is_storable(a) && is_storable(b));
            let row = sqlx::query("SELECT ?1 < ?2, ?1 = ?2, typeof(?1)")
                .bind(a)
                .bind(b)
                .fetch_one(&pool)
                .await
                .unwrap();
            let (less, equal, kind): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
            assert_eq!(kind, "text", "sqlx writes instants as text");
            assert_eq!((less, equal), (a < b, a == b), "{a:?} vs {b:?}");
        }
    }

    fn ts(seconds: i64, nanos: i32) -> referral_proto::Timestamp {
        referral_proto::Timestamp { seconds, nanos }
    }

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let t = from_ts(&ts(1_700_000_000, 123_456_789)).unwrap();
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123456+00:00");
        assert_eq!(from_ts(&to_ts(t)), Some(t));
    }

    /// Regression (fuzz target `send_time`): a gRPC sendAt near chrono's end of time reached
    /// the send-time rules and panicked in their local-time arithmetic.
    #[test]
    fn only_the_proto_timestamp_range_is_accepted() {
        // The proto range starts at year 1; storing starts at 1970 (STORABLE_YEARS).
        assert_eq!(from_ts(&ts(MIN_TS_SECONDS, 0)), None);
        let last = from_ts(&ts(MAX_TS_SECONDS, 999_999_999)).unwrap();
        assert_eq!(last.to_rfc3339(), "9999-12-31T23:59:59.999999+00:00");
        for bad in [
            ts(MIN_TS_SECONDS - 1, 0),
            ts(MAX_TS_SECONDS + 1, 0),
            ts(i64::MAX, 0),
            ts(i64::MIN, 0),
            ts(8_210_298_412_799, 0), // chrono's own last second, year 262143
            ts(0, -1),
            ts(0, 1_000_000_000), // chrono would read this as a leap second
            ts(59, 1_500_000_000),
        ] {
            assert_eq!(from_ts(&bad), None, "{bad:?}");
        }
    }
}
