//! What analytics lets out of an event about the people in it (issue #16): referrers are
//! shown by id (they are the customers), the people they referred by pseudonym, and
//! network identifiers (IPs, devices, visitor ids, recipient keys, the links of a fraud
//! cluster) not at all. Applied to the outbound webhooks' bodies and the live feed; the
//! `privacy.requested` event (it carries a person's contact keys) is never forwarded.
//!
//! Pure functions over proto3 JSON (the shape both outputs already carry), so a field a
//! later proto adds under one of these names is covered without a change here.

use referral_common::pii::{PiiKeys, is_pseudonym};
use serde_json::{Map, Value};

/// Event types analytics never forwards (live feed, webhooks).
pub const NOT_FORWARDED: [&str; 1] = ["privacy.requested"];

/// Whether an event of `event_type` may leave analytics at all.
pub fn forwarded(event_type: &str) -> bool {
    !NOT_FORWARDED.contains(&event_type)
}

/// Keys naming a referred person (a referee): their values become pseudonyms.
const REFEREE_KEYS: [&str; 2] = ["userId", "refereeId"];

/// Keys never let out: network and device identifiers, contact details, names.
const DROPPED_KEYS: [&str; 13] = [
    "ip",
    "deviceId",
    "visitorId",
    "userAgent",
    "recipientKey",
    "recipientEmail",
    "recipientPhone",
    "recipientName",
    "email",
    "phone",
    "name",
    "contactKeys",
    "links",
];

/// A referee id as analytics shows it: its pseudonym (an id that already is one stays).
pub fn shown_referee(pii: &PiiKeys, id: &str) -> String {
    if id.is_empty() || is_pseudonym(id) {
        id.to_string()
    } else {
        pii.pseudonym(id)
    }
}

/// Reduces an event's proto3 JSON to what may leave analytics: referee ids (and an
/// `aggregateId` naming one) pseudonymous, fraud-cluster members other than referrers
/// pseudonymous, identifiers and contact details removed.
pub fn scrub(pii: &PiiKeys, event: &mut Value) {
    let mut referees = Vec::new();
    scrub_value(pii, event, &mut referees);
    if let Some(Value::String(aggregate)) = event.get_mut("aggregateId")
        && referees.iter().any(|r| r == aggregate)
    {
        *aggregate = shown_referee(pii, aggregate);
    }
}

fn scrub_value(pii: &PiiKeys, v: &mut Value, referees: &mut Vec<String>) {
    match v {
        Value::Object(map) => scrub_object(pii, map, referees),
        Value::Array(items) => items.iter_mut().for_each(|i| scrub_value(pii, i, referees)),
        _ => {}
    }
}

fn scrub_object(pii: &PiiKeys, map: &mut Map<String, Value>, referees: &mut Vec<String>) {
    map.retain(|k, _| !DROPPED_KEYS.contains(&k.as_str()));
    // A fraud cluster's member: `{id, role}`; only referrers keep their id.
    let member = map.len() <= 2
        && map.contains_key("id")
        && map
            .get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| r != "REFERRER");
    for (k, value) in map.iter_mut() {
        let referee = REFEREE_KEYS.contains(&k.as_str()) || (member && k == "id");
        match value {
            Value::String(id) if referee => {
                if !id.is_empty() && !is_pseudonym(id) {
                    referees.push(id.clone());
                }
                *id = shown_referee(pii, id);
            }
            other => scrub_value(pii, other, referees),
        }
    }
}

/// Replaces every string equal to `person_id` by `pseudonym` (erasure of stored bodies);
/// true when anything changed.
pub fn rekey(v: &mut Value, person_id: &str, pseudonym: &str) -> bool {
    match v {
        Value::String(s) if s == person_id => {
            *s = pseudonym.to_string();
            true
        }
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, v| rekey(v, person_id, pseudonym) | changed),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| rekey(v, person_id, pseudonym) | changed),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn referees_become_pseudonyms_and_identifiers_go() {
        let pii = PiiKeys::for_tests();
        let mut event = json!({
            "id": "e1",
            "aggregateId": "couple-1",
            "signupRecorded": {
                "userId": "couple-1",
                "referrerId": "sup-1",
                "ip": "203.0.113.7",
                "deviceId": "d-1",
                "touchpoints": [{"referrerId": "sup-2", "visitorId": "v-1"}],
            },
            "fraudAssessed": {"assessment": {"refereeId": "couple-1", "cluster": {
                "members": [{"id": "sup-1", "role": "REFERRER"}, {"id": "couple-2", "role": "REFEREE"}],
                "links": ["ip:203.0.113.7"],
            }}},
        });
        scrub(&pii, &mut event);
        let couple = pii.pseudonym("couple-1");
        assert_eq!(event["aggregateId"], couple.as_str());
        let s = &event["signupRecorded"];
        assert_eq!(s["userId"], couple.as_str());
        assert_eq!(
            s["referrerId"], "sup-1",
            "referrers are the customers: shown by id"
        );
        assert!(s.get("ip").is_none() && s.get("deviceId").is_none());
        assert!(s["touchpoints"][0].get("visitorId").is_none());
        let cluster = &event["fraudAssessed"]["assessment"]["cluster"];
        assert_eq!(cluster["members"][0]["id"], "sup-1");
        assert_eq!(cluster["members"][1]["id"], pii.pseudonym("couple-2").as_str());
        assert!(cluster.get("links").is_none());
        let text = event.to_string();
        assert!(!text.contains("couple-") && !text.contains("203.0.113"), "{text}");
        // Scrubbing twice changes nothing more (a pseudonym is never pseudonymised again).
        let once = event.clone();
        scrub(&pii, &mut event);
        assert_eq!(event, once);
    }

    #[test]
    fn the_privacy_request_is_never_forwarded() {
        assert!(!forwarded("privacy.requested"));
        assert!(forwarded("signup.recorded"));
        assert!(
            forwarded("consent.recorded"),
            "an unknown type is judged by its content"
        );
    }

    #[test]
    fn rekey_replaces_whole_values_only() {
        let mut v = json!({"referrerId": "u1", "other": "u12", "list": ["u1", {"x": "u1"}]});
        assert!(rekey(&mut v, "u1", "anon-x"));
        assert_eq!(
            v,
            json!({"referrerId": "anon-x", "other": "u12", "list": ["anon-x", {"x": "anon-x"}]})
        );
        assert!(!rekey(&mut v, "u1", "anon-x"));
    }
}
