//! JSON in and out: bodies parsed and decoded into proto messages (pbjson, the proto3 JSON
//! mapping) with the path of the offending field in every error, and messages rendered back.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::errors::{HttpError, HttpResult};

/// The body as JSON; a syntax error names the field it happened in.
pub fn parse(bytes: &[u8]) -> HttpResult<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: Value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        HttpError::invalid_field(&field, format!("malformed JSON: {inner}"))
    })?;
    de.end()
        .map_err(|e| HttpError::invalid_field("", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A proto message from JSON: unknown fields and wrong types are 400s naming the field path,
/// e.g. `recipient.email` or `invitations[3].channel`.
pub fn decode<T: DeserializeOwned>(value: Value) -> HttpResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = field_path(e.path());
        let raw = e.into_inner().to_string();
        let description = match unknown_field(&raw) {
            Some(name) => {
                // serde_path_to_error usually has the key already; add it when it has not.
                let named = field == name || field.ends_with(&format!(".{name}"));
                if !named {
                    field = if field.is_empty() {
                        name
                    } else {
                        format!("{field}.{name}")
                    };
                }
                "unknown field".to_string()
            }
            None => describe(&raw),
        };
        HttpError::invalid_field(&field, description)
    })
}

/// A message as a 200 JSON response.
/// `null` is refused wherever it stands, naming its path: the proto3 JSON mapping would read
/// it as the field's default, so `{"vendorType": null}` would pass for "no vendor type" where
/// the document (and the caller) meant a value. Leave a field out instead.
pub fn refuse_nulls(value: &Value) -> HttpResult<()> {
    let mut found = Vec::new();
    nulls_in(value, &mut String::new(), &mut found);
    if found.is_empty() {
        return Ok(());
    }
    let violations: Vec<(String, String)> = found
        .into_iter()
        .map(|f| (f, "must not be null: leave the field out instead".to_string()))
        .collect();
    Err(HttpError::invalid_request(&violations))
}

fn nulls_in(value: &Value, at: &mut String, found: &mut Vec<String>) {
    match value {
        Value::Null => found.push(at.clone()),
        Value::Object(map) => {
            for (k, v) in map {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(k);
                nulls_in(v, at, found);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                nulls_in(v, at, found);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

pub fn respond<T: Serialize>(message: &T) -> Response {
    respond_with(StatusCode::OK, message)
}

pub fn respond_with<T: Serialize>(status: StatusCode, message: &T) -> Response {
    let body = serde_json::to_value(message).and_then(|mut v| {
        drop_unset_enums(&mut v);
        serde_json::to_vec(&v)
    });
    match body {
        Ok(body) => {
            let mut resp = (status, body).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "response did not serialize");
            HttpError::internal("response could not be encoded").into_response()
        }
    }
}

/// The messages are rendered with every field (`emit_fields`), so an enum at its zero value
/// would read `"…_UNSPECIFIED"`: that is "not set", and is left out as proto3 JSON leaves out
/// unset fields; `/openapi.json` lists no `*_UNSPECIFIED` value.
fn drop_unset_enums(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.as_str().is_some_and(|s| s.ends_with("_UNSPECIFIED")));
            map.values_mut().for_each(drop_unset_enums);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unset_enums),
        _ => {}
    }
}

/// A JSON body needs a JSON content type; say which one when it is wrong.
pub fn check_content_type(headers: &HeaderMap) -> HttpResult<()> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(HttpError::unsupported_media_type(
            "missing Content-Type: send the body as application/json",
        ));
    };
    // A value that is not visible ASCII names no media type: empty, refused below as 415.
    // (`split` always yields a first item.)
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(HttpError::unsupported_media_type(format!(
            "Content-Type {essence:?} is not supported: send the body as application/json"
        )))
    }
}

/// `invitations[3].channel`; the root is the empty string.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." { String::new() } else { s }
}

/// serde's "unknown field `x`, expected ..." -> `x`.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name.to_string())
}

/// serde's wording, made readable where pbjson's number handling hides it.
fn describe(raw: &str) -> String {
    if raw.contains("did not match any variant of untagged enum") {
        "expected a number or a numeric string".to_string()
    } else {
        raw.to_string()
    }
}

