//! Drives the housekeeping [`sweep`](crate::app::sweep) once a minute until shutdown.

use std::time::Duration;

use referral_common::server::Shutdown;

use crate::{app::sweep, store::Store};

/// Once a minute: closes invitations whose attribution window has passed, and forgets
/// provider event ids older than `retention`.
pub async fn run<S: Store>(store: S, retention: Duration, shutdown: Shutdown) {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    loop {
        sweep::sweep(&store, referral_common::ids::now(), retention, &shutdown).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}
