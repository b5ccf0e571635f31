//! `referral.common.v1.ParkedWork`, served by every service over its own parked events
//! (and, in invite-svc, its parked sends).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use referral_proto::common::v1::{
    ListParkedRequest, ListParkedResponse, Parked, ParkedKind, RetryOutcome, RetryParkedRequest,
    RetryParkedResponse,
    parked_work_server::{ParkedWork, ParkedWorkServer},
};
use serde_json::json;
use tonic::{Request, Response, Status};

use super::{ParkedRow, Parking, before, decode_cursor, merge, parse_id, prefix_of, public_id};
use crate::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids, paging,
};

/// A send invite-svc's scheduler parked (it panicked PARK_AFTER times).
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedSend {
    pub invitation_id: String,
    pub reason: String,
    pub attempts: i64,
    pub parked_at: DateTime<Utc>,
}

/// Parked work a service keeps in its own rows (invite-svc's sends).
#[tonic::async_trait]
pub trait ParkedSends: Send + Sync + 'static {
    /// Parked sends with an invitation id below `before`, highest first, at most `limit`.
    async fn parked_sends(&self, before: &str, limit: i64) -> anyhow::Result<Vec<ParkedSend>>;
    /// Releases a parked send to the scheduler, writing `entry`'s audit row in the same
    /// transaction; false when no such send is parked.
    async fn release_parked_send(&self, invitation_id: &str, entry: &AuditEntry) -> anyhow::Result<bool>;
}

#[derive(Clone)]
pub struct ParkedWorkService {
    parking: Parking,
    /// The serving service's name, stamped on every item it returns.
    service: &'static str,
    sends: Option<Arc<dyn ParkedSends>>,
}

impl ParkedWorkService {
    pub fn new(parking: Parking, service: &'static str) -> Self {
        Self {
            parking,
            service,
            sends: None,
        }
    }

    pub fn with_sends(mut self, sends: impl ParkedSends) -> Self {
        self.sends = Some(Arc::new(sends));
        self
    }

    pub fn into_server(self) -> ParkedWorkServer<Self> {
        ParkedWorkServer::new(self)
    }

    fn event(&self, r: &ParkedRow) -> Parked {
        Parked {
            id: public_id(self.service, "event", &r.id),
            service: self.service.to_string(),
            kind: ParkedKind::Event as i32,
            source: r.source.clone(),
            consumer: r.consumer.clone(),
            subject: r.event_id.clone(),
            event_type: r.event_type.clone(),
            offset: r.offset,
            reason: r.reason.clone(),
            attempts: r.attempts,
            first_failed_at: Some(ids::to_ts(r.first_failed_at)),
            last_failed_at: Some(ids::to_ts(r.last_failed_at)),
        }
    }

    fn send(&self, s: ParkedSend) -> Parked {
        Parked {
            id: public_id(self.service, "send", &s.invitation_id),
            service: self.service.to_string(),
            kind: ParkedKind::Send as i32,
            subject: s.invitation_id,
            reason: s.reason,
            attempts: s.attempts,
            first_failed_at: Some(ids::to_ts(s.parked_at)),
            last_failed_at: Some(ids::to_ts(s.parked_at)),
            ..Default::default()
        }
    }

    pub(crate) async fn list(&self, req: &ListParkedRequest) -> ApiResult<ListParkedResponse> {
        let q = ParkedQuery::from_request(req)?;
        if q.service.as_deref().is_some_and(|s| s != self.service) {
            return Ok(ListParkedResponse::default());
        }
        let before = before(q.after.as_deref());
        let limit = i64::from(q.page_size) + 1;
        let mut answers = Vec::new();
        if q.kind != Some(ParkedKind::Send) {
            let rows = self.parking.db().list(before, limit).await?;
            answers.push(page(rows.iter().map(|r| self.event(r)).collect(), limit));
        }
        if let Some(sends) = self.sends.as_ref().filter(|_| q.kind != Some(ParkedKind::Event)) {
            let rows = sends.parked_sends(before, limit).await?;
            answers.push(page(rows.into_iter().map(|s| self.send(s)).collect(), limit));
        }
        Ok(merge(answers, q.page_size as usize))
    }

