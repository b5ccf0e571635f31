//! `referral.common.v1.AuditLog`, served by every service over its own audit table.

use referral_proto::common::v1::{
    ListAuditEntriesRequest, ListAuditEntriesResponse,
    audit_log_server::{AuditLog, AuditLogServer},
};
use tonic::{Request, Response, Status};

use super::{
    cursor::{Cursor, encode_cursor},
    read::{AuditQuery, AuditStore},
};
use crate::{ApiError, auth::Principal, ids};

#[derive(Clone)]
pub struct AuditLogService<S> {
    store: S,
    /// The serving service's name, stamped on every entry it returns.
    service: &'static str,
}

impl<S: AuditStore> AuditLogService<S> {
    pub fn new(store: S, service: &'static str) -> Self {
        Self { store, service }
    }

    pub fn into_server(self) -> AuditLogServer<Self> {
        AuditLogServer::new(self)
    }
}

#[tonic::async_trait]
impl<S: AuditStore> AuditLog for AuditLogService<S> {
    async fn list_audit_entries(
        &self,
        req: Request<ListAuditEntriesRequest>,
    ) -> Result<Response<ListAuditEntriesResponse>, Status> {
        Principal::of(&req)?.require_admin()?;
        let q = AuditQuery::from_request(req.get_ref())?;
        let page = self
            .store
            .list_audit(&q)
            .await
            .map_err(|e| Status::from(ApiError::from(e)))?;
        let next_page_token = match page.entries.last() {
            Some(last) if page.more => {
                // An entry without a readable time would end the listing early, silently.
                let at = last
                    .occurred_at
                    .as_ref()
                    .and_then(ids::from_ts)
                    .ok_or_else(|| Status::internal("an audit entry without a readable time"))?;
                encode_cursor(&Cursor {
                    at,
                    id: last.id.clone(),
                })
            }
            _ => String::new(),
        };
        let entries = page
            .entries
            .into_iter()
            .map(|mut e| {
                e.service = self.service.to_string();
                e
            })
            .collect();
        Ok(Response::new(ListAuditEntriesResponse {
            entries,
            next_page_token,
        }))
    }
}
