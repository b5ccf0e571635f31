//! Query parameters of a route, derived from its request message: every field not bound by
//! the path or the body, by its lowerCamelCase JSON name (the snake_case name also works);
//! fields of a nested message (a metrics `filter`) are flattened to their own names.

use serde_json::{Map, Value};

use super::{
    descriptor::{self, Kind},
    errors::{HttpError, HttpResult},
};

#[derive(Debug, Clone)]
pub struct QueryParam {
    pub name: String,
    pub alias: String,
    /// Where the value goes in the request's JSON, e.g. `["filter", "from"]`.
    pub path: Vec<String>,
    pub kind: Kind,
    pub repeated: bool,
    pub comment: Option<String>,
}

/// The query parameters of `message` when the top-level fields `bound` come from elsewhere.
pub fn params_of(message: &str, bound: &[&str]) -> Vec<QueryParam> {
    let d = descriptor::get();
    let mut out: Vec<QueryParam> = Vec::new();
    for f in d.fields(message) {
        if bound.contains(&f.json_name.as_str()) {
            continue;
        }
        match &f.kind {
            Kind::Message(inner) if !f.kind.is_scalar_like() && !f.repeated => {
                for c in d.fields(inner) {
                    if c.kind.is_scalar_like() && !out.iter().any(|p| p.name == c.json_name) {
                        out.push(QueryParam {
                            path: vec![f.json_name.clone(), c.json_name.clone()],
                            name: c.json_name,
                            alias: c.name,
                            kind: c.kind,
                            repeated: c.repeated,
                            comment: c.comment,
                        });
                    }
                }
            }
            Kind::Map(..) => {}
            kind if kind.is_scalar_like() => out.push(QueryParam {
                path: vec![f.json_name.clone()],
                name: f.json_name,
                alias: f.name,
                kind: f.kind,
                repeated: f.repeated,
                comment: f.comment,
            }),
            _ => {}
        }
    }
    out
}

/// Sets each `(name, value)` pair into `target`; unknown names and non-boolean booleans
/// are 400s naming the parameter. Repeated fields take repeated or comma-separated values.
pub fn apply(
    params: &[QueryParam],
    pairs: Vec<(String, String)>,
    target: &mut Map<String, Value>,
) -> HttpResult<()> {
    let mut violations = Vec::new();
    for (name, raw) in pairs {
        let Some(param) = params.iter().find(|p| p.name == name || p.alias == name) else {
            violations.push((name, "unknown query parameter".to_string()));
            continue;
        };
        let values: Vec<&str> = if param.repeated {
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
        } else {
            vec![raw.as_str()]
        };
        let mut converted = Vec::with_capacity(values.len());
        for v in values {
            match scalar(&param.kind, v) {
                Ok(v) => converted.push(v),
                Err(problem) => violations.push((param.name.clone(), problem)),
            }
        }
        let Some(slot) = slot(target, &param.path) else {
            continue;
        };
        if param.repeated {
            match slot {
                Value::Array(items) => items.extend(converted),
                other => *other = Value::Array(converted),
            }
        } else if let Some(v) = converted.pop() {
            *slot = v;
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        let summary: Vec<String> = violations.iter().map(|(f, d)| format!("{f}: {d}")).collect();
        Err(HttpError::bad_request(
            format!("invalid query: {}", summary.join("; ")),
            &violations,
        ))
    }
}

/// Query text as the JSON pbjson expects: booleans as booleans, everything else as a
/// string (pbjson takes numbers as strings, enums by name, timestamps as RFC 3339).
fn scalar(kind: &Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::Bool => match raw {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::Message(name) if name == "google.protobuf.BoolValue" => scalar(&Kind::Bool, raw),
        // An integer travels as a JSON number, so its range is checked as a number's
        // (`input_rules`); anything else stays text for the decoder to refuse by name.
        Kind::Int32 | Kind::Uint32 | Kind::Int64 | Kind::Uint64 => Ok(raw
            .parse::<i64>()
            .map_or_else(|_| Value::String(raw.to_string()), Value::from)),
        _ => Ok(Value::String(raw.to_string())),
    }
}

fn slot<'a>(target: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Value> {
    let (last, parents) = path.split_last()?;
    let mut map = target;
    for p in parents {
        let entry = map.entry(p.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        map = entry.as_object_mut()?;
    }
    Some(map.entry(last.clone()).or_insert(Value::Null))
}

#[cfg(test)]
mod tests {
    use referral_proto::analytics::v1::FunnelRequest;
    use serde_json::json;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn list_params_come_from_the_request_message() {
        let params = params_of("referral.invite.v1.ListInvitationsRequest", &[]);
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["referrerId", "status", "pageSize", "pageToken"]);
        let mut m = Map::new();
        apply(
            &params,
            pairs(&[("referrerId", "r1"), ("page_size", "20"), ("status", "SENT")]),
            &mut m,
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"referrerId": "r1", "pageSize": 20, "status": "SENT"})
        );
    }

    #[test]
    fn metric_filters_are_flattened() {
        let params = params_of("referral.analytics.v1.FunnelRequest", &[]);
        let mut m = Map::new();
        apply(
            &params,
            pairs(&[
                ("from", "2026-01-01T00:00:00Z"),
                ("flow", "SUPPLIER_TO_COUPLE"),
                ("referrerId", "r"),
            ]),
            &mut m,
        )
        .unwrap();
        let req: FunnelRequest = crate::mapping::json::decode(Value::Object(m)).unwrap();
        assert_eq!(req.referrer_id, "r");
        assert_eq!(req.filter.unwrap().flow, Some(1));
    }

    #[test]
    fn unknown_and_malformed_params_are_named() {
        let params = params_of("referral.incentive.v1.ListCampaignsRequest", &[]);
        let mut m = Map::new();
        let e = apply(&params, pairs(&[("active", "yes"), ("colour", "red")]), &mut m).unwrap_err();
        let fields: Vec<&str> = e.details[0]["fieldViolations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["active", "colour"]);
        let mut m = Map::new();
        apply(&params, pairs(&[("active", "true")]), &mut m).unwrap();
        assert_eq!(m["active"], json!(true));
    }

    #[test]
    fn repeated_params_take_both_forms() {
        let params = params_of("referral.analytics.v1.StreamEventsRequest", &[]);
        let mut m = Map::new();
        apply(&params, pairs(&[("types", "a.b,c.d"), ("types", "e.f")]), &mut m).unwrap();
        assert_eq!(m["types"], json!(["a.b", "c.d", "e.f"]));
    }

    #[test]
    fn bound_fields_are_not_query_params() {
        let params = params_of("referral.incentive.v1.GetReferrerRewardsRequest", &["referrerId"]);
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pageSize", "pageToken"]);
    }
}
