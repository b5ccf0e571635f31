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

/// Chrono instant from a protobuf timestamp; `None` when out of range.
pub fn from_ts(ts: &referral_proto::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?).map(|t| t.trunc_subsecs(6))
}
