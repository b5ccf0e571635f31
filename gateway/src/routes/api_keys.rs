//! `/v1/api-keys` in `/openapi.json`: strict schemas for what the proto messages cannot say
//! themselves (the required name and scopes, their bounds, scope names as an enum of
//! strings), and which routes an API key may call at all.

use axum::http::Method;
use referral_common::auth::Scope;
use referral_proto::invite::v1 as invite;
use serde_json::{Value, json};

use super::route::{Answer, Body, Route, Rpc, api, unary};

/// Longest key name (invite-svc's rule: `domain::api_keys::NAME_MAX`).
const NAME_MAX: usize = 100;

fn scope_names() -> Vec<&'static str> {
    Scope::ALL.iter().map(|s| s.as_str()).collect()
}

fn scopes_schema() -> Value {
    json!({
        "type": "array",
        "minItems": 1,
        "maxItems": Scope::ALL.len(),
        "uniqueItems": true,
        "items": {"type": "string", "enum": scope_names()},
    })
}

/// `POST /v1/api-keys`.
pub fn create_body_schema() -> Value {
    // invite-svc's `definition`: required, not blank, one line (`input::line`), NAME_MAX
    // characters; the rules table's own keywords, so a control character anywhere is out
    // (one pattern with `\S` in the middle let the `\S` take one).
    let mut name = json!({
        "type": "string",
        "description": "What the key is for, e.g. billing: not blank, no control characters",
    });
    crate::mapping::input_rules::line(NAME_MAX)
        .non_blank()
        .apply(&mut name);
    json!({
        "type": "object",
        "required": ["name", "scopes"],
        "additionalProperties": false,
        "properties": {
            "name": name,
            "scopes": scopes_schema(),
        },
    })
}

fn key_properties(with_secret: bool) -> Value {
    let ts = json!({"type": "string", "format": "date-time"});
    let mut properties = json!({
        "id": {"type": "string"},
        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
        "prefix": {"type": "string", "pattern": "^rmk_[A-Za-z0-9]{8}$",
                   "description": "rmk_ and the first characters of the secret, to recognise the key"},
        "scopes": scopes_schema(),
        "createdAt": ts,
        "createdBy": {"type": "string", "description": "The admin who created the key"},
        "lastUsedAt": {"type": "string", "format": "date-time", "description": "Updated at most once a minute; absent before first use"},
        "revokedAt": {"type": "string", "format": "date-time", "description": "Absent while the key works"},
    });
    properties["key"] = if with_secret {
        json!({
            "type": "string", "pattern": "^rmk_[A-Za-z0-9]{43}$",
            "description": "The secret, shown this once: send it as `Authorization: Bearer rmk_...`",
        })
    } else {
        // Every field of the message is written; this one is always empty here.
        json!({"type": "string", "maxLength": 0, "description": "Always empty: the secret is shown only by create and rotate"})
    };
    properties
}

/// A key with its secret: the answer to create and rotate.
pub fn created_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "key", "name", "prefix", "scopes", "createdAt", "createdBy"],
        "additionalProperties": false,
        "properties": key_properties(true),
    })
}

/// A key without its secret: revoke's answer and each item of the list.
pub fn key_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "prefix", "scopes", "createdAt", "createdBy"],
        "additionalProperties": false,
        "properties": key_properties(false),
    })
}

pub fn list_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "apiKeys": {"type": "array", "items": key_schema()},
            "nextPageToken": {"type": "string", "description": "Absent or empty on the last page"},
        },
    })
}

const API_KEYS: &str = "referral.invite.v1.ApiKeyService";
const API_KEYS_TAG: &str = "API keys";

/// The API key routes.
pub fn routes() -> Vec<Route> {
    use Body::{None as NoBody, Whole};
    use Method as M;
    vec![
        // API keys of server-to-server callers (admin), kept by invite-svc
        api(
            M::POST,
            "/v1/api-keys",
            "Create an API key with scopes; its secret is shown once (admin)",
            API_KEYS_TAG,
            Rpc::new(API_KEYS, "CreateApiKey", Whole),
            unary!(api_keys in "invite-svc", create_api_key(invite::CreateApiKeyRequest)),
        )
        .body_schema(create_body_schema)
        .answer(Answer::Schema(created_schema)),
        api(
            M::GET,
            "/v1/api-keys",
            "API keys, oldest first: never their secrets (admin)",
            API_KEYS_TAG,
            Rpc::new(API_KEYS, "ListApiKeys", NoBody),
            unary!(api_keys in "invite-svc", list_api_keys(invite::ListApiKeysRequest)),
        )
        .answer(Answer::Schema(list_schema)),
        api(
            M::POST,
            "/v1/api-keys/{id}:rotate",
            "A new secret for a key, shown once; the old one stops working at once (admin)",
            API_KEYS_TAG,
            Rpc::new(API_KEYS, "RotateApiKey", Whole),
            unary!(api_keys in "invite-svc", rotate_api_key(invite::RotateApiKeyRequest)),
        )
        .answer(Answer::Schema(created_schema)),
        api(
            M::DELETE,
            "/v1/api-keys/{id}",
            "Revoke an API key at once; revoking again answers the same (admin)",
            API_KEYS_TAG,
            Rpc::new(API_KEYS, "RevokeApiKey", NoBody),
            unary!(api_keys in "invite-svc", revoke_api_key(invite::RevokeApiKeyRequest)),
        )
        .answer(Answer::Schema(key_schema)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_schema_is_strict() {
        let s = create_body_schema();
        assert_eq!(s["required"], json!(["name", "scopes"]));
        assert_eq!(s["additionalProperties"], false);
        // Every pattern of the name must hold: a C1 control character anywhere fails one.
        let name = &s["properties"]["name"];
        assert_eq!(
            (name["minLength"].clone(), name["maxLength"].clone()),
            (json!(1), json!(100))
        );
        let patterns: Vec<regex::Regex> = std::iter::once(&name["pattern"])
            .chain(name["allOf"].as_array().unwrap().iter().map(|p| &p["pattern"]))
            .map(|p| regex::Regex::new(p.as_str().unwrap()).unwrap())
            .collect();
        let valid = |s: &str| patterns.iter().all(|re| re.is_match(s));
        assert!(valid("billing") && valid("Ünïcode key"));
        for bad in ["%\u{e3}Y\u{86}w", "   ", "a\tb", "a\u{2028}b", ""] {
            assert!(!valid(bad), "{bad:?}");
        }
        assert_eq!(
            s["properties"]["scopes"]["items"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        assert_eq!(
            created_schema()["properties"]["key"]["pattern"],
            "^rmk_[A-Za-z0-9]{43}$"
        );
        assert_eq!(
            key_schema()["properties"]["key"]["maxLength"],
            0,
            "a listed key has no secret"
        );
    }
}
