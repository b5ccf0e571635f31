//! A service's part of a privacy request: [`PersonData`] is what each service implements over
//! its own store (erase a person, export what it holds about them), and [`PrivacyServer`] serves
//! it as `referral.common.v1.PrivacyService`. The orchestration (the request, its parts, the
//! `privacy.requested` event each service follows) is invite-svc's `PrivacyRequests`;
//! [`follow_requests`] is how a service does its part: a supervised consumer of invite-svc's
//! log that, for each `privacy.requested`, erases or exports through its [`PersonData`] and
//! confirms with `PrivacyRequests/CompletePrivacyPart`, retrying until invite-svc takes it.
//! Its offset moves only after the confirmation, and both steps are idempotent, so a
//! redelivered event erases nothing more and confirms again harmlessly; a service that was
//! down does its parts when it is back (the request shows them PENDING meanwhile).

use std::{collections::BTreeMap, sync::Arc};

use referral_proto::{
    common::v1::{
        CompletePrivacyPartRequest, ErasePersonRequest, ExportPersonRequest, PersonExport, PrivacyReceipt,
        PrivacyRequestKind, PrivacySubject,
        privacy_requests_client::PrivacyRequestsClient,
        privacy_service_server::{PrivacyService, PrivacyServiceServer},
    },
    events::v1::{Event, PrivacyRequested, event::Payload},
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
/// The largest part of an export one service may hand in (JSON text): under gRPC's 4 MiB.
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;

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

/// The key of a follower's stored offset in its service's `consumer_offsets` (apart from the
/// service's main consumer of the same log, which keeps `invite`).
pub const FOLLOWER_SOURCE: &str = "invite.privacy";

/// The key under which a service's main consumer keeps its offset in invite-svc's log.
pub const MAIN_SOURCE: &str = "invite";

/// How a service follows invite-svc's privacy requests.
pub struct Follower {
    /// The service's name as parts and receipts name it (`fraud-svc`, ...).
    pub service: &'static str,
    pub data: Arc<dyn PersonData>,
    /// The service's database (where the follower's offset is kept).
    pub db: crate::parked::ParkedDb,
    /// invite-svc (its event log and `PrivacyRequests`).
    pub invite: tonic::transport::Channel,
    pub keys: crate::auth::ServiceKeys,
    pub parking: crate::parked::Parking,
    /// Longest wait between two tries of a confirmation (and between reconnections).
    pub max_backoff: std::time::Duration,
}

/// Starts `follower` under `tasks` as `{service}.privacy` (restarted from its stored offset
/// if it panics; reflected in readiness like every supervised task).
pub fn follow_requests(
    tasks: &crate::supervisor::Supervisor,
    follower: Follower,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let consumer = format!("{}.privacy", follower.service);
    let credentials = crate::auth::ServiceCredentials::new(&follower.keys, &consumer);
    let config = crate::consumer::ConsumerConfig {
        source: FOLLOWER_SOURCE.into(),
        consumer: consumer.clone(),
        channel: follower.invite.clone(),
        credentials: credentials.clone(),
        max_batch: 20,
        max_backoff: follower.max_backoff,
        parking: follower.parking.clone(),
    };
    let sink = PrivacySink {
        service: follower.service,
        data: follower.data,
        db: follower.db,
        requests: PrivacyRequestsClient::new(tonic::service::interceptor::InterceptedService::new(
            follower.invite,
            credentials,
        )),
        max_backoff: follower.max_backoff,
    };
    crate::consumer::supervise(tasks, consumer, config, sink, shutdown);
}

type RequestsClient = PrivacyRequestsClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        crate::auth::ServiceCredentials,
    >,
>;

/// The follower's sink: does the part of each `privacy.requested` and confirms it.
pub struct PrivacySink {
    service: &'static str,
    data: Arc<dyn PersonData>,
    db: crate::parked::ParkedDb,
    requests: RequestsClient,
    max_backoff: std::time::Duration,
}

/// A refusal that trying again cannot change (the consumer retries and then parks it).
fn permanent(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument | NotFound | PermissionDenied | FailedPrecondition | OutOfRange | Unimplemented
    )
}

