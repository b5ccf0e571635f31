//! SendGrid (ECDSA P-256) webhooks through `verify_and_parse`: arbitrary headers and bodies
//! never panic; nothing is accepted unless the signature header verifies (independently,
//! with the known key) over `timestamp + body` and the timestamp is fresh. With `sign` the
//! harness signs the fuzzed body, so the event-array parser sees arbitrary signed bodies.
#![no_main]

use arbitrary::Arbitrary;
use base64::{Engine, engine::general_purpose::STANDARD};
use invite_svc::domain::webhooks::{WebhookError, verify_and_parse};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::{Signature, signature::Verifier};
use referral_fuzz::{
    NOW, fresh, header, headers, secrets, sendgrid_signature, sendgrid_signing_key, timestamp,
};

const SIG: &str = "x-twilio-email-event-webhook-signature";
const TS: &str = "x-twilio-email-event-webhook-timestamp";

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    sign: bool,
    ts: &'a str,
    offset: i16,
    signature: &'a str,
    extra: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let (ts, sig) = if input.sign {
        let ts = timestamp(input.offset);
        let sig = sendgrid_signature(&ts, input.body);
        (ts, sig)
    } else {
        (input.ts.to_string(), input.signature.to_string())
    };
    let mut h = headers(input.extra.iter().map(|(k, v)| (*k, v.to_string())));
    h.insert(TS.into(), ts);
    h.insert(SIG.into(), sig);
    let result = verify_and_parse("sendgrid", &secrets(), &h, input.body, NOW);

    let genuine = match (header(&h, TS), header(&h, SIG)) {
        (Some(ts), Some(sig)) => {
            let mut signed = ts.as_bytes().to_vec();
            signed.extend_from_slice(input.body);
            let key = *sendgrid_signing_key().verifying_key();
            fresh(ts)
                && STANDARD
                    .decode(sig)
                    .ok()
                    .and_then(|der| Signature::from_der(&der).ok())
                    .is_some_and(|s| {
                        key.verify(&signed, &s).is_ok()
                            || s.normalize_s()
                                .is_some_and(|low| key.verify(&signed, &low).is_ok())
                    })
        }
        _ => false,
    };
    match &result {
        Ok(_) => assert!(genuine, "accepted without a genuine signature: {h:?}"),
        Err(WebhookError::Unauthenticated(_)) => assert!(!genuine, "a genuine signature was refused: {h:?}"),
        Err(WebhookError::Malformed(_)) => assert!(genuine, "an unsigned body was read: {h:?}"),
        Err(WebhookError::NotConfigured(_)) => panic!("sendgrid is configured"),
    }
});
