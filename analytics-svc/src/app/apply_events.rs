//! What happens when an event of invite-svc's, fraud-svc's or incentive-svc's log arrives
//! (from the live consumer or a rebuild's replay): it is turned into its rollup change
//! (`domain::rollup::change_of`, pure) and the batch is applied in one transaction with the
//! source's new offset and the ids of the events applied (duplicates dropped by id).

use referral_proto::events::v1::Event;

use crate::{
    domain::rollup::change_of,
    store::{ApplySummary, Consumed, Store, StoreResult},
};

/// Applies one batch of `source`'s events to the rollups; revenue is reported in `currency`.
pub async fn apply<S: Store>(
    store: &S,
    source: &str,
    events: Vec<Event>,
    currency: &str,
) -> StoreResult<ApplySummary> {
    let items: Vec<Consumed> = events
        .iter()
        .map(|e| Consumed {
            event_id: e.id.clone(),
            offset: e.offset,
            change: change_of(e),
        })
        .collect();
    let summary = store.apply_events(source, items, currency).await?;
    metrics::counter!("analytics_events_applied_total", "source" => source.to_string())
        .increment(u64::from(summary.applied));
    Ok(summary)
}

/// Where the consumer of `source` resumes.
pub async fn last_offset<S: Store>(store: &S, source: &str) -> StoreResult<i64> {
    store.last_offset(source).await
}
