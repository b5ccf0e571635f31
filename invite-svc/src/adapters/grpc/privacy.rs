//! `referral.common.v1.PrivacyRequests` over gRPC: decode, authenticate, call the book
//! ([`crate::app::privacy_requests`]), encode.

use referral_common::{audit::Actor, auth::Principal};
use referral_proto::common::v1::{
    CompletePrivacyPartRequest, CreatePrivacyRequestRequest, GetPrivacyRequestRequest, PrivacyExportDocument,
    PrivacyRequest,
    privacy_requests_server::{PrivacyRequests, PrivacyRequestsServer},
};
use tonic::{Request, Response, Status};

use crate::{app::privacy_requests::PrivacyBook, store::Store};

pub struct PrivacyRequestsApi<S> {
    book: PrivacyBook<S>,
}

impl<S: Store> PrivacyRequestsApi<S> {
    pub fn new(book: PrivacyBook<S>) -> Self {
        Self { book }
    }

    pub fn into_server(self) -> PrivacyRequestsServer<Self> {
        PrivacyRequestsServer::new(self)
    }
}

#[tonic::async_trait]
impl<S: Store> PrivacyRequests for PrivacyRequestsApi<S> {
    async fn create_privacy_request(
        &self,
        req: Request<CreatePrivacyRequestRequest>,
    ) -> Result<Response<PrivacyRequest>, Status> {
        let principal = Principal::of(&req)?;
        let actor = Actor::of(&req)?;
        let r = req.get_ref();
        Ok(Response::new(
            self.book.open(&actor, &principal, &r.person_id, r.kind).await?,
        ))
    }

    async fn get_privacy_request(
        &self,
        req: Request<GetPrivacyRequestRequest>,
    ) -> Result<Response<PrivacyRequest>, Status> {
        let principal = Principal::of(&req)?;
        Ok(Response::new(self.book.get(&principal, &req.get_ref().id).await?))
    }

    async fn complete_privacy_part(
        &self,
        req: Request<CompletePrivacyPartRequest>,
    ) -> Result<Response<PrivacyRequest>, Status> {
        let principal = Principal::of(&req)?;
        Ok(Response::new(
            self.book.complete(&principal, req.get_ref()).await?,
        ))
    }

    async fn get_privacy_export(
        &self,
        req: Request<GetPrivacyRequestRequest>,
    ) -> Result<Response<PrivacyExportDocument>, Status> {
        let principal = Principal::of(&req)?;
        Ok(Response::new(
            self.book.export(&principal, &req.get_ref().id).await?,
        ))
    }
}
