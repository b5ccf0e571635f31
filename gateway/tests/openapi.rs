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
        schemas["referral.common.v1.PrivacyReceipt"]["properties"]["counts"]["additionalProperties"]["type"],
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
    for field in ["name", "currency", "milestones", "holdPeriod"] {
        assert!(put["properties"][field].is_object(), "{field}: {put}");
    }
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

/// Every object schema below `schema` (following `$ref`s once) is closed and says which
/// fields it requires: a regression here lets schemathesis's valid requests be refused.
fn assert_strict_objects(doc: &Value, schema: &Value, at: &str, seen: &mut Vec<String>) {
    match schema {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                if seen.contains(r) {
                    return;
                }
                seen.push(r.clone());
                let name = r.trim_start_matches("#/components/schemas/");
                return assert_strict_objects(doc, &doc["components"]["schemas"][name], at, seen);
            }
            if m.get("type") == Some(&Value::from("object")) && m.contains_key("properties") {
                assert_eq!(m["additionalProperties"], false, "{at}: not closed");
                assert!(m["required"].is_array(), "{at}: no `required` list");
                for name in m["required"].as_array().unwrap() {
                    assert!(
                        m["properties"].get(name.as_str().unwrap()).is_some(),
                        "{at}: requires {name}, which it does not define"
                    );
                }
            }
            for (k, v) in m {
                assert_strict_objects(doc, v, &format!("{at}.{k}"), seen);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_strict_objects(doc, v, at, seen)),
        _ => {}
    }
}

#[tokio::test]
async fn request_bodies_are_closed_with_their_required_fields() {
    let (_gw, doc) = document().await;
    let mut bodies = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema") else {
                continue;
            };
            bodies += 1;
            let at = format!("{method} {path}");
            assert_eq!(schema["type"], "object", "{at}: a body is a JSON object");
            assert_strict_objects(&doc, schema, &at, &mut Vec::new());
            // A body that requires fields must be sent (an absent one reads as `{}`).
            let requires = schema["required"].as_array().is_some_and(|r| !r.is_empty());
            assert_eq!(op["requestBody"]["required"], requires, "{at}");
        }
    }
    assert!(bodies >= 15, "{bodies} JSON bodies");
    // What the services require is required in the document.
    let body = |path: &str, method: &str| {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
    };
    let invitation = body("/v1/invitations", "post");
    for f in ["referrerId", "referrerKind", "refereeKind", "channel"] {
        assert!(
            invitation["required"]
                .as_array()
                .unwrap()
                .contains(&Value::from(f)),
            "{f}"
        );
    }
    assert_eq!(
        invitation["properties"]["recipient"]["properties"]["name"]["maxLength"],
        200
    );
    assert_eq!(invitation["properties"]["message"]["maxLength"], 2000);
    assert_eq!(
        invitation["properties"]["utm"]["properties"]["source"]["maxLength"],
        200
    );
    let conversion = body("/v1/conversions", "post");
    let amount = &conversion["properties"]["value"]["properties"]["amountMinor"];
    assert_eq!(amount["minimum"], 1);
    assert_eq!(amount["maximum"], 100_000_000_000i64);
    let program = body("/v1/reward-programs/{id}", "put");
    assert!(
        program["required"]
            .as_array()
            .unwrap()
            .contains(&Value::from("name"))
    );
    assert_eq!(program["properties"]["milestones"]["maxItems"], 50);
}

