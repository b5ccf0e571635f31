//! Drives invite-svc's own part of privacy requests: woken when a request is opened, and
//! every few seconds anyway (a part whose round failed, or that a crash interrupted, is
//! done on a later round), and deletes expired export documents once a minute.

use std::time::Duration;

use referral_common::{privacy::PersonData, server::Shutdown};

use crate::{app::privacy_requests::PrivacyBook, store::Store};

/// A round at least this often, woken or not.
const ROUND: Duration = Duration::from_secs(5);
const PURGE_EVERY: Duration = Duration::from_secs(60);

pub async fn run<S: Store, D: PersonData>(book: PrivacyBook<S>, data: std::sync::Arc<D>, shutdown: Shutdown) {
    let wake = book.woken();
    let mut last_purge: Option<tokio::time::Instant> = None;
    let mut backoff = ROUND;
    loop {
        match book.own_parts(data.as_ref()).await {
            Ok(_) => backoff = ROUND,
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "invite-svc's part of a privacy request failed; trying again");
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            match book.purge_exports(referral_common::ids::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(requests = n, "deleted expired privacy exports"),
                Err(e) => tracing::warn!(error = %e, "could not delete expired privacy exports"),
            }
            last_purge = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}
