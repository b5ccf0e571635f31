//! `/openapi.json` and the router come from one table: every documented operation is
//! routed, every route is documented, and every schema reference resolves.

mod support;

use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
};
use gateway::routes::{Handler, table};
use referral_common::auth::Role;
use serde_json::Value;
use support::*;

async fn document() -> (TestGateway, Value) {
    let gw = gateway(config()).await;
    let doc = gw.send(get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.header("content-type"), "application/json");
    let json = doc.json();
    (gw, json)
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let (gw, doc) = document().await;
    let admin = gw.bearer("admin", Role::Admin);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let uri = path
                .split('/')
                .map(|seg| match seg.find('}') {
                    Some(end) if seg.starts_with('{') => format!("LOVE-ABC234{}", &seg[end + 1..]),
                    _ => seg.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("authorization", &admin)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let reply = gw.send(req).await;
            // The services are unreachable: routed requests answer 503 (or their own
            // status); only the router answers 404/405 with "no route".
            assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            let unrouted = reply.status == StatusCode::NOT_FOUND && reply.text().contains("no route");
            assert!(!unrouted, "{method} {uri} is documented but not routed");
            checked += 1;
        }
    }
    assert_eq!(checked, table().len(), "one documented operation per route");
    assert!(checked >= 45, "{checked}");
}

#[tokio::test]
async fn every_route_is_documented_with_its_parameters() {
    let (_gw, doc) = document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    for route in table() {
        let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{} {} missing", route.method, route.path);
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for p in route.path_params() {
            assert!(params.contains(&p), "{}: path parameter {p}", route.path);
        }
        for q in route.query_params() {
            assert!(
                params.contains(&q.name.as_str()),
                "{}: query parameter {}",
                route.path,
                q.name
            );
        }
        let secured = op["security"].as_array().unwrap().len() == 1;
        assert_eq!(
            secured,
            route.auth == gateway::routes::Auth::Bearer,
            "{}",
            route.path
        );
    }
    let list = &doc["paths"]["/v1/invitations"]["get"]["parameters"];
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for q in ["referrerId", "status", "pageSize", "pageToken"] {
        assert!(names.contains(&q), "{names:?}");
    }
    let viral: Vec<&str> = doc["paths"]["/v1/metrics/viral"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for q in ["from", "to", "flow", "referrerKind", "vendorType"] {
        assert!(viral.contains(&q), "{viral:?}");
    }
}

#[tokio::test]
async fn schemas_follow_the_proto3_json_mapping() {
    let (_gw, doc) = document().await;
    let schemas = &doc["components"]["schemas"];
    let invitation = &schemas["referral.invite.v1.Invitation"]["properties"];
    assert_eq!(invitation["referrerId"]["type"], "string");
    assert_eq!(invitation["createdAt"]["format"], "date-time");
    assert_eq!(
        invitation["status"]["$ref"],
        "#/components/schemas/referral.invite.v1.InvitationStatus"
    );
    let status = &schemas["referral.invite.v1.InvitationStatus"];
    assert!(
        status["enum"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "PENDING_REVIEW")
    );
    // int64: a decimal string on output, a string or a number on input.
    let amount = &schemas["referral.common.v1.Money"]["properties"]["amountMinor"];
    assert_eq!(amount["type"], serde_json::json!(["string", "integer"]));
    assert_eq!(amount["pattern"], "^-?[0-9]{1,19}$");
    // The unset enum value is neither accepted nor written.
    for (name, schema) in schemas.as_object().unwrap() {
        if let Some(values) = schema["enum"].as_array() {
            assert!(
                values
                    .iter()
                    .all(|v| !v.as_str().unwrap().ends_with("_UNSPECIFIED")),
                "{name}: {values:?}"
            );
        }
        // Unknown properties are refused by the decoder: the schema says so.
        if name.starts_with("referral.") && schema["type"] == "object" {
            assert_eq!(schema["additionalProperties"], false, "{name}");
        }
    }
    // Durations as the server writes them ("2s"), not RFC 3339's PT2S.
    let text = doc.to_string();
    assert!(!text.contains("\"format\":\"duration\""));
    assert_eq!(
        schemas["referral.common.v1.Risk"]["properties"]["signals"]["type"],
        "array"
    );
    assert_eq!(
        schemas["referral.common.v1.ErasureReport"]["properties"]["erased"]["additionalProperties"]["type"],
        serde_json::json!(["string", "integer"])
    );
    assert_eq!(schemas["Error"]["required"][0], "code");
    // Every reference resolves.
    for piece in text.split("\"$ref\":\"").skip(1) {
        let target = piece.split('"').next().unwrap();
        let (kind, name) = target
            .trim_start_matches("#/components/")
            .split_once('/')
            .unwrap();
        assert!(
            doc["components"][kind][name].is_object(),
            "dangling $ref {target}"
        );
    }
    // PUT /v1/reward-programs/{id} takes the program itself as its body.
    let put = &doc["paths"]["/v1/reward-programs/{id}"]["put"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        put["$ref"],
        "#/components/schemas/referral.incentive.v1.RewardProgram"
    );
}

#[test]
fn each_handler_decodes_its_rpcs_input_type() {
    for route in table() {
        let (Some(rpc), Handler::Json { request_type, .. }) = (&route.rpc, &route.handler) else {
            continue;
        };
        let (input, _, _) = rpc.messages().unwrap_or_else(|| {
            panic!(
                "{} {}/{} is not in the descriptors",
                route.path, rpc.service, rpc.method
            )
        });
        // referral.invite.v1.CreateInvitationRequest <-> referral_proto::invite::v1::CreateInvitationRequest
        let rust = request_type().replace("::", ".");
        let proto_tail = input.trim_start_matches("referral.");
        assert!(
            rust.ends_with(proto_tail),
            "{}: handler decodes {rust}, RPC takes {input}",
            route.path
        );
    }
}
