//! What happens when invite-svc's or fraud-svc's events arrive (decoded by
//! `adapters::consumers` into [`Work`]):
//!
//! - an attributed, first paid conversion (`Work::Conversion`) is booked under the active
//!   program of the referrer's kind (`domain::rewards` plans the reward, milestones and any
//!   campaign bonus), PENDING or HELD per its signup's fraud action;
//! - a fraud assessment (`Work::Decision`, not a resolution) is recorded (a conversion may
//!   come before or after its assessment: whichever comes second sees the first); REVIEW
//!   holds the rewards already booked, REJECT voids them or books a clawback of what was
//!   paid (`domain::states`);
//! - a case resolution: APPROVE releases held rewards, REJECT voids or claws back.
//!
//! The whole batch is applied by the store in one transaction with the source's new offset
//! and the ids of the events applied (duplicates dropped by id), so a redelivered event or
//! a replay after a crash books nothing twice; the outbox events (RewardGranted, ...) are
//! written in that same transaction.

use crate::store::{ApplySummary, Consumed, Store, StoreResult};

/// Applies one batch of `source`'s events to the ledger.
pub async fn apply<S: Store>(store: &S, source: &str, items: Vec<Consumed>) -> StoreResult<ApplySummary> {
    let summary = store.apply_events(source, items).await?;
    if summary.booked + summary.changed > 0 {
        metrics::counter!("incentive_entries_booked_total").increment(u64::from(summary.booked));
        tracing::info!(
            source,
            booked = summary.booked,
            changed = summary.changed,
            "ledger updated from events"
        );
    }
    Ok(summary)
}

/// Where the consumer of `source` resumes.
pub async fn last_offset<S: Store>(store: &S, source: &str) -> StoreResult<i64> {
    store.last_offset(source).await
}
