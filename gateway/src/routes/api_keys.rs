//! `/v1/api-keys` in `/openapi.json`: strict schemas for what the proto messages cannot say
//! themselves (the required name and scopes, their bounds, scope names as an enum of
//! strings), and which routes an API key may call at all.

use referral_common::auth::Scope;
use serde_json::{Value, json};

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
    crate::input_rules::line(NAME_MAX).non_blank().apply(&mut name);
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

#[cfg(test)]
mod tests {
    use referral_common::auth::{Principal, Role, Scopes};

    use super::{super::check_key_scope, *};
    use crate::routes::{Auth, table};

    fn route(method: &str, path: &str) -> &'static crate::routes::Route {
        table()
            .iter()
            .find(|r| r.method.as_str() == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is routed"))
    }

    #[test]
    fn keys_reach_only_the_routes_of_their_scopes() {
        use Scope::*;
        for (method, path, scope) in [
            ("POST", "/v1/conversions", ConversionsWrite),
            ("POST", "/v1/invitations", InvitationsWrite),
            ("POST", "/v1/invitations:batchCreate", InvitationsWrite),
            ("POST", "/v1/signups", SignupsWrite),
            ("GET", "/v1/metrics/viral", ReportsRead),
            ("GET", "/v1/metrics/funnel", ReportsRead),
            ("GET", "/v1/leaderboard", ReportsRead),
        ] {
            assert_eq!(route(method, path).key_scope, Some(scope), "{method} {path}");
        }
        // Admin routes name no scope: no key gets through, whatever it holds.
        for (method, path) in [
            ("POST", "/v1/api-keys"),
            ("GET", "/v1/api-keys"),
            ("POST", "/v1/api-keys/{id}:rotate"),
            ("DELETE", "/v1/api-keys/{id}"),
            ("GET", "/v1/audit"),
            ("GET", "/v1/fraud/cases"),
            ("PUT", "/v1/referrers/{id}/tier"),
            ("POST", "/v1/webhook-endpoints"),
            ("GET", "/v1/events"),
            ("PUT", "/v1/reward-programs/{id}"),
            ("DELETE", "/v1/people/{id}"),
        ] {
            assert_eq!(route(method, path).key_scope, None, "{method} {path}");
        }
        for r in table() {
            assert!(r.key_scope.is_none() || r.auth == Auth::Bearer, "{}", r.path);
        }
        let all: Scopes = Scope::ALL.into_iter().collect();
        let key = Principal::api_key("k", all);
        let e = check_key_scope(route("GET", "/v1/audit"), &key).unwrap_err();
        assert_eq!(e.status.as_u16(), 403);
        assert!(check_key_scope(route("POST", "/v1/conversions"), &key).is_ok());
        let reader = Principal::api_key("k", Scopes::NONE.with(ReportsRead));
        let e = check_key_scope(route("POST", "/v1/conversions"), &reader).unwrap_err();
        assert!(e.message.contains("conversions:write"), "{}", e.message);
        // People pass on to the services' own rules.
        let admin = Principal::new("ops", Role::Admin, None);
        assert!(check_key_scope(route("GET", "/v1/audit"), &admin).is_ok());
    }

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
