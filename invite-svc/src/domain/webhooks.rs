//! Inbound e-mail provider webhooks: each provider's own signature scheme (docs/api.md), checked
//! before the body is read, then its events mapped onto our statuses. Pure: the caller
//! passes the clock, so the providers' published vectors (with old timestamps) test it.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::status::InvitationStatus;

type HmacSha256 = Hmac<Sha256>;

/// A signed timestamp further than this from our clock is refused (docs/api.md: 5 minutes).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

api_enum! {
    /// The e-mail providers whose webhooks we accept.
    pub enum Provider ("e-mail provider") {
        Resend => "resend",
        Sendgrid => "sendgrid",
        Mailgun => "mailgun",
        Postmark => "postmark",
    }
}

/// The verification secrets, each `None` when not configured (that provider answers 404).
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    /// The decoded key of Resend's `whsec_…` secret.
    pub resend: Option<Vec<u8>>,
    pub sendgrid: Option<VerifyingKey>,
    pub mailgun: Option<Vec<u8>>,
    /// Postmark's `user:password` for HTTP Basic.
    pub postmark: Option<(String, String)>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("resend", &self.resend.is_some())
            .field("sendgrid", &self.sendgrid.is_some())
            .field("mailgun", &self.mailgun.is_some())
            .field("postmark", &self.postmark.is_some())
            .finish()
    }
}

/// A secret setting that cannot be used; the message never includes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// `whsec_<base64 key>` (Svix / Standard Webhooks); an empty key would let anyone sign.
pub fn parse_resend_secret(s: &str) -> Result<Vec<u8>, SecretError> {
    let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
    let key = STANDARD
        .decode(b64)
        .map_err(|_| SecretError("must be whsec_ followed by base64".into()))?;
    if key.is_empty() {
        return Err(SecretError("has an empty key after whsec_".into()));
    }
    Ok(key)
}

/// The P-256 public key SendGrid shows for the endpoint: PEM, or the base64 of its DER.
pub fn parse_sendgrid_key(s: &str) -> Result<VerifyingKey, SecretError> {
    // PEM is read leniently (any line width): its body is the base64 of the same DER.
    let b64: String = s
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let key = STANDARD
        .decode(b64)
        .ok()
        .and_then(|der| VerifyingKey::from_public_key_der(&der).ok());
    key.ok_or_else(|| SecretError("is not a P-256 public key (PEM or base64 DER)".into()))
}

/// `user:password`, both non-empty.
pub fn parse_postmark_credentials(s: &str) -> Result<(String, String), SecretError> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(SecretError("must be user:password, both non-empty".into())),
    }
}

/// Why a webhook call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Unknown provider, or no secret configured: the endpoint does not exist (404).
    #[error("no webhook is configured for provider {0:?}")]
    NotConfigured(String),
    /// Missing, malformed, wrong or stale signature (401); nothing is recorded.
    #[error("webhook signature rejected: {0}")]
    Unauthenticated(String),
    /// Signed, but not a payload we can read (400).
    #[error("webhook body: {0}")]
    Malformed(String),
}

/// What a provider event means for the invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Opened,
    Clicked,
    Bounced,
    /// The recipient reported the message as spam.
    Complained,
    /// An event that moves nothing (sent, deferred, unsubscribed…).
    Ignored,
}

impl Outcome {
    /// The status a provider outcome moves an invitation to. A complaint proves delivery, so
    /// it counts as DELIVERED (forward-only, so it never undoes an open or a click); the
    /// complaint itself is kept as the status reason. (The status machine has no COMPLAINED.)
    pub fn status(&self) -> Option<InvitationStatus> {
        match self {
            Self::Delivered | Self::Complained => Some(InvitationStatus::Delivered),
            Self::Opened => Some(InvitationStatus::Opened),
            Self::Clicked => Some(InvitationStatus::Clicked),
            Self::Bounced => Some(InvitationStatus::Bounced),
            Self::Ignored => None,
        }
    }
}

/// One provider event, matched back to an invitation by the id we put in its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// The provider's id of the event (replays carry the same one).
    pub event_id: String,
    pub invitation_id: Option<String>,
    /// The provider's name for the event, e.g. `email.delivered`.
    pub kind: String,
    pub outcome: Outcome,
}

