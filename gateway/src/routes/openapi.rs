//! `/openapi.json` (OpenAPI 3.1) from the route table and the proto descriptors: every
//! route with its parameters, bodies, answers and auth; every message it touches as a JSON
//! schema in proto3 JSON terms (lowerCamelCase names, int64 as strings, enums by name,
//! timestamps as date-time strings).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::{
    route::{Answer, Auth, Body, Route},
    table::table,
};
use crate::mapping::{
    descriptor::{self, Kind, well_known_scalar},
    input_rules,
};

const SCHEMAS: &str = "#/components/schemas/";

pub fn document(public_url: &str) -> Value {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let mut tags: Vec<&str> = Vec::new();
    for route in table() {
        if !tags.contains(&route.tag) {
            tags.push(route.tag);
        }
        let op = operation(route, &mut wanted);
        paths
            .entry(route.path)
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), op);
    }
    let mut schemas = Map::new();
    let mut queue: Vec<String> = wanted.into_iter().collect();
    while let Some(name) = queue.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        let schema = if descriptor::get().enums.contains_key(&name) {
            enum_schema(&name)
        } else {
            message_schema(&name, &mut queue)
        };
        schemas.insert(name, schema);
    }
    schemas.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "referral-mesh",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Referral and viral-growth engine of a wedding marketplace: the HTTP/JSON gateway in front of \
                            invite-svc, fraud-svc, incentive-svc and analytics-svc. Bodies are the proto3 JSON mapping \
                            of the services' messages: lowerCamelCase fields, enums by name, int64 as strings \
                            (numbers accepted), RFC 3339 timestamps; unknown fields are rejected. Errors are \
                            `{code, message, details}` with the gRPC code number and google.rpc details.",
        },
        "servers": [{"url": public_url}],
        "tags": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "A web JWT (sub, role member|admin, kind SUPPLIER|COUPLE for members, exp), \
                                               or an API key `rmk_...` (server to server) on the routes whose \
                                               `x-api-key-scope` it holds"},
            },
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "An error: the gRPC code number, a message and google.rpc details",
                    "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}Error")}}},
                },
                "RateLimited": {
                    "description": "Rate limit exceeded",
                    "headers": {
                        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"},
                        "RateLimit-Policy": {"schema": {"type": "string"}},
                        "RateLimit": {"schema": {"type": "string"}},
                    },
                    "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}Error")}}},
                },
            },
        },
    })
}

