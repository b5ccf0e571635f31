//! invite-svc's parked sends as `ParkedWork` lists and retries them (next to the parked
//! events every service has).

use referral_common::{
    audit::AuditEntry,
    parked::{ParkedSend, ParkedSends},
};

use crate::{app::parked_sends, store::Store};

pub struct Sends<S>(pub S);

#[tonic::async_trait]
impl<S: Store> ParkedSends for Sends<S> {
    async fn parked_sends(&self, before: &str, limit: i64) -> anyhow::Result<Vec<ParkedSend>> {
        Ok(parked_sends::parked_sends(&self.0, before, limit).await?)
    }

    async fn release_parked_send(&self, invitation_id: &str, entry: &AuditEntry) -> anyhow::Result<bool> {
        Ok(parked_sends::release_parked_send(&self.0, invitation_id, entry).await?)
    }
}