/// Verifies a webhook call by the provider's scheme, then reads its events.
pub fn verify_and_parse(
    provider: &str,
    secrets: &WebhookSecrets,
    headers: &HashMap<String, String>,
    body: &[u8],
    now_unix: i64,
) -> Result<Vec<ProviderEvent>, WebhookError> {
    let not_configured = || WebhookError::NotConfigured(super::shown(provider));
    let provider = Provider::parse(provider).map_err(|_| not_configured())?;
    let header = |name: &str| headers.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    match provider {
        Provider::Resend => {
            let key = secrets.resend.as_ref().ok_or_else(not_configured)?;
            let id = header("svix-id").or_else(|| header("webhook-id"));
            let ts = header("svix-timestamp").or_else(|| header("webhook-timestamp"));
            let sig = header("svix-signature").or_else(|| header("webhook-signature"));
            let (Some(id), Some(ts), Some(sig)) = (id, ts, sig) else {
                return Err(unauth(
                    "the svix-id, svix-timestamp and svix-signature headers are required",
                ));
            };
            verify_svix(key, id, ts, sig, body, now_unix)?;
            parse_resend(id, body)
        }
        Provider::Sendgrid => {
            let key = secrets.sendgrid.as_ref().ok_or_else(not_configured)?;
            let (Some(sig), Some(ts)) = (
                header("x-twilio-email-event-webhook-signature"),
                header("x-twilio-email-event-webhook-timestamp"),
            ) else {
                return Err(unauth(
                    "the X-Twilio-Email-Event-Webhook-Signature and -Timestamp headers are required",
                ));
            };
            check_timestamp(ts, now_unix)?;
            verify_sendgrid(key, sig, ts, body)?;
            parse_sendgrid(body)
        }
        Provider::Mailgun => {
            let key = secrets.mailgun.as_ref().ok_or_else(not_configured)?;
            let doc: Value =
                serde_json::from_slice(body).map_err(|_| unauth("the body carries no signature"))?;
            // Mailgun sends the timestamp as a string; accept a number too.
            let field = |name: &str| match &doc["signature"][name] {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let (Some(ts), Some(token), Some(sig)) = (field("timestamp"), field("token"), field("signature"))
            else {
                return Err(unauth(
                    "signature.timestamp, signature.token and signature.signature are required",
                ));
            };
            check_timestamp(&ts, now_unix)?;
            verify_mailgun(key, &ts, &token, &sig)?;
            parse_mailgun(&doc, &token)
        }
        Provider::Postmark => {
            let (user, password) = secrets.postmark.as_ref().ok_or_else(not_configured)?;
            let given = header("authorization")
                .and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")))
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .ok_or_else(|| unauth("HTTP Basic credentials are required"))?;
            let expected = format!("{user}:{password}");
            if !constant_time_eq(&given, expected.as_bytes()) {
                return Err(unauth("wrong HTTP Basic credentials"));
            }
            parse_postmark(body)
        }
    }
}

fn unauth(why: &str) -> WebhookError {
    WebhookError::Unauthenticated(why.to_string())
}

fn malformed(why: impl Into<String>) -> WebhookError {
    WebhookError::Malformed(why.into())
}

fn check_timestamp(ts: &str, now_unix: i64) -> Result<i64, WebhookError> {
    let t: i64 = ts
        .parse()
        .map_err(|_| unauth("the timestamp is not a number of seconds"))?;
    // abs_diff: a signed timestamp near i64::MIN or MAX must not overflow the subtraction.
    if now_unix.abs_diff(t) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
        return Err(unauth("the timestamp is more than 5 minutes from our clock"));
    }
    Ok(t)
}

/// Svix / Standard Webhooks: base64 HMAC-SHA256 of `id.timestamp.body`; the header holds
/// space-separated `v1,<signature>` entries (several while a secret rotates).
pub fn verify_svix(
    key: &[u8],
    id: &str,
    ts: &str,
    sig_header: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), WebhookError> {
    check_timestamp(ts, now_unix)?;
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| unauth("unusable key"))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let matched = sig_header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        // verify_slice is constant-time and refuses any other length (a truncated one).
        .any(|sig| mac.clone().verify_slice(&sig).is_ok());
    if matched {
        Ok(())
    } else {
        Err(unauth("no v1 signature matches"))
    }
}

