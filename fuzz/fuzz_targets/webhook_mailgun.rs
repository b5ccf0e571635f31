//! Mailgun (HMAC in the body) webhooks through `verify_and_parse`: arbitrary bodies never
//! panic; nothing is accepted unless `signature.signature` is the hex HMAC of
//! `timestamp + token` under the known key (computed independently) with a fresh timestamp.
//! With `sign` the harness wraps the fuzzed JSON as `event-data` under a valid signature.
#![no_main]

use arbitrary::Arbitrary;
use invite_svc::domain::webhooks::{WebhookError, verify_and_parse};
use libfuzzer_sys::fuzz_target;
use referral_fuzz::{NOW, fresh, mailgun_signature, secrets, timestamp, token};
use serde_json::{Value, json};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    sign: bool,
    offset: i16,
    token: &'a [u8],
    body: &'a [u8],
}

/// A signature field as Mailgun sends it: a non-blank string (trimmed) or a number.
fn field(doc: &Value, name: &str) -> Option<String> {
    match &doc["signature"][name] {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fuzz_target!(|input: Input<'_>| {
    let body = if input.sign {
        let (ts, tok) = (timestamp(input.offset), token(input.token, "tok"));
        let event = serde_json::from_slice::<Value>(input.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(input.body).into_owned()));
        json!({
            "signature": {"timestamp": ts, "token": tok, "signature": mailgun_signature(&ts, &tok)},
            "event-data": event,
        })
        .to_string()
        .into_bytes()
    } else {
        input.body.to_vec()
    };
    let result = verify_and_parse("mailgun", &secrets(), &Default::default(), &body, NOW);

    let genuine = serde_json::from_slice::<Value>(&body).ok().is_some_and(|doc| {
        match (
            field(&doc, "timestamp"),
            field(&doc, "token"),
            field(&doc, "signature"),
        ) {
            (Some(ts), Some(tok), Some(sig)) => {
                fresh(&ts) && hex::decode(&sig).is_ok_and(|s| hex::encode(s) == mailgun_signature(&ts, &tok))
            }
            _ => false,
        }
    });
    match &result {
        Ok(events) => {
            assert!(
                genuine,
                "accepted without a genuine signature: {:?}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(events.len(), 1);
        }
        Err(WebhookError::Unauthenticated(_)) => assert!(!genuine, "a genuine signature was refused"),
        Err(WebhookError::Malformed(_)) => assert!(genuine, "an unsigned body was read"),
        Err(WebhookError::NotConfigured(_)) => panic!("mailgun is configured"),
    }
});
