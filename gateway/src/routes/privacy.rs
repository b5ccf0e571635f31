//! `DELETE /v1/people/{id}` and `GET /v1/people/{id}/export`: PrivacyService on every
//! service, answered together. Erasure is idempotent, so a partial failure is reported as
//! the failing service's error (naming every service's outcome) and is safe to retry.

use std::collections::BTreeMap;

use axum::response::Response;
use referral_common::error::ERROR_DOMAIN;
use referral_proto::common::v1::{ErasePersonRequest, ExportPersonRequest};
use serde_json::{Value, json};

use axum::http::Method;

use super::route::{Answer, Body, Handler, JsonFn, Route, Rpc, api};
use crate::mapping::{
    errors::{HttpError, HttpResult},
    json,
};

pub fn erase_handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let request: ErasePersonRequest = json::decode(input)?;
            let calls = state.clients.privacy.iter().map(|(name, client)| {
                let mut client = client.clone();
                let req = ctx.request(request.clone());
                async move { (*name, client.erase_person(req).await.map(|r| r.into_inner())) }
            });
            let results = futures::future::join_all(calls).await;
            combine("erasure", &request.person_id, "reports", results)
        })
    };
    Handler::Json {
        call,
        decodes: |v| json::decode::<ErasePersonRequest>(v).map(|_| ()),
        request_type: std::any::type_name::<ErasePersonRequest>,
    }
}

pub fn export_handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let request: ExportPersonRequest = json::decode(input)?;
            let calls = state.clients.privacy.iter().map(|(name, client)| {
                let mut client = client.clone();
                let req = ctx.request(request.clone());
                async move { (*name, client.export_person(req).await.map(|r| r.into_inner())) }
            });
            let results = futures::future::join_all(calls).await;
            combine("export", &request.person_id, "exports", results)
        })
    };
    Handler::Json {
        call,
        decodes: |v| json::decode::<ExportPersonRequest>(v).map(|_| ()),
        request_type: std::any::type_name::<ExportPersonRequest>,
    }
}

/// `{personId, <key>: [per service]}` when every service answered; otherwise the first
/// failure, with every service's outcome in an ErrorInfo.
fn combine<T: serde::Serialize>(
    what: &str,
    person_id: &str,
    key: &str,
    results: Vec<(&'static str, Result<T, tonic::Status>)>,
) -> HttpResult<Response> {
    let mut outcomes = BTreeMap::new();
    let mut answers = Vec::new();
    let mut first_error: Option<HttpError> = None;
    for (service, result) in results {
        match result {
            Ok(answer) => {
                outcomes.insert(service.to_string(), "OK".to_string());
                answers.push(serde_json::to_value(&answer).unwrap_or(Value::Null));
            }
            Err(status) => {
                let e = HttpError::from_upstream(service, &status);
                outcomes.insert(service.to_string(), format!("{:?}: {}", status.code(), e.message));
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(mut e) = first_error {
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| o.as_str() != "OK")
            .map(|(s, o)| format!("{s} ({o})"))
            .collect();
        e.message = format!("{what} incomplete: {}", failed.join("; "));
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": if what == "erasure" { "PARTIAL_ERASURE" } else { "PARTIAL_EXPORT" },
            "domain": ERROR_DOMAIN,
            "metadata": outcomes,
        }));
        return Err(e);
    }
    Ok(json::respond(&json!({ "personId": person_id, key: answers })))
}

pub fn erasure_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "personId": {"type": "string"},
            "reports": {"type": "array", "items": {"$ref": "#/components/schemas/referral.common.v1.ErasureReport"}},
        },
    })
}

pub fn export_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "personId": {"type": "string"},
            "exports": {"type": "array", "items": {"$ref": "#/components/schemas/referral.common.v1.PersonExport"}},
        },
    })
}

const PRIVACY: &str = "referral.common.v1.PrivacyService";
pub const PRIVACY_TAG: &str = "Privacy";

/// The privacy routes.
pub fn routes() -> Vec<Route> {
    use Body::{None as NoBody, Whole};
    use Method as M;
    vec![
        api(
            M::DELETE,
            "/v1/people/{id}",
            "Erase a person's personal data in every service (admin or the person)",
            PRIVACY_TAG,
            Rpc::new(PRIVACY, "ErasePerson", Whole).param("id", "personId"),
            erase_handler(),
        )
        .answer(Answer::Schema(erasure_schema)),
        api(
            M::GET,
            "/v1/people/{id}/export",
            "Everything every service holds about a person (admin or the person)",
            PRIVACY_TAG,
            Rpc::new(PRIVACY, "ExportPerson", NoBody).param("id", "personId"),
            export_handler(),
        )
        .answer(Answer::Schema(export_schema)),
    ]
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use referral_proto::common::v1::ErasureReport;

    use super::*;

    fn report(service: &str) -> ErasureReport {
        ErasureReport {
            service: service.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn all_answers_combine_per_service() {
        let resp = combine(
            "erasure",
            "p1",
            "reports",
            vec![
                ("invite-svc", Ok(report("invite"))),
                ("fraud-svc", Ok(report("fraud"))),
            ],
        )
        .unwrap();
        let body: Value =
            serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap();
        assert_eq!(body["personId"], "p1");
        assert_eq!(body["reports"][1]["service"], "fraud");
    }

    #[test]
    fn a_failure_names_every_outcome() {
        let e = combine(
            "erasure",
            "p1",
            "reports",
            vec![
                ("invite-svc", Ok(report("invite"))),
                ("fraud-svc", Err(tonic::Status::unimplemented("not yet"))),
            ],
        )
        .unwrap_err();
        assert_eq!(e.status.as_u16(), 501);
        assert!(e.message.contains("fraud-svc"), "{}", e.message);
        let info = e.details.last().unwrap();
        assert_eq!(info["metadata"]["invite-svc"], "OK");
        assert_eq!(info["reason"], "PARTIAL_ERASURE");
    }
}
