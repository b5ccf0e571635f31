//! A service's part of a privacy request: [`PersonData`] is what each service implements over
//! its own store (erase a person, export what it holds about them), and [`PrivacyServer`] serves
//! it as `referral.common.v1.PrivacyService`. The orchestration (the request, its parts, the
//! `privacy.requested` event each service follows) is invite-svc's `PrivacyRequests`.

use std::{collections::BTreeMap, sync::Arc};

use referral_proto::common::v1::{
    ErasePersonRequest, ExportPersonRequest, PersonExport, PrivacyReceipt, PrivacySubject,
    privacy_service_server::{PrivacyService, PrivacyServiceServer},
};
use tonic::{Request, Response, Status};

use crate::{ApiError, auth::Principal, ids};

/// Records by kind, as a receipt counts them ("invitations" -> 2, ...).
pub type Counts = BTreeMap<String, i64>;

/// One service's personal data about a person. Both operations are idempotent: erasing twice
/// erases nothing more (the second receipt counts what it found still personal: zeros), and an
/// export reads only.
#[tonic::async_trait]
pub trait PersonData: Send + Sync + 'static {
    /// Replaces the subject's personal fields by tombstones, truncates IPs, drops user agents
    /// and device ids, and re-keys rows the books need under `subject.pseudonym`; returns
    /// what it changed, by record kind.
    async fn erase(&self, subject: &PrivacySubject) -> Result<Counts, ApiError>;
    /// Everything held about the subject: record kind -> records (a JSON object), and the
    /// count of records per kind.
    async fn export(&self, subject: &PrivacySubject) -> Result<(Counts, serde_json::Value), ApiError>;
}

/// Checks a subject names a person: a present, bounded id (everything else is derived).
pub fn check_subject(subject: Option<&PrivacySubject>) -> Result<&PrivacySubject, ApiError> {
    let s = subject.ok_or_else(|| ApiError::invalid("subject", "is required"))?;
    let mut v = crate::Violations::default();
    crate::input::line(&mut v, &s.person_id, crate::input::ID_MAX, "subject.personId");
    if s.person_id.trim().is_empty() {
        v.add("subject.personId", "is required");
    }
    if s.contact_keys.len() > MAX_KEYS {
        v.add("subject.contactKeys", format!("at most {MAX_KEYS}"));
    }
    if s.invitation_ids.len() > MAX_KEYS {
        v.add("subject.invitationIds", format!("at most {MAX_KEYS}"));
    }
    v.into_result()?;
    Ok(s)
}

/// An export document of records by kind (kind -> the records, a JSON array each) with the
/// count of each kind, as [`PersonData::export`] answers.
pub fn export_document(kinds: Vec<(&str, Vec<serde_json::Value>)>) -> (Counts, serde_json::Value) {
    let counts = kinds
        .iter()
        .map(|(k, r)| (k.to_string(), r.len() as i64))
        .collect();
    let doc = kinds
        .into_iter()
        .map(|(k, r)| (k.to_string(), serde_json::Value::Array(r)))
        .collect::<serde_json::Map<_, _>>();
    (counts, serde_json::Value::Object(doc))
}

/// The pseudonym `subject`'s rows are re-keyed under: this service's own
/// `PiiKeys::pseudonym(person_id)`, which must equal the one the request carries when it
/// carries one (services whose lookup keys differ would scatter one person over several
/// pseudonyms: refused, not guessed). A person id that already is a pseudonym names nobody
/// left to erase.
pub fn pseudonym_of(pii: &crate::pii::PiiKeys, subject: &PrivacySubject) -> Result<String, ApiError> {
    if crate::pii::is_pseudonym(&subject.person_id) {
        return Err(ApiError::invalid("subject.personId", "is already a pseudonym"));
    }
    let ours = pii.pseudonym(&subject.person_id);
    if !subject.pseudonym.is_empty() && subject.pseudonym != ours {
        return Err(ApiError::FailedPrecondition {
            message: "the request's pseudonym differs from this service's: PII lookup keys differ".into(),
            reason: "PSEUDONYM_MISMATCH",
        });
    }
    Ok(ours)
}

/// Most contact keys or invitation ids one subject may carry (a person invited 1,000 times is
/// already far outside the seeds' world; a larger list is a bug or an attack).
pub const MAX_KEYS: usize = 1_000;

/// The receipt of a part done now.
pub fn receipt(service: &str, counts: Counts) -> PrivacyReceipt {
    PrivacyReceipt {
        service: service.to_string(),
        counts: counts.into_iter().collect(),
        completed_at: Some(ids::to_ts(ids::now())),
    }
}

/// `PrivacyService` over a service's [`PersonData`].
pub struct PrivacyServer {
    service: &'static str,
    data: Arc<dyn PersonData>,
}

impl PrivacyServer {
    pub fn new(service: &'static str, data: Arc<dyn PersonData>) -> Self {
        Self { service, data }
    }

    pub fn into_server(self) -> PrivacyServiceServer<Self> {
        PrivacyServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl PrivacyService for PrivacyServer {
    async fn erase_person(
        &self,
        req: Request<ErasePersonRequest>,
    ) -> Result<Response<PrivacyReceipt>, Status> {
        Principal::of(&req)?.require_admin()?;
        let subject = check_subject(req.get_ref().subject.as_ref())?;
        let counts = self.data.erase(subject).await?;
        Ok(Response::new(receipt(self.service, counts)))
    }

    async fn export_person(
        &self,
        req: Request<ExportPersonRequest>,
    ) -> Result<Response<PersonExport>, Status> {
        Principal::of(&req)?.require_admin()?;
        let subject = check_subject(req.get_ref().subject.as_ref())?;
        let (counts, document) = self.data.export(subject).await?;
        Ok(Response::new(PersonExport {
            receipt: Some(receipt(self.service, counts)),
            document_json: document.to_string(),
        }))
    }
}
