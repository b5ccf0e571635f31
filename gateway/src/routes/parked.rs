//! `GET /v1/parked`: every service's `referral.common.v1.ParkedWork`, asked together (or
//! only the one `service=` names) and merged newest id first; and `POST
//! /v1/parked/{id}:retry`, sent to the service the id's prefix names.
//!
//! As for the audit log, a service that cannot answer fails the listing (503 naming it):
//! a list of stuck work that silently leaves a service out would read as "nothing stuck".

use referral_common::parked::{self, ParkedQuery};
use referral_proto::common::v1::{ListParkedRequest, ListParkedResponse, RetryParkedRequest};

use axum::http::Method;

use super::{
    ops::OPS,
    route::{Body, Handler, JsonFn, Route, Rpc, answer, api},
};
use crate::mapping::{errors::HttpError, json};

pub fn list_handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let request: ListParkedRequest = json::decode(input)?;
            let q =
                ParkedQuery::from_request(&request).map_err(|e| HttpError::from(&tonic::Status::from(e)))?;
            let calls = state
                .clients
                .parked
                .iter()
                .filter(|(name, _)| q.service.as_deref().is_none_or(|s| s == *name))
                .map(|(name, client)| {
                    let mut client = client.clone();
                    let req = ctx.request(request.clone());
                    async move { (*name, client.list_parked(req).await.map(|r| r.into_inner())) }
                });
            let results = futures::future::join_all(calls).await;
            let mut answers: Vec<ListParkedResponse> = Vec::new();
            for (service, result) in results {
                answers.push(result.map_err(|status| {
                    let mut e = HttpError::from_upstream(service, &status);
                    e.message = format!("parked work of {service} could not be read: {}", e.message);
                    e
                })?);
            }
            Ok(json::respond(&parked::merge(answers, q.page_size as usize)))
        })
    };
    Handler::Json {
        call,
        request_type: std::any::type_name::<ListParkedRequest>,
        decodes: |v| json::decode::<ListParkedRequest>(v).map(|_| ()),
    }
}

pub fn retry_handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let request: RetryParkedRequest = json::decode(input)?;
            let (prefix, _, _) =
                parked::parse_id(&request.id).map_err(|e| HttpError::from(&tonic::Status::from(e)))?;
            let (service, client) = state
                .clients
                .parked
                .iter()
                .find(|(name, _)| parked::prefix_of(name) == prefix)
                .ok_or_else(|| HttpError::not_found(format!("parked item {} not found", request.id)))?;
            let mut client = client.clone();
            answer(client.retry_parked(ctx.request(request)).await, service)
        })
    };
    Handler::Json {
        call,
        request_type: std::any::type_name::<RetryParkedRequest>,
        decodes: |v| json::decode::<RetryParkedRequest>(v).map(|_| ()),
    }
}

const PARKED: &str = "referral.common.v1.ParkedWork";

/// The parked work routes.
pub fn routes() -> Vec<Route> {
    use Body::{None as NoBody, Whole};
    use Method as M;
    vec![
        api(
            M::GET,
            "/v1/parked",
            "Work the services gave up retrying on their own, newest id first, merged from every service (admin): \
            events a consumer could not apply CONSUMER_PARK_AFTER times (kind EVENT) and invitation sends that panicked \
            PARK_AFTER times (kind SEND). service= asks one service only; a service that cannot answer fails the read (503 naming it)",
            OPS,
            Rpc::new(PARKED, "ListParked", NoBody),
            list_handler(),
        ),
        api(
            M::POST,
            "/v1/parked/{id}:retry",
            "Retry parked work now (admin, audited): an event is re-applied through its consumer \
            (outcome APPLIED, gone from the list; or FAILED, still parked with the new reason and attempts + 1, answered 200 with \
            retried false), a send is released to the scheduler (RELEASED). The id's prefix names the service",
            OPS,
            Rpc::new(PARKED, "RetryParked", Whole),
            retry_handler(),
        ),
    ]
}
