//! `analytics-svc rebuild`: every rollup, offset and applied-event id is emptied, then each
//! configured log is replayed from offset 0 (`adapters::rebuild`) through
//! [`super::apply_events`], as the live consumer applies it, until the log's head. The
//! numbers after a rebuild are the numbers the incremental consumer reached: same events,
//! same code. Safe beside a running service: applies are serialised and deduplicated by
//! event id, so the live consumer and the replay never count an event twice.

use crate::store::{Store, StoreResult};

/// The first step: empties every rollup, offset and applied-event id.
pub async fn reset<S: Store>(store: &S) -> StoreResult<()> {
    store.truncate_rollups().await
}
