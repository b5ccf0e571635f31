//! Identifiers and clocks: UUIDv7 (time-ordered) strings everywhere.

use chrono::{DateTime, SubsecRound, Utc};

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

/// Earliest `google.protobuf.Timestamp` the proto spec allows: 0001-01-01T00:00:00Z.
pub const MIN_TS_SECONDS: i64 = -62_135_596_800;
/// Latest `google.protobuf.Timestamp` the proto spec allows: 9999-12-31T23:59:59Z (the
/// JSON mapping cannot say more either).
pub const MAX_TS_SECONDS: i64 = 253_402_300_799;

/// Chrono instant from a protobuf timestamp; `None` outside the range the proto spec gives a
/// Timestamp (years 1 to 9999, nanos below one second). chrono alone would take years up to
/// 262,143, where the date arithmetic of the services' time rules overflows (a panic, found
/// by fuzzing `send_time`), and a leap-second nanos value.
pub fn from_ts(ts: &referral_proto::Timestamp) -> Option<DateTime<Utc>> {
    if !(MIN_TS_SECONDS..=MAX_TS_SECONDS).contains(&ts.seconds) {
        return None;
    }
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    DateTime::from_timestamp(ts.seconds, nanos).map(|t| t.trunc_subsecs(6))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let first = from_ts(&ts(MIN_TS_SECONDS, 0)).unwrap();
        assert_eq!(first.to_rfc3339(), "0001-01-01T00:00:00+00:00");
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
