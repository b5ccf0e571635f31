//! The scheduler's pass: PENDING rewards past their hold become ELIGIBLE, unclaimed ones
//! past their expiry become EXPIRED (RewardEligible / RewardExpired in the outbox).

use crate::store::{Store, StoreResult};

/// Entries moved per state and pass (the rest wait for the next pass).
pub const BATCH: i64 = 500;

/// One pass; true when a state had a full batch, so another pass should run at once.
pub async fn advance<S: Store>(store: &S) -> StoreResult<bool> {
    let done = store.advance(referral_common::ids::now(), BATCH).await?;
    if done.eligible + done.expired > 0 {
        metrics::counter!("incentive_entries_eligible_total").increment(u64::from(done.eligible));
        metrics::counter!("incentive_entries_expired_total").increment(u64::from(done.expired));
        tracing::info!(
            eligible = done.eligible,
            expired = done.expired,
            "rewards advanced"
        );
    }
    Ok(i64::from(done.eligible.max(done.expired)) >= BATCH)
}
