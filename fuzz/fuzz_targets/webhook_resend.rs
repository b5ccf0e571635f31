//! Resend (Svix HMAC) webhooks through `verify_and_parse`: arbitrary headers and bodies never
//! panic, and nothing is accepted unless an independent HMAC of `id.timestamp.body` with the
//! known secret is among the `v1,` signatures and the timestamp is fresh. With `sign` the
//! harness signs the fuzzed body itself, so the payload parser sees arbitrary signed bodies.
#![no_main]

use arbitrary::Arbitrary;
use base64::{Engine, engine::general_purpose::STANDARD};
use invite_svc::domain::webhooks::{WebhookError, verify_and_parse};
use libfuzzer_sys::fuzz_target;
use referral_fuzz::{NOW, fresh, header, headers, secrets, svix_mac, svix_signature, timestamp, token};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    sign: bool,
    /// Standard Webhooks' `webhook-*` names instead of `svix-*`.
    standard_names: bool,
    id: &'a str,
    ts: &'a str,
    offset: i16,
    signature: &'a str,
    extra: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let prefix = if input.standard_names { "webhook" } else { "svix" };
    let (id, ts, sig) = if input.sign {
        let (id, ts) = (token(input.id.as_bytes(), "msg_1"), timestamp(input.offset));
        let sig = format!(
            "{} {}",
            input.signature.trim(),
            svix_signature(&id, &ts, input.body)
        );
        (id, ts, sig)
    } else {
        (
            input.id.to_string(),
            input.ts.to_string(),
            input.signature.to_string(),
        )
    };
    let mut h = headers(input.extra.iter().map(|(k, v)| (*k, v.to_string())));
    h.insert(format!("{prefix}-id"), id);
    h.insert(format!("{prefix}-timestamp"), ts);
    h.insert(format!("{prefix}-signature"), sig);
    let result = verify_and_parse("resend", &secrets(), &h, input.body, NOW);

    let get =
        |name: &str| header(&h, &format!("svix-{name}")).or_else(|| header(&h, &format!("webhook-{name}")));
    let (id, ts, sig) = (get("id"), get("timestamp"), get("signature"));
    let genuine = match (id, ts, sig) {
        (Some(id), Some(ts), Some(sig)) => {
            let mac = svix_mac(id, ts, input.body);
            fresh(ts)
                && sig
                    .split_whitespace()
                    .filter_map(|e| e.strip_prefix("v1,"))
                    .any(|b64| STANDARD.decode(b64).is_ok_and(|s| s == mac))
        }
        _ => false,
    };
    match &result {
        Ok(events) => {
            assert!(genuine, "accepted without a genuine signature: {h:?}");
            assert_eq!(events.len(), 1);
            assert_eq!(Some(events[0].event_id.as_str()), id);
        }
        Err(WebhookError::Unauthenticated(_)) => assert!(!genuine, "a genuine signature was refused: {h:?}"),
        Err(WebhookError::Malformed(_)) => assert!(genuine, "an unsigned body was read: {h:?}"),
        Err(WebhookError::NotConfigured(_)) => panic!("resend is configured"),
    }
});