fn operation(route: &Route, wanted: &mut BTreeSet<String>) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), json!(route.operation));
    op.insert("summary".into(), json!(route.summary));
    if let Some(scope) = route.key_scope {
        op.insert(
            "description".into(),
            json!(format!("API keys need the `{scope}` scope.")),
        );
        op.insert("x-api-key-scope".into(), json!(scope.as_str()));
    }
    op.insert("tags".into(), json!([route.tag]));
    op.insert(
        "security".into(),
        match route.auth {
            Auth::Bearer => json!([{"bearerAuth": []}]),
            Auth::Open => json!([]),
        },
    );
    let messages = route.rpc.as_ref().and_then(|r| r.messages());

    let input = messages.as_ref().map(|(input, _, _)| input.as_str());
    let mut params = Vec::new();
    for p in route.path_params() {
        let field = route.field_of(p);
        let mut schema = json!({"type": "string"});
        if let Some(rule) = input.and_then(|m| input_rules::lookup(m, &[field.to_string()])) {
            rule.apply(&mut schema);
        }
        params.push(json!({
            "name": p, "in": "path", "required": true, "schema": schema,
            "description": if route.rpc.is_some() { format!("The request's `{field}`") } else { String::new() },
        }));
    }
    for q in route.query_params() {
        let rule = input.and_then(|m| input_rules::lookup(m, &q.path));
        let mut schema = input_rules::int_schema(&q.kind, rule.as_ref(), true)
            .unwrap_or_else(|| kind_schema(&q.kind, wanted));
        if q.repeated {
            schema = json!({"type": "array", "items": schema});
        }
        if let Some(rule) = &rule {
            rule.apply(&mut schema);
        }
        let required = rule.is_some_and(|r| r.required);
        let mut p = json!({"name": q.name, "in": "query", "required": required, "schema": schema});
        if q.repeated {
            p["explode"] = json!(true);
        }
        if let Some(c) = &q.comment {
            p["description"] = json!(c);
        }
        params.push(p);
    }
    let writes = route.rpc.is_some() && route.method != axum::http::Method::GET;
    if writes {
        // `CallContext::from_parts`: printable ASCII (a tab may travel as metadata), at most
        // 255 characters, or a 400 naming the header.
        params.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "maxLength": 255, "pattern": "^[\\t -~]*$"},
            "description": "Same key and body within 24 h replays the first response; another body is 422; a retry while the first runs is 409",
        }));
    }
    if route.rpc.as_ref().is_some_and(|r| r.client_fields) || matches!(route.answer, Answer::Redirect) {
        // `CallContext::from_parts` reads it on every route, the redirect included: an id of
        // printable ASCII without tabs, at most ID_MAX characters, or a 400 naming the header.
        // A JSON route makes it the request's `deviceId`; the redirect records it with the click.
        let schema = json!({
            "type": "string", "maxLength": referral_common::input::ID_MAX, "pattern": "^[ -~]*$",
        });
        params.push(json!({"name": "X-Device-Id", "in": "header", "required": false, "schema": schema}));
    }
    params.push(json!({
        "name": "X-Request-Id", "in": "header", "required": false, "schema": {"type": "string"},
        "description": "Kept when sane, generated (UUIDv7) otherwise; returned and passed to the services",
    }));
    op.insert("parameters".into(), Value::Array(params));

    if let (Some(rpc), Some((input, _, _))) = (&route.rpc, &messages) {
        // Fields the path fills are not the body's (a copy in the body is overridden).
        let from_path: Vec<&str> = route
            .path_params()
            .into_iter()
            .map(|p| route.field_of(p))
            .collect();
        let body_schema = match rpc.body {
            Body::None => None,
            Body::Whole => Some(input_schema(Some(input), input, &[], &from_path, wanted)),
            Body::Field(f) => descriptor::get()
                .fields(input)
                .into_iter()
                .find(|x| x.json_name == f)
                .map(|x| match &x.kind {
                    Kind::Message(m) if !x.kind.is_scalar_like() => {
                        input_schema(Some(input), m, &[f.to_string()], &[], wanted)
                    }
                    kind => kind_schema(kind, wanted),
                }),
        };
        if let Some(schema) = body_schema {
            // An absent body is `{}`: required only when `{}` would be refused.
            let required = schema["required"].as_array().is_some_and(|r| !r.is_empty());
            op.insert(
                "requestBody".into(),
                json!({"required": required, "content": {"application/json": {"schema": schema}}}),
            );
        }
    }
    if let Some(schema) = route.body_schema {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": schema()}}}),
        );
    }
    if let Some(description) = route.raw_body {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "description": description, "content": {"*/*": {"schema": {}}}}),
        );
    }

    let mut responses = Map::new();
    let ok = match route.answer {
        Answer::Rpc => match &messages {
            Some((_, output, _)) => json_content("OK", reference(output, wanted)),
            None => json!({"description": "OK"}),
        },
        Answer::Accepted => {
            if let Some((_, output, _)) = &messages {
                responses.insert(
                    "202".into(),
                    json_content("Accepted: the work completes later", reference(output, wanted)),
                );
            }
            Value::Null
        }
        Answer::Message(name) => json_content("OK", reference(name, wanted)),
        Answer::Schema(f) => {
            let schema = f();
            collect_refs(&schema, wanted);
            json_content("OK", schema)
        }
        Answer::EventStream(name) => {
            let item = reference(name, wanted);
            json!({
                "description": format!("Server-sent events: `event:` is the event type (`lagged` for a notice that events were dropped, `error` before the end), `data:` one {name} as JSON"),
                "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-data": item}},
            })
        }
        Answer::Html => {
            json!({"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}})
        }
        Answer::Text(media_type) => {
            json!({"description": "OK", "content": {media_type: {"schema": {"type": "string"}}}})
        }
        Answer::Redirect => {
            responses.insert(
                "302".into(),
                json!({
                    "description": "To the code's landing URL, with a 90-day first-party attribution cookie",
                    "headers": {
                        "Location": {"schema": {"type": "string", "format": "uri"}},
                        "Set-Cookie": {"schema": {"type": "string"}, "description": "rm_click=<click id>; Max-Age=7776000; Path=/; HttpOnly; SameSite=Lax"},
                    },
                }),
            );
            responses.insert(
                "404".into(),
                json!({"description": "Unknown code", "content": {"text/html": {"schema": {"type": "string"}}}}),
            );
            Value::Null
        }
    };
    if !ok.is_null() {
        responses.insert("200".into(), ok);
    }
    if route.path == "/readyz" {
        responses.insert(
            "503".into(),
            json_content("A service is not ready", route.answer.schema()),
        );
    }
    if route.rpc.is_some() || route.raw_body.is_some() {
        responses.insert("400".into(), json!({"$ref": "#/components/responses/Error"}));
    }
    if route.auth == Auth::Bearer {
        responses.insert("401".into(), json!({"$ref": "#/components/responses/Error"}));
        responses.insert("403".into(), json!({"$ref": "#/components/responses/Error"}));
    }
    if !route.path_params().is_empty() && !responses.contains_key("404") {
        responses.insert("404".into(), json!({"$ref": "#/components/responses/Error"}));
    }
    responses.insert(
        "429".into(),
        json!({"$ref": "#/components/responses/RateLimited"}),
    );
    responses.insert("default".into(), json!({"$ref": "#/components/responses/Error"}));
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

impl Answer {
    fn schema(&self) -> Value {
        match self {
            Answer::Schema(f) => f(),
            _ => json!({}),
        }
    }
}

fn json_content(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A proto3 JSON duration as the server writes it (`"2s"`, `"0.500s"`): not RFC 3339's
/// `format: duration` (`PT2S`), so a pattern says it.
const DURATION_PATTERN: &str = r"^-?[0-9]{1,12}(\.[0-9]{1,9})?s$";

fn reference(name: &str, wanted: &mut BTreeSet<String>) -> Value {
    match name {
        "google.protobuf.Duration" => {
            return json!({"type": "string", "pattern": DURATION_PATTERN,
                          "description": "Seconds with an `s` suffix, e.g. `2s`, `0.5s`, `1209600s`"});
        }
        // Any JSON value, an object of them, a list of them (audit entries' before/after).
        "google.protobuf.Value" => return json!({}),
        "google.protobuf.Struct" => return json!({"type": "object"}),
        "google.protobuf.ListValue" => return json!({"type": "array"}),
        "google.protobuf.Int64Value" => return int64_schema(false),
        "google.protobuf.UInt64Value" => return int64_schema(true),
        _ => {}
    }
    if let Some((ty, format)) = well_known_scalar(name) {
        return scalar(ty, format);
    }
    wanted.insert(name.to_string());
    json!({"$ref": format!("{SCHEMAS}{name}")})
}

fn scalar(ty: &str, format: Option<&str>) -> Value {
    match format {
        Some(f) => json!({"type": ty, "format": f}),
        None => json!({"type": ty}),
    }
}

fn kind_schema(kind: &Kind, wanted: &mut BTreeSet<String>) -> Value {
    match kind {
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 => json!({"type": "integer", "format": "int32"}),
        Kind::Uint32 => json!({"type": "integer", "format": "uint32", "minimum": 0}),
        Kind::Int64 => int64_schema(false),
        Kind::Uint64 => int64_schema(true),
        Kind::Float => json!({"type": "number", "format": "float"}),
        Kind::Double => json!({"type": "number", "format": "double"}),
        Kind::Enum(name) | Kind::Message(name) => reference(name, wanted),
        Kind::Map(_, value) => json!({"type": "object", "additionalProperties": kind_schema(value, wanted)}),
    }
}

/// proto3 JSON int64: written as a decimal string, read as a string or a number.
fn int64_schema(unsigned: bool) -> Value {
    let (pattern, min, max) = if unsigned {
        (r"^[0-9]{1,20}$", json!(0), json!(u64::MAX))
    } else {
        (r"^-?[0-9]{1,19}$", json!(i64::MIN), json!(i64::MAX))
    };
    json!({
        "type": ["string", "integer"],
        "pattern": pattern,
        "minimum": min,
        "maximum": max,
        "description": "64-bit integer, written as a decimal string (a number is accepted on input)",
    })
}

fn message_schema(name: &str, queue: &mut Vec<String>) -> Value {
    let d = descriptor::get();
    let mut wanted = BTreeSet::new();
    let mut properties = Map::new();
    for f in d.fields(name) {
        let mut schema = kind_schema(&f.kind, &mut wanted);
        if f.repeated {
            schema = json!({"type": "array", "items": schema});
        }
        if let Some(c) = &f.comment {
            schema["description"] = json!(c);
        }
        properties.insert(f.json_name, schema);
    }
    queue.extend(wanted);
    // The JSON decoder refuses unknown fields (json.rs), and answers carry only known ones.
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if let Some(c) = d.comment(name) {
        schema["description"] = json!(c);
    }
    schema
}

/// A request message inlined with the rules of `input_rules` (required fields, bounds):
/// answers share the plain `$ref` schemas, whose fields may be left out when at their
/// default. `root` is the RPC's input message, `path` where `message` sits below it; no
/// root states the shape only (a batch's items, which the service judges one by one).
fn input_schema(
    root: Option<&str>,
    message: &str,
    path: &[String],
    from_path: &[&str],
    wanted: &mut BTreeSet<String>,
) -> Value {
    let d = descriptor::get();
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in d.fields(message) {
        if from_path.contains(&f.json_name.as_str()) {
            continue;
        }
        let mut at = path.to_vec();
        at.push(f.json_name.clone());
        let rule = root.and_then(|root| input_rules::lookup(root, &at));
        // Items judged alone break their rules in the answer, not with a 400 (docs/api.md,
        // "Batches"): only their shape is the request's.
        let alone = rule.is_some_and(|r| r.alone);
        let mut schema = match &f.kind {
            // Request messages do not nest deeply; the bound keeps a cycle finite.
            Kind::Message(m) if !f.kind.is_scalar_like() && path.len() < 4 => {
                input_schema(root.filter(|_| !alone), m, &at, &[], wanted)
            }
            kind => input_rules::int_schema(kind, rule.as_ref(), false)
                .unwrap_or_else(|| kind_schema(kind, wanted)),
        };
        if f.repeated {
            schema = json!({"type": "array", "items": schema});
        }
        if let Some(rule) = rule {
            rule.apply(&mut schema);
            if rule.required {
                required.push(f.json_name.clone());
            }
        }
        if let Some(c) = &f.comment {
            schema["description"] = json!(c);
        }
        if alone {
            let said = schema["description"].as_str().unwrap_or_default();
            schema["description"] = json!(format!("{said} {JUDGED_ALONE}").trim_start());
            schema["x-judged-per-item"] = json!(true);
        }
        properties.insert(f.json_name, schema);
    }
    let mut schema = json!({
        "type": "object", "properties": properties, "required": required, "additionalProperties": false,
    });
    if let Some(c) = d.comment(message) {
        schema["description"] = json!(c);
    }
    schema
}

/// What a list judged item by item answers (`input_rules::Rule::alone`).
const JUDGED_ALONE: &str = "Each item is checked on its own, by the rules of creating it alone: an item \
    that breaks one is answered in the response's per-item `error` (its code and the fields it \
    violates) and does not fail the others, so the items' schema gives their shape only. A 400 \
    refuses the whole request only for its own fields, the list's size, or an item of the wrong \
    shape (a wrong type, an unknown field, a null, an enum by number).";

fn enum_schema(name: &str) -> Value {
    // `*_UNSPECIFIED` is the unset value: refused where a value is needed, and never written
    // (proto3 JSON omits a field at its default).
    let values: Vec<String> = descriptor::get()
        .enum_values(name)
        .into_iter()
        .filter(|v| !v.ends_with("_UNSPECIFIED"))
        .collect();
    let mut schema = json!({"type": "string", "enum": values});
    if let Some(c) = descriptor::get().comment(name) {
        schema["description"] = json!(c);
    }
    schema
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "integer", "description": "The gRPC status code number (3 INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED, ...)"},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "description": "google.rpc details: BadRequest {fieldViolations[{field, description}]}, ErrorInfo {reason, domain, metadata}, RetryInfo {retryDelay}, ...",
                "items": {"type": "object", "required": ["@type"], "properties": {"@type": {"type": "string"}}},
            },
        },
    })
}

/// Messages named by `$ref`s inside a hand-written schema.
fn collect_refs(schema: &Value, wanted: &mut BTreeSet<String>) {
    match schema {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref")
                && let Some(name) = r.strip_prefix(SCHEMAS)
            {
                wanted.insert(name.to_string());
            }
            m.values().for_each(|v| collect_refs(v, wanted));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, wanted)),
        _ => {}
    }
}