/// SendGrid: base64 DER ECDSA P-256 / SHA-256 signature over `timestamp + body`.
pub fn verify_sendgrid(key: &VerifyingKey, sig_b64: &str, ts: &str, body: &[u8]) -> Result<(), WebhookError> {
    let der = STANDARD
        .decode(sig_b64)
        .map_err(|_| unauth("the signature is not base64"))?;
    let sig = Signature::from_der(&der).map_err(|_| unauth("the signature is not a DER ECDSA signature"))?;
    let mut signed = Vec::with_capacity(ts.len() + body.len());
    signed.extend_from_slice(ts.as_bytes());
    signed.extend_from_slice(body);
    // SendGrid's signatures are not normalised to low-S; accept either form.
    let ok = key.verify(&signed, &sig).is_ok()
        || sig
            .normalize_s()
            .is_some_and(|low| key.verify(&signed, &low).is_ok());
    if ok {
        Ok(())
    } else {
        Err(unauth("the signature does not match"))
    }
}

/// Mailgun: hex HMAC-SHA256 of `timestamp + token` with the webhook signing key.
pub fn verify_mailgun(key: &[u8], ts: &str, token: &str, sig_hex: &str) -> Result<(), WebhookError> {
    let sig = hex::decode(sig_hex).map_err(|_| unauth("the signature is not hex"))?;
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| unauth("unusable key"))?;
    mac.update(ts.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| unauth("the signature does not match"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn parse_resend(svix_id: &str, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let doc = json(body)?;
    let kind = text(&doc["type"]).ok_or_else(|| malformed("type is required"))?;
    let tags = &doc["data"]["tags"];
    // Tags arrive as [{name, value}] (Resend's send API) or as an object.
    let invitation_id = match tags {
        Value::Array(items) => items
            .iter()
            .find(|t| t["name"] == "invitation_id")
            .and_then(|t| text(&t["value"])),
        Value::Object(map) => map.get("invitation_id").and_then(text),
        _ => None,
    };
    let outcome = match kind.as_str() {
        "email.delivered" => Outcome::Delivered,
        "email.opened" => Outcome::Opened,
        "email.clicked" => Outcome::Clicked,
        "email.bounced" | "email.failed" => Outcome::Bounced,
        "email.complained" => Outcome::Complained,
        _ => Outcome::Ignored,
    };
    Ok(vec![ProviderEvent {
        event_id: svix_id.to_string(),
        invitation_id,
        kind,
        outcome,
    }])
}

fn parse_sendgrid(body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let Value::Array(items) = json(body)? else {
        return Err(malformed("expected a JSON array of events"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let kind = text(&e["event"]).ok_or_else(|| malformed(format!("[{i}].event is required")))?;
            let event_id = text(&e["sg_event_id"])
                .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(e.to_string()))));
            let outcome = match kind.as_str() {
                "delivered" => Outcome::Delivered,
                "open" => Outcome::Opened,
                "click" => Outcome::Clicked,
                "bounce" | "dropped" => Outcome::Bounced,
                "spamreport" => Outcome::Complained,
                _ => Outcome::Ignored,
            };
            Ok(ProviderEvent {
                event_id,
                invitation_id: text(&e["invitation_id"]),
                kind,
                outcome,
            })
        })
        .collect()
}

fn parse_mailgun(doc: &Value, token: &str) -> Result<Vec<ProviderEvent>, WebhookError> {
    let data = &doc["event-data"];
    let kind = text(&data["event"]).ok_or_else(|| malformed("event-data.event is required"))?;
    let outcome = match kind.as_str() {
        "delivered" => Outcome::Delivered,
        "opened" => Outcome::Opened,
        "clicked" => Outcome::Clicked,
        // Temporary failures are retried by Mailgun; only a permanent one is a bounce.
        "failed" if data["severity"] != "temporary" => Outcome::Bounced,
        "complained" => Outcome::Complained,
        _ => Outcome::Ignored,
    };
    Ok(vec![ProviderEvent {
        event_id: text(&data["id"]).unwrap_or_else(|| format!("token:{token}")),
        invitation_id: text(&data["user-variables"]["invitation_id"]),
        kind,
        outcome,
    }])
}