impl PrivacySink {
    /// Does this service's part of one request and returns what to confirm.
    pub async fn part(&self, request: &PrivacyRequested) -> anyhow::Result<CompletePrivacyPartRequest> {
        let subject = check_subject(request.subject.as_ref())
            .map_err(|e| anyhow::anyhow!("privacy request {}: {e}", request.request_id))?;
        let kind = PrivacyRequestKind::try_from(request.kind).unwrap_or(PrivacyRequestKind::Unspecified);
        let (counts, document_json) = match kind {
            PrivacyRequestKind::Erase => (self.data.erase(subject).await?, String::new()),
            PrivacyRequestKind::Export => {
                let (counts, doc) = self.data.export(subject).await?;
                let text = doc.to_string();
                anyhow::ensure!(
                    text.len() <= MAX_DOCUMENT_BYTES,
                    "the export of privacy request {} is {} bytes, over {MAX_DOCUMENT_BYTES}",
                    request.request_id,
                    text.len()
                );
                (counts, text)
            }
            PrivacyRequestKind::Unspecified => {
                anyhow::bail!("privacy request {} names no kind", request.request_id)
            }
        };
        Ok(CompletePrivacyPartRequest {
            request_id: request.request_id.clone(),
            receipt: Some(receipt(self.service, counts)),
            document_json,
        })
    }

    /// Confirms a part, retrying with backoff while invite-svc cannot take it.
    async fn confirm(&self, done: CompletePrivacyPartRequest) -> anyhow::Result<()> {
        let mut backoff = std::time::Duration::from_millis(200);
        loop {
            let mut client = self.requests.clone();
            match client.complete_privacy_part(done.clone()).await {
                Ok(_) => return Ok(()),
                Err(status) if permanent(status.code()) => {
                    anyhow::bail!(
                        "invite-svc refused {}'s part of privacy request {}: {status}",
                        self.service,
                        done.request_id
                    )
                }
                Err(status) => {
                    tracing::warn!(service = self.service, request = %done.request_id, %status, ?backoff, "could not confirm a privacy part yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff.max(std::time::Duration::from_millis(200)));
                }
            }
        }
    }

    /// Waits until the service's main consumer of invite-svc's log (offsets under
    /// [`MAIN_SOURCE`]) has applied everything up to `offset`: the person's earlier events
    /// must be in this service's rows before they are erased or exported, or they would land
    /// afterwards under the person's own id.
    async fn after_main_consumer(&self, offset: i64) -> anyhow::Result<()> {
        let mut waited = 0u32;
        while crate::consumer::EventSink::last_offset(self, MAIN_SOURCE).await? < offset {
            waited += 1;
            if waited.is_multiple_of(100) {
                tracing::warn!(
                    service = self.service,
                    offset,
                    "a privacy part waits for the service's own consumer of invite-svc's log to catch up"
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn save_offset(&self, source: &str, offset: i64) -> anyhow::Result<()> {
        match &self.db {
            crate::parked::ParkedDb::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                crate::consumer::pg::save_offset(&mut conn, source, offset).await?;
            }
            crate::parked::ParkedDb::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                crate::consumer::sqlite::save_offset(&mut conn, source, offset).await?;
            }
        }
        Ok(())
    }
}

impl crate::consumer::EventSink for PrivacySink {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        Ok(match &self.db {
            crate::parked::ParkedDb::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                crate::consumer::pg::load_offset(&mut conn, source).await?
            }
            crate::parked::ParkedDb::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                crate::consumer::sqlite::load_offset(&mut conn, source).await?
            }
        })
    }

    /// Each event in turn: a privacy request's part done and confirmed, then the offset past
    /// it (every other event only moves the offset).
    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        for event in events {
            if let Some(Payload::PrivacyRequested(request)) = &event.payload {
                self.after_main_consumer(event.offset).await?;
                let done = self.part(request).await?;
                self.confirm(done).await?;
                tracing::info!(service = self.service, request = %request.request_id, "privacy part done and confirmed");
            }
            self.save_offset(source, event.offset).await?;
        }
        Ok(())
    }
}
