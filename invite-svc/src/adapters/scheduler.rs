//! The sending loop: every tick, [`Scheduler::send_next`] until nothing is due (the use case
//! and its exactly-once guarantee: `app::deliver_due_invitations`).

use referral_common::server::Shutdown;

use crate::{app::deliver_due_invitations::Scheduler, store::Store};

/// Runs until shutdown; a send in flight finishes and is recorded first.
pub async fn run<S: Store>(scheduler: Scheduler<S>, shutdown: Shutdown) {
    loop {
        while !shutdown.is_triggered() {
            match scheduler.send_next().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: sending failed; retrying next tick");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(scheduler.tick()) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}