fn parse_postmark(body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let doc = json(body)?;
    let kind = text(&doc["RecordType"]).ok_or_else(|| malformed("RecordType is required"))?;
    let soft = matches!(
        doc["Type"].as_str(),
        Some("Transient" | "SoftBounce" | "AutoResponder")
    );
    let outcome = match kind.as_str() {
        "Delivery" => Outcome::Delivered,
        "Open" => Outcome::Opened,
        "Click" => Outcome::Clicked,
        "Bounce" if !soft => Outcome::Bounced,
        "SpamComplaint" => Outcome::Complained,
        _ => Outcome::Ignored,
    };
    // Postmark events carry no id of their own; a replay is the same body.
    Ok(vec![ProviderEvent {
        event_id: format!("sha256:{}", hex::encode(Sha256::digest(body))),
        invitation_id: text(&doc["Metadata"]["invitation_id"]),
        kind,
        outcome,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sign_svix(key: &[u8], id: &str, ts: &str, body: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// The Standard Webhooks / Svix published test vector.
    #[test]
    fn svix_published_vector() {
        let key = parse_resend_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(verify_svix(&key, id, ts, sig, body, 1614265330), Ok(()));
        // Several signatures (rotation): any match counts.
        let rotated = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {sig}");
        assert_eq!(verify_svix(&key, id, ts, &rotated, body, 1614265330), Ok(()));
        // The same vector an hour later is stale.
        assert!(verify_svix(&key, id, ts, sig, body, 1614265330 + 3600).is_err());
        // A changed body, id or timestamp no longer matches.
        assert!(verify_svix(&key, id, ts, sig, br#"{"test": 2432232315}"#, 1614265330).is_err());
        assert!(verify_svix(&key, "msg_other", ts, sig, body, 1614265330).is_err());
        assert!(verify_svix(&key, id, "1614265331", sig, body, 1614265331).is_err());
    }

    #[test]
    fn svix_refuses_empty_truncated_and_wrong_length_signatures() {
        let key = parse_resend_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        for sig in [
            "",
            "v1,",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
            "v1,g0hM9SsE+OTPJTGt",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=AAAA",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,not base64!",
        ] {
            assert!(
                verify_svix(&key, id, ts, sig, body, 1614265330).is_err(),
                "{sig:?}"
            );
        }
    }

    #[test]
    fn secrets_must_not_be_empty() {
        assert!(parse_resend_secret("whsec_").is_err());
        assert!(parse_resend_secret("").is_err());
        assert!(parse_resend_secret("whsec_%%%").is_err());
        assert!(parse_postmark_credentials(":").is_err());
        assert!(parse_postmark_credentials("user:").is_err());
        assert!(parse_postmark_credentials("user").is_err());
        assert_eq!(
            parse_postmark_credentials("u:p:q"),
            Ok(("u".to_string(), "p:q".to_string()))
        );
        assert!(parse_sendgrid_key("").is_err());
        assert!(parse_sendgrid_key("bm90IGEga2V5").is_err());
    }

    /// The vector of SendGrid's own event-webhook library tests (sendgrid-python).
    const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SENDGRID_SIG: &str =
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const SENDGRID_TS: &str = "1600112502";
    const SENDGRID_BODY: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
    /// Another key from the same tests: the vector must not verify with it.
    const SENDGRID_OTHER_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";

    #[test]
    fn sendgrid_published_vector() {
        let key = parse_sendgrid_key(SENDGRID_KEY).unwrap();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{SENDGRID_KEY}\n-----END PUBLIC KEY-----\n");
        assert_eq!(
            parse_sendgrid_key(&pem).unwrap(),
            key,
            "PEM and base64 DER are the same key"
        );
        assert_eq!(
            verify_sendgrid(&key, SENDGRID_SIG, SENDGRID_TS, SENDGRID_BODY.as_bytes()),
            Ok(())
        );
        let other = parse_sendgrid_key(SENDGRID_OTHER_KEY).unwrap();
        assert!(verify_sendgrid(&other, SENDGRID_SIG, SENDGRID_TS, SENDGRID_BODY.as_bytes()).is_err());
        assert!(verify_sendgrid(&key, SENDGRID_SIG, "1600112503", SENDGRID_BODY.as_bytes()).is_err());
        assert!(verify_sendgrid(&key, SENDGRID_SIG, SENDGRID_TS, b"payload").is_err());
        // The library's "bad signature": one character changed.
        let bad = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
        for sig in [
            "",
            "MEUCIGHQ",
            &SENDGRID_SIG[..SENDGRID_SIG.len() - 4],
            "%%%",
            bad,
        ] {
            assert!(
                verify_sendgrid(&key, sig, SENDGRID_TS, SENDGRID_BODY.as_bytes()).is_err(),
                "{sig:?}"
            );
        }
        // Through the full check: on its day, a dropped message is a bounce; a day later
        // the same request is stale.
        let secrets = WebhookSecrets {
            sendgrid: Some(key),
            ..Default::default()
        };
        let h = headers(&[
            ("x-twilio-email-event-webhook-signature", SENDGRID_SIG),
            ("x-twilio-email-event-webhook-timestamp", SENDGRID_TS),
        ]);
        let events =
            verify_and_parse("sendgrid", &secrets, &h, SENDGRID_BODY.as_bytes(), 1600112502).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Bounced);
        assert_eq!(
            events[0].event_id,
            "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
        );
        assert!(matches!(
            verify_and_parse(
                "sendgrid",
                &secrets,
                &h,
                SENDGRID_BODY.as_bytes(),
                1600112502 + 86400
            ),
            Err(WebhookError::Unauthenticated(_))
        ));
        assert!(matches!(
            verify_and_parse(
                "sendgrid",
                &secrets,
                &HashMap::new(),
                SENDGRID_BODY.as_bytes(),
                1600112502
            ),
            Err(WebhookError::Unauthenticated(_))
        ));
    }

    #[test]
    fn sendgrid_events_map_and_carry_the_invitation_id() {
        use p256::ecdsa::{SigningKey, signature::Signer};
        let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let secrets = WebhookSecrets {
            sendgrid: Some(*signing.verifying_key()),
            ..Default::default()
        };
        let body = r#"[{"email":"a@example.com","timestamp":1700000000,"event":"delivered","sg_event_id":"ev1","sg_message_id":"m1","invitation_id":"inv-1"},
                       {"email":"a@example.com","timestamp":1700000001,"event":"open","sg_event_id":"ev2","invitation_id":"inv-1"},
                       {"email":"a@example.com","timestamp":1700000002,"event":"spamreport","sg_event_id":"ev3","invitation_id":"inv-1"},
                       {"email":"a@example.com","timestamp":1700000003,"event":"processed","sg_event_id":"ev4"}]"#;
        let ts = "1700000000";
        let sig: Signature = signing.sign(format!("{ts}{body}").as_bytes());
        let h = headers(&[
            (
                "x-twilio-email-event-webhook-signature",
                &STANDARD.encode(sig.to_der().as_bytes()),
            ),
            ("x-twilio-email-event-webhook-timestamp", ts),
        ]);
        let events = verify_and_parse("sendgrid", &secrets, &h, body.as_bytes(), 1700000000).unwrap();
        let outcomes: Vec<_> = events.iter().map(|e| e.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Delivered,
                Outcome::Opened,
                Outcome::Complained,
                Outcome::Ignored
            ]
        );
        assert_eq!(events[0].invitation_id.as_deref(), Some("inv-1"));
        assert_eq!(events[0].event_id, "ev1");
        assert_eq!(events[3].invitation_id, None);
    }

    #[test]
    fn resend_through_the_full_check() {
        let key = b"0123456789abcdef0123456789abcdef".to_vec();
        let secrets = WebhookSecrets {
            resend: Some(key.clone()),
            ..Default::default()
        };
        // Resend's documented email.delivered payload, tags as an object.
        let body = r#"{"type":"email.delivered","created_at":"2024-11-22T23:41:12.126Z","data":{"created_at":"2024-11-22T23:41:11.894719+00:00","email_id":"56761188-7520-42d8-8898-ff6fc54ce618","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Sending this example","tags":{"invitation_id":"inv-9"}}}"#;
        let now = 1732318872;
        let ts = now.to_string();
        let h = headers(&[
            ("svix-id", "msg_1"),
            ("svix-timestamp", &ts),
            ("svix-signature", &sign_svix(&key, "msg_1", &ts, body)),
        ]);
        let events = verify_and_parse("resend", &secrets, &h, body.as_bytes(), now).unwrap();
        assert_eq!(
            events,
            [ProviderEvent {
                event_id: "msg_1".into(),
                invitation_id: Some("inv-9".into()),
                kind: "email.delivered".into(),
                outcome: Outcome::Delivered,
            }]
        );
        // Missing headers, another provider's name, an unconfigured provider.
        assert!(matches!(
            verify_and_parse("resend", &secrets, &HashMap::new(), body.as_bytes(), now),
            Err(WebhookError::Unauthenticated(_))
        ));
        assert!(matches!(
            verify_and_parse("mailgun", &secrets, &h, body.as_bytes(), now),
            Err(WebhookError::NotConfigured(_))
        ));
        assert!(matches!(
            verify_and_parse("sparkpost", &secrets, &h, body.as_bytes(), now),
            Err(WebhookError::NotConfigured(_))
        ));
        // Stale by more than five minutes either way.
        for off in [-301, 301] {
            let ts = (now + off).to_string();
            let h = headers(&[
                ("svix-id", "msg_1"),
                ("svix-timestamp", &ts),
                ("svix-signature", &sign_svix(&key, "msg_1", &ts, body)),
            ]);
            assert!(verify_and_parse("resend", &secrets, &h, body.as_bytes(), now).is_err());
        }
    }

    #[test]
    fn mailgun_signature_and_mapping() {
        let key = b"key-mailgun".to_vec();
        let secrets = WebhookSecrets {
            mailgun: Some(key.clone()),
            ..Default::default()
        };
        let sign = |ts: &str, token: &str| {
            let mut mac = HmacSha256::new_from_slice(&key).unwrap();
            mac.update(format!("{ts}{token}").as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        let body = |ts: &str, sig: &str, event: &str, severity: &str| {
            serde_json::json!({
                "signature": {"timestamp": ts, "token": "tok-1", "signature": sig},
                "event-data": {"event": event, "severity": severity, "id": "mg-1", "user-variables": {"invitation_id": "inv-2"}},
            })
            .to_string()
        };
        let now = 1700000000;
        let good = sign("1700000000", "tok-1");
        let events = verify_and_parse(
            "mailgun",
            &secrets,
            &HashMap::new(),
            body("1700000000", &good, "failed", "permanent").as_bytes(),
            now,
        )
        .unwrap();
        assert_eq!(events[0].outcome, Outcome::Bounced);
        assert_eq!(events[0].invitation_id.as_deref(), Some("inv-2"));
        let temporary = verify_and_parse(
            "mailgun",
            &secrets,
            &HashMap::new(),
            body("1700000000", &good, "failed", "temporary").as_bytes(),
            now,
        )
        .unwrap();
        assert_eq!(temporary[0].outcome, Outcome::Ignored);
        for sig in ["", &good[..32], "zz", &good.to_uppercase()[..10]] {
            assert!(
                verify_and_parse(
                    "mailgun",
                    &secrets,
                    &HashMap::new(),
                    body("1700000000", sig, "delivered", "").as_bytes(),
                    now
                )
                .is_err(),
                "{sig:?}"
            );
        }
        let stale = sign("1699999000", "tok-1");
        assert!(
            verify_and_parse(
                "mailgun",
                &secrets,
                &HashMap::new(),
                body("1699999000", &stale, "delivered", "").as_bytes(),
                now
            )
            .is_err()
        );
        assert!(verify_and_parse("mailgun", &secrets, &HashMap::new(), b"", now).is_err());
    }

    #[test]
    fn postmark_basic_credentials_and_mapping() {
        let secrets = WebhookSecrets {
            postmark: Some(("u".into(), "p".into())),
            ..Default::default()
        };
        let auth = |creds: &str| headers(&[("authorization", &format!("Basic {}", STANDARD.encode(creds)))]);
        let body = br#"{"RecordType":"Bounce","Type":"HardBounce","MessageID":"m","Metadata":{"invitation_id":"inv-3"}}"#;
        let events = verify_and_parse("postmark", &secrets, &auth("u:p"), body, 0).unwrap();
        assert_eq!(events[0].outcome, Outcome::Bounced);
        assert!(events[0].event_id.starts_with("sha256:"));
        let soft = br#"{"RecordType":"Bounce","Type":"SoftBounce","Metadata":{"invitation_id":"inv-3"}}"#;
        assert_eq!(
            verify_and_parse("postmark", &secrets, &auth("u:p"), soft, 0).unwrap()[0].outcome,
            Outcome::Ignored
        );
        for creds in ["u:q", "u:", ":p", "u:pp", ""] {
            assert!(
                verify_and_parse("postmark", &secrets, &auth(creds), body, 0).is_err(),
                "{creds:?}"
            );
        }
        assert!(verify_and_parse("postmark", &secrets, &HashMap::new(), body, 0).is_err());
    }

    /// Postmark's documented Delivery webhook example, with our metadata.
    #[test]
    fn postmark_documented_delivery_example() {
        let secrets = WebhookSecrets {
            postmark: Some(("u".into(), "p".into())),
            ..Default::default()
        };
        let body = br#"{"RecordType":"Delivery","ServerID":23,"MessageStream":"outbound","MessageID":"00000000-0000-0000-0000-000000000000","Recipient":"john@example.com","Tag":"welcome-email","DeliveredAt":"2021-02-21T16:34:52Z","Details":"Test delivery webhook details","Metadata":{"a_key":"a_value","invitation_id":"inv-5"}}"#;
        let auth = headers(&[("authorization", &format!("Basic {}", STANDARD.encode("u:p")))]);
        let events = verify_and_parse("postmark", &secrets, &auth, body, 0).unwrap();
        assert_eq!(events[0].outcome, Outcome::Delivered);
        assert_eq!(events[0].kind, "Delivery");
        assert_eq!(events[0].invitation_id.as_deref(), Some("inv-5"));
        // Same body again: same event id, so the store sees a replay.
        let again = verify_and_parse("postmark", &secrets, &auth, body, 0).unwrap();
        assert_eq!(again[0].event_id, events[0].event_id);
    }

    /// Found by review while writing the fuzz targets: `now - t` overflowed (a panic in
    /// debug builds) for a timestamp header of i64::MIN, before any signature was checked.
    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let key = b"0123456789abcdef".to_vec();
        let secrets = WebhookSecrets {
            resend: Some(key.clone()),
            mailgun: Some(key.clone()),
            ..Default::default()
        };
        for ts in ["-9223372036854775808", "9223372036854775807"] {
            for now in [0, 1_700_000_000] {
                let h = headers(&[
                    ("svix-id", "msg_1"),
                    ("svix-timestamp", ts),
                    ("svix-signature", &sign_svix(&key, "msg_1", ts, "{}")),
                ]);
                let stale = verify_and_parse("resend", &secrets, &h, b"{}", now);
                assert!(
                    matches!(stale, Err(WebhookError::Unauthenticated(_))),
                    "{ts} at {now}: {stale:?}"
                );
                let body =
                    serde_json::json!({"signature": {"timestamp": ts, "token": "t", "signature": "00"}});
                let stale = verify_and_parse(
                    "mailgun",
                    &secrets,
                    &HashMap::new(),
                    body.to_string().as_bytes(),
                    now,
                );
                assert!(
                    matches!(stale, Err(WebhookError::Unauthenticated(_))),
                    "{ts} at {now}: {stale:?}"
                );
            }
        }
        // At the limits themselves: exactly 5 minutes is still fresh.
        assert!(check_timestamp("-9223372036854775508", i64::MIN).is_ok());
        assert!(check_timestamp("9223372036854775807", i64::MAX - 300).is_ok());
        assert!(check_timestamp("9223372036854775807", i64::MAX - 301).is_err());
    }

    #[test]
    fn a_complaint_counts_as_delivered() {
        assert_eq!(Outcome::Complained.status(), Some(InvitationStatus::Delivered));
        assert_eq!(Outcome::Ignored.status(), None);
        assert_eq!(Outcome::Bounced.status(), Some(InvitationStatus::Bounced));
    }
}
