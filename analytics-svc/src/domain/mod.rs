//! analytics-svc's rules as plain functions over plain data, unit-tested without a database:
//! what each event changes (`rollup`), which filter scopes a referrer's activity counts in
//! (`scope`), every metric's formula (`metrics`, `attribution`, `stats`), currency
//! conversion (`fx`), the outbound webhooks' rules (`webhooks`) and what may leave analytics
//! about a person (`privacy`).

pub mod attribution;
pub mod fx;
pub mod metrics;
pub mod network;
pub mod privacy;
pub mod rollup;
pub mod scope;
pub mod webhooks;

use chrono::{DateTime, Utc};

/// Seconds in a day.
pub const DAY_SECONDS: i64 = 86_400;

/// Whole UTC days since 1970-01-01 of an instant.
pub fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(DAY_SECONDS)
}

/// Whole UTC days since 1970-01-01 of a Unix time in seconds.
pub fn day_of_secs(secs: i64) -> i64 {
    secs.div_euclid(DAY_SECONDS)
}
