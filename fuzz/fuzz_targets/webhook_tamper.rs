//! Tampering: the harness signs a request with the provider's known secret (which must
//! verify), then changes one byte of one signed part — Svix id, timestamp, body or
//! signature; SendGrid timestamp, body or signature; Mailgun timestamp, token or signature;
//! Postmark credentials — and the changed request must never verify. Signatures are changed
//! in their raw bytes, not their text (hex is case-insensitive, which is no forgery).
#![no_main]

use arbitrary::Arbitrary;
use base64::{Engine, engine::general_purpose::STANDARD};
use invite_svc::domain::webhooks::{ProviderEvent, WebhookError, verify_and_parse};
use libfuzzer_sys::fuzz_target;
use referral_fuzz::{
    NOW, POSTMARK_PASSWORD, POSTMARK_USER, headers, mailgun_signature, postmark_authorization, secrets,
    svix_mac, timestamp, token,
};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    provider: u8,
    id: &'a [u8],
    offset: i16,
    body: &'a [u8],
    /// Which signed part changes, where, and into what (never into itself).
    part: u8,
    position: usize,
    change: u8,
}

/// The parts of one provider request, before they become headers and a body.
#[derive(Clone)]
struct Parts {
    id: String,
    ts: String,
    body: Vec<u8>,
    signature: Vec<u8>,
    credentials: Vec<u8>,
}

/// A different printable, non-space ASCII character at one position (the verifier trims
/// headers, so a change must stay inside the value to be a change at all).
fn change_char(s: &str, position: usize, change: u8) -> String {
    let mut bytes = s.as_bytes().to_vec();
    if bytes.is_empty() {
        return s.to_string();
    }
    let i = position % bytes.len();
    let old = bytes[i];
    let mut new = b'!' + change % 94;
    if new == old {
        new = if new == b'~' { b'!' } else { new + 1 };
    }
    bytes[i] = new;
    String::from_utf8(bytes).expect("ASCII in, ASCII out")
}

/// One byte XORed with a non-zero mask; an empty part gains a byte.
fn change_byte(b: &[u8], position: usize, change: u8) -> Vec<u8> {
    let mut bytes = b.to_vec();
    if bytes.is_empty() {
        bytes.push(change);
        return bytes;
    }
    let i = position % bytes.len();
    bytes[i] ^= change.max(1);
    bytes
}

fn send(provider: &str, p: &Parts) -> Result<Vec<ProviderEvent>, WebhookError> {
    match provider {
        "resend" => {
            let sig = format!("v1,{}", STANDARD.encode(&p.signature));
            let h = headers([
                ("svix-id", p.id.clone()),
                ("svix-timestamp", p.ts.clone()),
                ("svix-signature", sig),
            ]);
            verify_and_parse(provider, &secrets(), &h, &p.body, NOW)
        }
        "sendgrid" => {
            let h = headers([
                (
                    "x-twilio-email-event-webhook-signature",
                    STANDARD.encode(&p.signature),
                ),
                ("x-twilio-email-event-webhook-timestamp", p.ts.clone()),
            ]);
            verify_and_parse(provider, &secrets(), &h, &p.body, NOW)
        }
        "mailgun" => {
            let body = serde_json::json!({
                "signature": {"timestamp": p.ts, "token": p.id, "signature": hex::encode(&p.signature)},
                "event-data": {"event": "delivered", "id": "ev-1"},
            })
            .to_string();
            verify_and_parse(provider, &secrets(), &Default::default(), body.as_bytes(), NOW)
        }
        _ => {
            let h = headers([("authorization", postmark_authorization(&p.credentials))]);
            verify_and_parse(provider, &secrets(), &h, &p.body, NOW)
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    let provider = ["resend", "sendgrid", "mailgun", "postmark"][usize::from(input.provider % 4)];
    let ts = timestamp(input.offset % 301);
    let id = token(input.id, "msg_1");
    let signature = match provider {
        "resend" => svix_mac(&id, &ts, input.body),
        "sendgrid" => {
            let b64 = referral_fuzz::sendgrid_signature(&ts, input.body);
            STANDARD.decode(b64).expect("our own base64")
        }
        "mailgun" => hex::decode(mailgun_signature(&ts, &id)).expect("our own hex"),
        _ => Vec::new(),
    };
    let genuine = Parts {
        id,
        ts,
        body: input.body.to_vec(),
        signature,
        credentials: format!("{POSTMARK_USER}:{POSTMARK_PASSWORD}").into_bytes(),
    };
    assert!(
        !matches!(send(provider, &genuine), Err(WebhookError::Unauthenticated(_))),
        "a genuine {provider} request was refused"
    );

    let mut changed = genuine.clone();
    let (pos, c) = (input.position, input.change);
    let what = match (provider, input.part % 4) {
        ("postmark", _) => {
            changed.credentials = change_byte(&genuine.credentials, pos, c);
            "credentials"
        }
        ("resend" | "mailgun", 0) => {
            changed.id = change_char(&genuine.id, pos, c);
            "id/token"
        }
        (_, 1) => {
            changed.ts = change_char(&genuine.ts, pos, c);
            "timestamp"
        }
        ("mailgun", 2) | (_, 3) => {
            changed.signature = change_byte(&genuine.signature, pos, c);
            "signature"
        }
        _ => {
            changed.body = change_byte(&genuine.body, pos, c);
            "body"
        }
    };
    let result = send(provider, &changed);
    assert!(
        matches!(result, Err(WebhookError::Unauthenticated(_))),
        "{provider}: a request with a changed {what} was not refused: {result:?}"
    );
});
