//! What happens when invite-svc's or fraud-svc's events arrive (decoded by
//! `adapters::consumers` into [`Work`]):
//!
//! - an attributed, first paid conversion (`Work::Conversion`) is booked under the active
//!   program of the referrer's kind, once per referee (`domain::rewards::conversion_key`):
//!   its initial state follows the strictest fraud action known for it or its signup
//!   (`domain::states::stricter`, `initial`: PENDING, HELD, or nothing on REJECT), and
//!   `domain::rewards::pick_campaign` / `plan_conversion` plan the reward, the milestones
//!   reached and any campaign bonus within its budget;
//! - a fraud assessment (`Work::Decision`, not a resolution) is recorded (a conversion may
//!   come before or after its assessment: whichever comes second sees the first) and
//!   applied to the rewards of its conversion, or of every conversion of its signup's
//!   referee, by `domain::states::on_decision`: REVIEW holds them, REJECT voids them or,
//!   once paid, books a clawback entry (`domain::rewards::clawback_key`, at most once);
//! - a case resolution: APPROVE releases held rewards, REJECT voids or claws back, its
//!   reviewer the actor of the audit rows.
//!
//! The store applies the whole batch (`Store::apply_events`: its `book_conversion` and
//! `decide` steps run those rules) in one transaction with the source's new offset and the
//! ids of the events applied (duplicates dropped by id), under the ledger's write lock, so
//! a redelivered event or a replay after a crash books nothing twice and a campaign budget
//! is never read by two bookings at once; the outbox events (RewardGranted, RewardVoided,
//! ...) are written in that same transaction.

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