/// A batch's items are judged one by one (docs/api.md, "Batches"): an item missing a field
/// the single create requires is answered in its result, with 200, so the document must not
/// call that field required — only the batch's own fields and the list's size are a 400.
#[tokio::test]
async fn batch_items_state_their_shape_and_per_item_judgement() {
    let (_gw, doc) = document().await;
    let batch = &doc["paths"]["/v1/invitations:batchCreate"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        batch["required"],
        serde_json::json!(["referrerId", "invitations"])
    );
    assert_eq!(batch["properties"]["referrerId"]["minLength"], 1);
    let list = &batch["properties"]["invitations"];
    assert_eq!(
        (list["minItems"].clone(), list["maxItems"].clone()),
        (1.into(), 100.into())
    );
    assert_eq!(list["x-judged-per-item"], true);
    assert!(
        list["description"].as_str().unwrap().contains("per-item `error`"),
        "{}",
        list["description"]
    );
    let item = &list["items"];
    // The shape stays: a closed object, enums by name, types, nested messages closed.
    assert_eq!(item["type"], "object");
    assert_eq!(item["additionalProperties"], false);
    assert_eq!(item["required"], serde_json::json!([]));
    assert!(item["properties"]["channel"]["$ref"].is_string());
    assert_eq!(item["properties"]["recipient"]["additionalProperties"], false);
    assert_eq!(item["properties"]["recipient"]["required"], serde_json::json!([]));
    // The rules do not: they are the single create's, answered per item.
    for field in ["referrerId", "message", "weddingDate"] {
        let schema = &item["properties"][field];
        assert_eq!(schema["type"], "string", "{field}");
        for keyword in ["minLength", "maxLength", "pattern", "allOf"] {
            assert!(schema.get(keyword).is_none(), "{field}: {keyword}");
        }
    }
    assert!(
        item["properties"]["recipient"]["properties"]["name"]
            .get("maxLength")
            .is_none()
    );
    // The single create still states them.
    let single =
        &doc["paths"]["/v1/invitations"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert!(single["required"].as_array().unwrap().contains(&"channel".into()));
    assert_eq!(single["properties"]["message"]["maxLength"], 2000);
}

/// The headers the edge reads on every route (`X-Device-Id`, `Idempotency-Key`) are stated
/// as it checks them, on the redirect as on the JSON routes: each value below is refused
/// (400 naming the header) exactly when the document's schema refuses it.
#[tokio::test]
async fn header_schemas_say_what_the_edge_refuses() {
    let (gw, doc) = document().await;
    let admin = gw.bearer("admin", Role::Admin);
    let header_schema = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path}: no {name}"))["schema"]
            .clone()
    };
    let allows = |schema: &Value, value: &str| {
        let re = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        re.is_match(value) && value.chars().count() as u64 <= schema["maxLength"].as_u64().unwrap()
    };
    let long = "d".repeat(129);
    let longer = "k".repeat(256);
    let cases: [(&str, &str, &str, &[&str]); 3] = [
        (
            "/r/{code}",
            "get",
            "x-device-id",
            &["dev-3", "a b~!", "zx\t#B c", long.as_str()],
        ),
        (
            "/v1/clicks",
            "post",
            "x-device-id",
            &["dev-3", "zx\t#B c", long.as_str()],
        ),
        (
            "/v1/clicks",
            "post",
            "idempotency-key",
            &["key-1", "a\tb", &longer[..255], &longer],
        ),
    ];
    for (path, method, name, values) in cases {
        let documented = if name == "x-device-id" {
            "X-Device-Id"
        } else {
            "Idempotency-Key"
        };
        let schema = header_schema(path, method, documented);
        for value in values {
            let uri = path.replace("{code}", "LOVE-ABC234");
            let req = Request::builder()
                .method(method.to_ascii_uppercase().as_str())
                .uri(&uri)
                .header("authorization", &admin)
                .header("content-type", "application/json")
                .header(name, *value)
                .body(Body::from("{}"))
                .unwrap();
            let reply = gw.send(req).await;
            let refused = reply.status == StatusCode::BAD_REQUEST && reply.violation().0 == name;
            assert_eq!(
                refused,
                !allows(&schema, value),
                "{method} {path} {name}: {value:?} answered {}",
                reply.status
            );
        }
    }
}

#[tokio::test]
async fn no_unspecified_enum_value_anywhere() {
    let (_gw, doc) = document().await;
    fn walk(v: &Value, at: &str) {
        match v {
            Value::Object(m) => {
                if let Some(values) = m.get("enum").and_then(Value::as_array) {
                    for value in values {
                        assert!(
                            !value.as_str().is_some_and(|s| s.ends_with("_UNSPECIFIED")),
                            "{at}: {value}"
                        );
                    }
                }
                m.iter().for_each(|(k, v)| walk(v, &format!("{at}.{k}")));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, at)),
            _ => {}
        }
    }
    walk(&doc, "");
    // Integers in a query are read as numbers (in a body, a number or its decimal string).
    let size = doc["paths"]["/v1/invitations"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pageSize")
        .unwrap()["schema"]
        .clone();
    assert_eq!(size["minimum"], 0);
    assert_eq!(size["type"], "integer");
}