    pub(crate) async fn retry(&self, actor: &Actor, id: &str) -> ApiResult<RetryParkedResponse> {
        let (prefix, kind, local) = parse_id(id)?;
        if prefix != prefix_of(self.service) {
            return Err(ApiError::not_found("parked item", id));
        }
        let entry = AuditEntry::new(actor, action::PARKED_RETRY, &format!("parked_{kind}"), id);
        if kind == "send" {
            let Some(sends) = &self.sends else {
                return Err(ApiError::not_found("parked item", id));
            };
            let entry = entry.after(json!({"outcome": "RELEASED"}));
            if !sends.release_parked_send(&local, &entry).await? {
                return Err(ApiError::not_found("parked item", id));
            }
            return Ok(RetryParkedResponse {
                retried: true,
                outcome: RetryOutcome::Released as i32,
                parked: None,
            });
        }
        let db = self.parking.db();
        let row = db
            .get(&local)
            .await?
            .ok_or_else(|| ApiError::not_found("parked item", id))?;
        let event = row.event().ok_or_else(|| ApiError::FailedPrecondition {
            message: format!("parked item {id} holds no readable event"),
            reason: "PARKED_EVENT_UNREADABLE",
        })?;
        let outcome = self.parking.reapply(&row.consumer, &row.source, event).await;
        let before = json!({"reason": row.reason, "attempts": row.attempts});
        match outcome {
            None => Err(ApiError::FailedPrecondition {
                message: format!(
                    "no consumer of the {} log runs as {} in {} now: start it, then retry",
                    row.source, row.consumer, self.service
                ),
                reason: "CONSUMER_NOT_RUNNING",
            }),
            Some(Ok(())) => {
                let entry = entry.before(before).after(json!({"outcome": "APPLIED"}));
                db.settle(&local, None, &entry).await?;
                metrics::counter!("parked_retried_total", "service" => self.service, "outcome" => "applied")
                    .increment(1);
                Ok(RetryParkedResponse {
                    retried: true,
                    outcome: RetryOutcome::Applied as i32,
                    parked: None,
                })
            }
            Some(Err(reason)) => {
                let entry = entry
                    .before(before)
                    .after(json!({"outcome": "FAILED", "reason": reason, "attempts": row.attempts + 1}));
                if !db.settle(&local, Some((&reason, ids::now())), &entry).await? {
                    return Err(ApiError::not_found("parked item", id));
                }
                metrics::counter!("parked_retried_total", "service" => self.service, "outcome" => "failed")
                    .increment(1);
                let parked = db.get(&local).await?.map(|r| self.event(&r));
                Ok(RetryParkedResponse {
                    retried: false,
                    outcome: RetryOutcome::Failed as i32,
                    parked,
                })
            }
        }
    }
}

/// One kind's rows as an answer to merge: a token when it filled `limit` (more follow).
fn page(parked: Vec<Parked>, limit: i64) -> ListParkedResponse {
    let full = parked.len() as i64 >= limit;
    ListParkedResponse {
        parked,
        next_page_token: if full { "more".into() } else { String::new() },
    }
}

/// A validated `ListParked` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedQuery {
    pub service: Option<String>,
    pub kind: Option<ParkedKind>,
    pub after: Option<String>,
    pub page_size: u32,
}

impl ParkedQuery {
    /// 400s name the field: an unknown service, a kind out of range, a negative page size,
    /// a token we did not issue.
    pub fn from_request(req: &ListParkedRequest) -> ApiResult<ParkedQuery> {
        let mut v = Violations::default();
        let service = (!req.service.is_empty()).then(|| req.service.clone());
        if service.as_deref().is_some_and(|s| !super::SERVICES.contains(&s)) {
            v.add(
                "service",
                format!("must be one of {}", super::SERVICES.join(", ")),
            );
        }
        let kind = match ParkedKind::try_from(req.kind) {
            Ok(ParkedKind::Unspecified) => None,
            Ok(k) => Some(k),
            Err(_) => {
                v.add("kind", "must be EVENT or SEND");
                None
            }
        };
        let page_size = paging::page_size(req.page_size).unwrap_or_else(|_| {
            v.add("pageSize", "must not be negative");
            paging::DEFAULT_PAGE_SIZE
        });
        let after = decode_cursor(&req.page_token).unwrap_or_else(|_| {
            v.add("pageToken", "is not a parked page token this API issued");
            None
        });
        v.into_result()?;
        Ok(ParkedQuery {
            service,
            kind,
            after,
            page_size,
        })
    }
}

#[tonic::async_trait]
impl ParkedWork for ParkedWorkService {
    async fn list_parked(
        &self,
        req: Request<ListParkedRequest>,
    ) -> Result<Response<ListParkedResponse>, Status> {
        Principal::of(&req)?.require_admin()?;
        Ok(Response::new(self.list(req.get_ref()).await?))
    }

    async fn retry_parked(
        &self,
        req: Request<RetryParkedRequest>,
    ) -> Result<Response<RetryParkedResponse>, Status> {
        Principal::of(&req)?.require_admin()?;
        let actor = Actor::of(&req)?;
        Ok(Response::new(self.retry(&actor, &req.get_ref().id).await?))
    }
}
