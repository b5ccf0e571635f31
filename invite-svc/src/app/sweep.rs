//! The housekeeping sweep: invitations whose attribution window has passed are closed, and
//! provider event ids past their retention forgotten (in bounded batches until none are
//! left).

use chrono::{DateTime, Utc};
use referral_common::server::Shutdown;

use crate::store::Store;

/// Provider event ids forgotten per statement of a sweep.
const FORGET_BATCH: i64 = 1000;

/// One sweep at `now`; failures are logged and left to the next sweep.
pub async fn sweep<S: Store>(
    store: &S,
    now: DateTime<Utc>,
    retention: chrono::Duration,
    shutdown: &Shutdown,
) {
    match store.expire_due(now, 500).await {
        Ok(n) if n > 0 => tracing::info!(expired = n, "invitations expired"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
    }
    if let Some(before) = now.checked_sub_signed(retention) {
        let mut forgotten = 0;
        loop {
            match store.forget_provider_events(before, FORGET_BATCH).await {
                Ok(n) => {
                    forgotten += n;
                    if n < FORGET_BATCH as u64 || shutdown.is_triggered() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "provider event retention sweep failed");
                    break;
                }
            }
        }
        if forgotten > 0 {
            tracing::info!(forgotten, "provider event ids past retention forgotten");
        }
    }
}