#[cfg(test)]
mod tests {
    use referral_proto::invite::v1::{BatchCreateInvitationsRequest, CreateInvitationRequest};
    use serde_json::json;

    use super::*;

    fn violation(e: &HttpError) -> (String, String) {
        let v = &e.details[0]["fieldViolations"][0];
        (
            v["field"].as_str().unwrap().to_string(),
            v["description"].as_str().unwrap().to_string(),
        )
    }

    #[test]
    fn proto_json_decodes() {
        let req: CreateInvitationRequest = decode(json!({
            "referrerId": "r1", "referrerKind": "SUPPLIER", "channel": "EMAIL",
            "recipient": {"email": "a@b.c"}, "sendAt": "2026-06-01T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(req.referrer_id, "r1");
        assert_eq!(req.recipient.unwrap().email, "a@b.c");
        assert!(req.send_at.is_some());
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let e = decode::<CreateInvitationRequest>(json!({"recipient": {"emial": "a@b.c"}})).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(violation(&e), ("recipient.emial".into(), "unknown field".into()));
        let e = decode::<CreateInvitationRequest>(json!({"bogus": 1})).unwrap_err();
        assert_eq!(violation(&e).0, "bogus");
    }

    #[test]
    fn wrong_types_name_the_field_inside_arrays() {
        let e = decode::<BatchCreateInvitationsRequest>(json!({
            "invitations": [{}, {}, {}, {"channel": "CARRIER_PIGEON"}]
        }))
        .unwrap_err();
        assert_eq!(violation(&e).0, "invitations[3].channel");
        let e = decode::<CreateInvitationRequest>(json!({"recipient": {"email": 5}})).unwrap_err();
        let (field, description) = violation(&e);
        assert_eq!(field, "recipient.email");
        assert!(description.contains("invalid type"), "{description}");
        assert!(e.message.contains("recipient.email"));
    }

    #[test]
    fn numbers_accept_strings_and_explain_themselves() {
        let ok: referral_proto::invite::v1::ListInvitationsRequest =
            decode(json!({"pageSize": "20"})).unwrap();
        assert_eq!(ok.page_size, 20);
        let e = decode::<referral_proto::invite::v1::ListInvitationsRequest>(json!({"pageSize": true}))
            .unwrap_err();
        assert_eq!(
            violation(&e),
            ("pageSize".into(), "expected a number or a numeric string".into())
        );
    }

    #[test]
    fn malformed_json_is_a_400_with_where() {
        let e = parse(br#"{"recipient": {"email": }"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let (field, description) = violation(&e);
        assert_eq!(field, "recipient.email");
        assert!(description.starts_with("malformed JSON"), "{description}");
        assert!(parse(b"{} trailing").is_err());
        assert_eq!(parse(b" {\"a\": 1} ").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn unset_enums_are_left_out_of_answers() {
        let mut v = json!({"growthStatus": "GROWTH_STATUS_UNSPECIFIED", "flow": "SUPPLIER_TO_COUPLE",
                           "byFlow": [{"status": "X_UNSPECIFIED", "n": "0"}]});
        drop_unset_enums(&mut v);
        assert_eq!(v, json!({"flow": "SUPPLIER_TO_COUPLE", "byFlow": [{"n": "0"}]}));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(
            check_content_type(&h).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(check_content_type(&h).unwrap_err().message.contains("text/plain"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(check_content_type(&h).is_ok());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/merge-patch+json"),
        );
        assert!(check_content_type(&h).is_ok());
    }

    #[test]
    fn nulls_are_refused_by_their_path() {
        let ok = serde_json::json!({"a": 1, "b": {"c": "x"}, "d": [1, 2]});
        assert!(refuse_nulls(&ok).is_ok());
        let bad = serde_json::json!({"vendorType": null, "b": {"c": null}, "d": [1, null]});
        let e = refuse_nulls(&bad).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let text = e.body().to_string();
        for field in ["vendorType", "b.c", "d[1]"] {
            assert!(text.contains(&format!("\"field\":\"{field}\"")), "{text}");
        }
    }
}
