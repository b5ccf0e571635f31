//! The driver of `app::advance_rewards`: a pass every tick, at once again after a full
//! batch; a failed pass is retried on the next tick.

use std::time::Duration;

use referral_common::server::Shutdown;

use crate::{app::advance_rewards, store::Store};

/// Runs passes until `shutdown`.
pub async fn run<S: Store>(store: S, tick: Duration, shutdown: Shutdown) {
    let mut stop = shutdown.receiver();
    loop {
        match advance_rewards::advance(&store).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "reward scheduler pass failed; retrying next tick"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
