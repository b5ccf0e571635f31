//! The book of privacy requests (issue #16): a person's erasure or export opened once per
//! person and kind while pending, with one part per service; each service does its part
//! when it reads the request's `privacy.requested` event from invite-svc's log and confirms
//! it here (`CompletePrivacyPart`); an export's documents are kept sealed and deleted
//! `export_retention` after the request is done.
//!
//! invite-svc does its own part from the book itself, not from its log: [`PrivacyBook::
//! own_parts`] runs every pending invite-svc part (woken after each request is opened, and
//! on a timer), so a part whose process died half way is done again on the next round —
//! the same guarantee the other services' log followers give.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::{Principal, Role},
    ids, input,
    pii::PiiKeys,
    privacy::{Counts, PersonData},
};
use referral_proto::common::v1::{
    CompletePrivacyPartRequest, PrivacyExportDocument, PrivacyPart, PrivacyReceipt, PrivacyRequest,
    PrivacyRequestKind, PrivacyRequestState, PrivacySubject,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{
    app::privacy::subject_of,
    store::{
        Store, events,
        privacy::{Completed, Opened, PrivacyRequestRow, PrivacyRequestView},
    },
};

/// The services that do a part of every request, as parts and receipts name them.
pub const SERVICES: [&str; 4] = referral_common::parked::SERVICES;
/// This service's own part.
pub const OWN: &str = "invite-svc";
/// Where a DONE export's document is fetched (the gateway's route).
pub fn download_url(id: &str) -> String {
    format!("/v1/privacy/requests/{id}/export")
}

/// Most record kinds one receipt may count, and the longest kind name.
const MAX_COUNT_KINDS: usize = 64;
const MAX_KIND_LEN: usize = 64;
use referral_common::privacy::MAX_DOCUMENT_BYTES;
/// Requests one round of [`PrivacyBook::own_parts`] takes.
const OWN_BATCH: i64 = 20;

pub struct PrivacyBook<S> {
    store: S,
    pii: PiiKeys,
    export_retention: TimeDelta,
    wake: Arc<Notify>,
}

impl<S> Clone for PrivacyBook<S>
where
    S: Clone,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            pii: self.pii.clone(),
            export_retention: self.export_retention,
            wake: self.wake.clone(),
        }
    }
}

fn kind_name(kind: PrivacyRequestKind) -> Option<&'static str> {
    match kind {
        PrivacyRequestKind::Erase => Some("ERASE"),
        PrivacyRequestKind::Export => Some("EXPORT"),
        PrivacyRequestKind::Unspecified => None,
    }
}

fn kind_of(name: &str) -> PrivacyRequestKind {
    match name {
        "ERASE" => PrivacyRequestKind::Erase,
        "EXPORT" => PrivacyRequestKind::Export,
        _ => PrivacyRequestKind::Unspecified,
    }
}

fn state_of(name: &str) -> PrivacyRequestState {
    match name {
        "PENDING" => PrivacyRequestState::Pending,
        "DONE" => PrivacyRequestState::Done,
        _ => PrivacyRequestState::Unspecified,
    }
}

/// A part's name in the assembled document (`invite`, `fraud`, ...).
fn short(service: &str) -> &str {
    service.strip_suffix("-svc").unwrap_or(service)
}

fn parse_counts(json: &str) -> ApiResult<Counts> {
    serde_json::from_str(json).map_err(|e| ApiError::Internal(anyhow::anyhow!("stored receipt counts: {e}")))
}

/// The request as the API shows it.
pub fn to_proto(view: &PrivacyRequestView) -> ApiResult<PrivacyRequest> {
    let r = &view.request;
    let mut parts = Vec::with_capacity(view.parts.len());
    for p in &view.parts {
        let done = p.state == "DONE";
        parts.push(PrivacyPart {
            service: p.service.clone(),
            state: state_of(&p.state) as i32,
            receipt: done
                .then(|| {
                    parse_counts(&p.counts_json).map(|counts| PrivacyReceipt {
                        service: p.service.clone(),
                        counts: counts.into_iter().collect(),
                        completed_at: ids::to_ts_opt(p.completed_at),
                    })
                })
                .transpose()?,
        });
    }
    let done_export = r.state == "DONE" && r.kind == "EXPORT" && r.export_purged_at.is_none();
    Ok(PrivacyRequest {
        id: r.id.clone(),
        kind: kind_of(&r.kind) as i32,
        person_id: r.person_id.clone(),
        state: state_of(&r.state) as i32,
        parts,
        created_at: Some(ids::to_ts(r.created_at)),
        completed_at: ids::to_ts_opt(r.completed_at),
        download_url: if done_export {
            download_url(&r.id)
        } else {
            String::new()
        },
    })
}

