//! Helpers shared by the fuzz targets: known secrets, signers written against the providers'
//! documented schemes (an oracle independent of `invite_svc::domain::webhooks`), and a header
//! map built the way the gateway builds it (lower-case names).

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use invite_svc::domain::webhooks::WebhookSecrets;
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use sha2::Sha256;

/// The clock every webhook target runs at (2023-11-14T22:13:20Z).
pub const NOW: i64 = 1_700_000_000;

pub const RESEND_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
pub const MAILGUN_KEY: &[u8] = b"key-mailgun-fuzz";
pub const POSTMARK_USER: &str = "hooks";
pub const POSTMARK_PASSWORD: &str = "s3cret:pass";
/// SendGrid's key pair: a fixed private scalar, so signatures are reproducible (RFC 6979).
const SENDGRID_SCALAR: [u8; 32] = [7; 32];

pub fn sendgrid_signing_key() -> SigningKey {
    SigningKey::from_slice(&SENDGRID_SCALAR).expect("a valid P-256 scalar")
}

/// Every provider configured with the known secrets above.
pub fn secrets() -> WebhookSecrets {
    WebhookSecrets {
        resend: Some(RESEND_KEY.to_vec()),
        sendgrid: Some(*sendgrid_signing_key().verifying_key()),
        mailgun: Some(MAILGUN_KEY.to_vec()),
        postmark: Some((POSTMARK_USER.into(), POSTMARK_PASSWORD.into())),
    }
}

pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// Svix / Standard Webhooks: base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn svix_mac(id: &str, ts: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(RESEND_KEY).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

pub fn svix_signature(id: &str, ts: &str, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(svix_mac(id, ts, body)))
}

/// SendGrid: base64 DER ECDSA P-256 / SHA-256 over `timestamp + body`.
pub fn sendgrid_signature(ts: &str, body: &[u8]) -> String {
    let mut signed = ts.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig: Signature = sendgrid_signing_key().sign(&signed);
    STANDARD.encode(sig.to_der().as_bytes())
}

/// Mailgun: hex HMAC-SHA256 of `timestamp + token`.
pub fn mailgun_signature(ts: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(MAILGUN_KEY).expect("HMAC takes any key");
    mac.update(ts.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Postmark: HTTP Basic of `user:password`.
pub fn postmark_authorization(credentials: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(credentials))
}

/// A header-safe token from fuzz bytes: printable ASCII without spaces, never empty, so a
/// signed value survives the verifier's trimming unchanged.
pub fn token(bytes: &[u8], fallback: &str) -> String {
    let s: String = bytes.iter().map(|b| char::from(b'!' + b % 94)).take(64).collect();
    if s.is_empty() { fallback.to_string() } else { s }
}

/// A header as the verifier reads it: trimmed, and absent when empty.
pub fn header<'a>(headers: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A timestamp header within the 5-minute tolerance of [`NOW`].
pub fn fresh(ts: &str) -> bool {
    ts.parse::<i64>()
        .is_ok_and(|t| (i128::from(NOW) - i128::from(t)).abs() <= 300)
}

/// `NOW + offset` as a header value; offsets beyond ±300 s are stale.
pub fn timestamp(offset: i16) -> String {
    (NOW + i64::from(offset)).to_string()
}
