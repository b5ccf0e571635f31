// PLACEHOLDER: replaced by the privacy-incan branch
//! analytics-svc's part of a privacy request. A placeholder with the agreed shape, so the follower
//! and `PrivacyService` are wired and the privacy-requests test runs end to end: it erases
//! and exports nothing (empty counts, `{}`).

use referral_common::{
    ApiError,
    pii::PiiKeys,
    privacy::{Counts, PersonData},
};
use referral_proto::common::v1::PrivacySubject;

use crate::store::Store;

pub struct PersonRecords<S> {
    _store: S,
    _pii: PiiKeys,
}

impl<S: Store> PersonRecords<S> {
    pub fn new(store: S, pii: PiiKeys) -> Self {
        Self {
            _store: store,
            _pii: pii,
        }
    }
}

#[tonic::async_trait]
impl<S: Store> PersonData for PersonRecords<S> {
    async fn erase(&self, _subject: &PrivacySubject) -> Result<Counts, ApiError> {
        Ok(Counts::new())
    }

    async fn export(&self, _subject: &PrivacySubject) -> Result<(Counts, serde_json::Value), ApiError> {
        Ok((Counts::new(), serde_json::json!({})))
    }
}