fn check_id(id: &str, field: &str) -> ApiResult<()> {
    let mut v = Violations::default();
    input::id(&mut v, id, field);
    v.into_result()
}

impl<S: Store> PrivacyBook<S> {
    pub fn new(store: S, pii: PiiKeys, export_retention: std::time::Duration) -> Self {
        Self {
            store,
            pii,
            export_retention: TimeDelta::from_std(export_retention).unwrap_or(TimeDelta::MAX),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Woken when a request is opened (invite-svc's own part is due).
    pub fn woken(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Opens an erasure or export of `person_id` (admin, or the person themself), or answers
    /// the pending one of the same kind.
    pub async fn open(
        &self,
        actor: &Actor,
        principal: &Principal,
        person_id: &str,
        kind: i32,
    ) -> ApiResult<PrivacyRequest> {
        let mut v = Violations::default();
        input::id(&mut v, person_id, "personId");
        let kind = PrivacyRequestKind::try_from(kind).unwrap_or(PrivacyRequestKind::Unspecified);
        let kind_text = kind_name(kind);
        v.check(kind_text.is_none(), "kind", "must be ERASE or EXPORT");
        v.into_result()?;
        let kind_text = kind_text.unwrap_or_default();
        if principal.role == Role::ApiKey {
            return Err(ApiError::PermissionDenied(
                "API keys cannot open privacy requests".into(),
            ));
        }
        principal.require_self(person_id, "personId")?;
        let subject = subject_of(&self.store, &self.pii, person_id).await?;
        let now = ids::now();
        let row = PrivacyRequestRow {
            id: ids::new_id(),
            kind: kind_text.to_string(),
            person_id: person_id.to_string(),
            state: "PENDING".into(),
            subject_json: serde_json::to_string(&subject).map_err(|e| ApiError::Internal(e.into()))?,
            requested_by: actor.subject.clone(),
            created_at: now,
            completed_at: None,
            export_purged_at: None,
        };
        let entry =
            AuditEntry::new(actor, action::PRIVACY_REQUEST_CREATE, "person", person_id).after(json!({
                "requestId": row.id,
                "kind": kind_text,
            }));
        let event = events::privacy_requested(&row.id, kind, &subject, now);
        let view = match self
            .store
            .open_privacy_request(&row, &SERVICES, &entry, &event)
            .await?
        {
            Opened::Created(view) => {
                self.wake.notify_one();
                view
            }
            Opened::Pending(view) => view,
        };
        to_proto(&view)
    }

    async fn visible(&self, principal: &Principal, id: &str) -> ApiResult<PrivacyRequestView> {
        check_id(id, "id")?;
        let view = self
            .store
            .get_privacy_request(id)
            .await?
            .ok_or_else(|| ApiError::not_found("privacy request", id))?;
        if principal.role == Role::ApiKey || !principal.may_act_as(&view.request.person_id) {
            // Not theirs: as if it did not exist (ids are not to be probed).
            return Err(ApiError::not_found("privacy request", id));
        }
        Ok(view)
    }

    /// A request (admin, or the person it is about).
    pub async fn get(&self, principal: &Principal, id: &str) -> ApiResult<PrivacyRequest> {
        to_proto(&self.visible(principal, id).await?)
    }

    /// A service confirms its part (service principals only; the part is the caller's own).
    pub async fn complete(
        &self,
        principal: &Principal,
        req: &CompletePrivacyPartRequest,
    ) -> ApiResult<PrivacyRequest> {
        if principal.role != Role::Service {
            return Err(ApiError::PermissionDenied(
                "only a service confirms its part".into(),
            ));
        }
        let mut v = Violations::default();
        input::id(&mut v, &req.request_id, "requestId");
        let Some(receipt) = &req.receipt else {
            v.add("receipt", "is required");
            v.into_result()?;
            return Err(ApiError::invalid("receipt", "is required"));
        };
        let service = receipt.service.as_str();
        v.check(
            !SERVICES.contains(&service),
            "receipt.service",
            format!("must be one of {}", SERVICES.join(", ")),
        );
        v.check(
            receipt.counts.len() > MAX_COUNT_KINDS,
            "receipt.counts",
            format!("at most {MAX_COUNT_KINDS} kinds"),
        );
        for (kind, n) in &receipt.counts {
            input::line(&mut v, kind, MAX_KIND_LEN, "receipt.counts");
            v.check(kind.is_empty(), "receipt.counts", "kinds are named");
            v.check(*n < 0, "receipt.counts", "counts are at least 0");
        }
        v.check(
            req.document_json.len() > MAX_DOCUMENT_BYTES,
            "documentJson",
            format!("at most {MAX_DOCUMENT_BYTES} bytes"),
        );
        v.into_result()?;
        // A service confirms only its own part: its token names it (`fraud-svc`, or a task
        // of it such as `fraud-svc.privacy`).
        let own = principal.sub == service
            || principal
                .sub
                .strip_prefix(service)
                .is_some_and(|r| r.starts_with('.'));
        if !own {
            return Err(ApiError::PermissionDenied(format!(
                "{} cannot confirm {service}'s part",
                principal.sub
            )));
        }
        self.record_part(
            &req.request_id,
            service,
            &receipt.counts.clone().into_iter().collect(),
            &req.document_json,
        )
        .await
    }

    async fn record_part(
        &self,
        request_id: &str,
        service: &str,
        counts: &Counts,
        document_json: &str,
    ) -> ApiResult<PrivacyRequest> {
        let Some(view) = self.store.get_privacy_request(request_id).await? else {
            return Err(ApiError::not_found("privacy request", request_id));
        };
        let document = if view.request.kind == "EXPORT" {
            let parsed: Value = serde_json::from_str(if document_json.is_empty() {
                "{}"
            } else {
                document_json
            })
            .map_err(|e| ApiError::invalid("documentJson", format!("is not JSON: {e}")))?;
            if !parsed.is_object() {
                return Err(ApiError::invalid("documentJson", "must be a JSON object"));
            }
            Some(self.pii.seal(&parsed.to_string()))
        } else {
            if !document_json.is_empty() {
                return Err(ApiError::invalid("documentJson", "must be empty for an erasure"));
            }
            None
        };
        let counts_json = serde_json::to_string(counts).map_err(|e| ApiError::Internal(e.into()))?;
        match self
            .store
            .complete_privacy_part(request_id, service, &counts_json, document.as_deref(), ids::now())
            .await?
        {
            Completed::Done(view) => to_proto(&view),
            Completed::NotFound => Err(ApiError::not_found(
                "privacy request part",
                &format!("{request_id}/{service}"),
            )),
        }
    }

    /// The assembled export of a DONE EXPORT request (admin, or the person).
    pub async fn export(&self, principal: &Principal, id: &str) -> ApiResult<PrivacyExportDocument> {
        let view = self.visible(principal, id).await?;
        let r = &view.request;
        if r.kind != "EXPORT" {
            return Err(ApiError::FailedPrecondition {
                message: format!("privacy request {id} is an erasure: it has no export"),
                reason: "NOT_AN_EXPORT",
            });
        }
        if r.state != "DONE" {
            return Err(ApiError::FailedPrecondition {
                message: format!("privacy request {id} is still pending"),
                reason: "EXPORT_PENDING",
            });
        }
        if r.export_purged_at.is_some() {
            return Err(ApiError::FailedPrecondition {
                message: format!(
                    "the export of privacy request {id} has been deleted (it is kept for a limited time)"
                ),
                reason: "EXPORT_EXPIRED",
            });
        }
        let mut services = serde_json::Map::new();
        for p in &view.parts {
            let doc = match &p.document {
                Some(sealed) => {
                    let plain = self.pii.open(sealed).map_err(|e| ApiError::Internal(e.into()))?;
                    serde_json::from_str(&plain).map_err(|e| ApiError::Internal(e.into()))?
                }
                None => json!({}),
            };
            services.insert(short(&p.service).to_string(), doc);
        }
        let document = json!({
            "personId": r.person_id,
            "requestId": r.id,
            "requestedAt": r.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "generatedAt": r.completed_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "services": services,
        });
        Ok(PrivacyExportDocument {
            request_id: r.id.clone(),
            person_id: r.person_id.clone(),
            document_json: serde_json::to_string_pretty(&document)
                .map_err(|e| ApiError::Internal(e.into()))?,
        })
    }

    /// Does invite-svc's pending parts (oldest first, a batch): each erased or exported by
    /// `data` and recorded; a failure is logged and tried again next round. Returns how many
    /// parts were done.
    pub async fn own_parts<D: PersonData>(&self, data: &D) -> ApiResult<usize> {
        let pending = self.store.pending_privacy_parts(OWN, OWN_BATCH).await?;
        let mut done = 0;
        for row in pending {
            let subject: PrivacySubject = serde_json::from_str(&row.subject_json)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored subject of {}: {e}", row.id)))?;
            let (counts, document) = match row.kind.as_str() {
                "ERASE" => (data.erase(&subject).await?, String::new()),
                _ => {
                    let (counts, doc) = data.export(&subject).await?;
                    (counts, doc.to_string())
                }
            };
            self.record_part(&row.id, OWN, &counts, &document).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Deletes the documents of exports done longer than the retention ago.
    pub async fn purge_exports(&self, now: DateTime<Utc>) -> ApiResult<u64> {
        let before = now
            .checked_sub_signed(self.export_retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        Ok(self.store.purge_privacy_exports(before, 100).await?)
    }
}
