//! Where invitations go: SMTP (lettre, async on tokio, rustls) in production; in the
//! embedded mesh a dev mailbox that keeps every message as a file a new user can open.
//! SMS goes through the pluggable [`SmsSender`]; the mesh's writes to the dev mailbox too.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart, SinglePart,
        header::{HeaderName, HeaderValue},
    },
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};

use referral_common::input;

use crate::domain::{delivery::SendFailure, suppression::UnsubscribeLinks};

/// One e-mail to send.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    pub invitation_id: String,
    pub from: Mailbox,
    pub to_address: String,
    pub to_name: String,
    pub subject: String,
    pub text: String,
    /// The HTML alternative of `text` ('' for none).
    pub html: String,
    /// The `List-Unsubscribe` links (every invitation carries them).
    pub unsubscribe: Option<UnsubscribeLinks>,
    /// The send instant (the message's Date header).
    pub date: DateTime<Utc>,
}

/// One SMS to send.
#[derive(Debug, Clone)]
pub struct OutgoingSms {
    pub invitation_id: String,
    pub to_phone: String,
    pub text: String,
    pub date: DateTime<Utc>,
}

/// What the provider said when it took a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    pub provider_message_id: String,
}

#[tonic::async_trait]
pub trait EmailSender: Send + Sync + 'static {
    async fn send_email(&self, email: &OutgoingEmail) -> Result<Receipt, SendFailure>;
}

#[tonic::async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send_sms(&self, sms: &OutgoingSms) -> Result<Receipt, SendFailure>;
}

/// The `Message-ID` of an invitation's message: the same on every attempt, so a message
/// re-sent after a crash threads with (and can be deduplicated against) the first.
pub fn message_id(invitation_id: &str) -> String {
    format!("<{invitation_id}@invitations.referral-mesh>")
}

/// Builds the RFC 5322 message, with the invitation id in each provider's metadata header
/// (SendGrid unique args, Mailgun variables, Postmark metadata, and our own), so their
/// webhooks can be matched back.
///
/// Every value that reaches a header is checked here, whatever validation did at creation:
/// a row stored before that validation (or written around it) must fail its one send
/// permanently, never panic the scheduler. lettre's `Mailbox` header panics on a CR or LF in a
/// display name (its `Display` returns `fmt::Error`, which `to_string` turns into a panic), so
/// display names go in only through `Mailbox` (lettre's RFC 2047 encoding) and only once they
/// hold no control character.
pub fn build_message(email: &OutgoingEmail) -> Result<Message, SendFailure> {
    let header_safe = |what: &str, value: &str| {
        if input::has_control(value) {
            Err(SendFailure::Permanent(format!(
                "{what} holds control characters; it cannot go into a mail header"
            )))
        } else {
            Ok(())
        }
    };
    header_safe("recipient name", &email.to_name)?;
    header_safe("recipient address", &email.to_address)?;
    header_safe("subject", &email.subject)?;
    // A From without a display name has nothing to check.
    header_safe("sender name", email.from.name.as_deref().unwrap_or_default())?;
    let to_address = email
        .to_address
        .parse()
        .map_err(|e| SendFailure::Permanent(format!("recipient address: {e}")))?;
    let to_name = (!email.to_name.trim().is_empty()).then(|| email.to_name.trim().to_string());
    let id_json = serde_json::json!({ "invitation_id": email.invitation_id }).to_string();
    let raw =
        |name: &'static str, value: String| HeaderValue::new(HeaderName::new_from_ascii_str(name), value);
    let mut builder = Message::builder();
    if let Some(links) = &email.unsubscribe {
        // RFC 2369 and RFC 8058: the https link takes a one-click POST; the mailto is for
        // clients that only mail.
        let value = links.list_unsubscribe();
        header_safe("unsubscribe link", &value)?;
        builder = builder.raw_header(raw("List-Unsubscribe", value)).raw_header(raw(
            "List-Unsubscribe-Post",
            UnsubscribeLinks::LIST_UNSUBSCRIBE_POST.to_string(),
        ));
    }
    let builder = builder
        .from(email.from.clone())
        .to(Mailbox::new(to_name, to_address))
        .subject(email.subject.clone())
        .date(SystemTime::from(email.date))
        .message_id(Some(message_id(&email.invitation_id)))
        .raw_header(raw("X-Invitation-Id", email.invitation_id.clone()))
        .raw_header(raw(
            "X-SMTPAPI",
            serde_json::json!({ "unique_args": { "invitation_id": email.invitation_id } }).to_string(),
        ))
        .raw_header(raw("X-Mailgun-Variables", id_json))
        .raw_header(raw("X-PM-Metadata-invitation_id", email.invitation_id.clone()));
    let built = if email.html.is_empty() {
        builder.singlepart(SinglePart::plain(email.text.clone()))
    } else {
        builder.multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
    };
    built.map_err(|e| SendFailure::Permanent(format!("message: {e}")))
}

/// How to reach the SMTP server.
#[derive(Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain text (a relay on loopback or inside the cluster only).
    None,
    /// STARTTLS required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: String,
    pub password: String,
    pub timeout: Duration,
}

/// SMTP through lettre's pooled async transport.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpSender {
    pub fn new(s: &SmtpSettings) -> Result<Self, String> {
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => {
                Tls::Required(TlsParameters::new(s.host.clone()).map_err(|e| e.to_string())?)
            }
            SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(s.host.clone()).map_err(|e| e.to_string())?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout));
        if !s.username.is_empty() {
            builder = builder.credentials(Credentials::new(s.username.clone(), s.password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }
}

#[tonic::async_trait]
impl EmailSender for SmtpSender {
    async fn send_email(&self, email: &OutgoingEmail) -> Result<Receipt, SendFailure> {
        let message = build_message(email)?;
        match self.transport.send(message).await {
            Ok(response) => Ok(Receipt {
                provider_message_id: response.message().collect::<Vec<_>>().join(" "),
            }),
            // 5xx: the server will never take it. Anything else (4xx, network, time-out)
            // may work later.
            Err(e) if e.is_permanent() => Err(SendFailure::Permanent(e.to_string())),
            Err(e) => Err(SendFailure::Transient(e.to_string())),
        }
    }
}

/// Keeps every message as a file in a directory: `.eml` for e-mail (opens in any mail
/// client), `.sms.txt` for SMS. Names start with the send time, so `ls` is chronological.
#[derive(Clone, Debug)]
pub struct DevMailbox {
    dir: PathBuf,
}

impl DevMailbox {
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    async fn write(
        &self,
        date: DateTime<Utc>,
        invitation_id: &str,
        ext: &str,
        bytes: Vec<u8>,
    ) -> Result<Receipt, SendFailure> {
        let name = format!("{}-{invitation_id}.{ext}", date.format("%Y%m%dT%H%M%SZ"));
        let path = self.dir.join(&name);
        // Written under a temporary name and renamed, so a reader never sees half a message.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |e: std::io::Error| SendFailure::Transient(format!("dev mailbox {}: {e}", path.display()));
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(Receipt {
            provider_message_id: format!("dev-mailbox:{name}"),
        })
    }
}

#[tonic::async_trait]
impl EmailSender for DevMailbox {
    async fn send_email(&self, email: &OutgoingEmail) -> Result<Receipt, SendFailure> {
        let message = build_message(email)?;
        self.write(email.date, &email.invitation_id, "eml", message.formatted())
            .await
    }
}

#[tonic::async_trait]
impl SmsSender for DevMailbox {
    async fn send_sms(&self, sms: &OutgoingSms) -> Result<Receipt, SendFailure> {
        let text = format!(
            "To: {}\nDate: {}\nInvitation: {}\n\n{}\n",
            sms.to_phone,
            sms.date.to_rfc3339(),
            sms.invitation_id,
            sms.text
        );
        self.write(sms.date, &sms.invitation_id, "sms.txt", text.into_bytes())
            .await
    }
}

/// SMS where no provider is plugged in (production with SMTP but no SMS client): every SMS
/// fails permanently, so the invitation ends BOUNCED with this reason instead of being
/// reported as sent.
pub struct NoSmsProvider;

#[tonic::async_trait]
impl SmsSender for NoSmsProvider {
    async fn send_sms(&self, _sms: &OutgoingSms) -> Result<Receipt, SendFailure> {
        Err(SendFailure::Permanent(
            "no SMS provider is configured (SMS goes to the dev mailbox only without SMTP_HOST)".into(),
        ))
    }
}

/// The senders the scheduler uses.
#[derive(Clone)]
pub struct Senders {
    pub email: Arc<dyn EmailSender>,
    pub sms: Arc<dyn SmsSender>,
    pub from: Mailbox,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            invitation_id: "inv-1".into(),
            from: "Referral Mesh <invites@example.com>".parse().unwrap(),
            to_address: "guest@example.com".into(),
            to_name: "Jamie Guest".into(),
            subject: "Ana thinks you'll love planning with us".into(),
            text: "Hi Jamie,\n\nJoin here: http://x/r/LOVE-ABCDEF\n".into(),
            html: String::new(),
            unsubscribe: None,
            date: "2026-11-26T13:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn the_message_carries_the_invitation_id_for_every_provider() {
        let text = String::from_utf8(build_message(&email()).unwrap().formatted()).unwrap();
        for needle in [
            "Message-ID: <inv-1@invitations.referral-mesh>",
            "X-Invitation-Id: inv-1",
            "X-SMTPAPI: {\"unique_args\":{\"invitation_id\":\"inv-1\"}}",
            "X-Mailgun-Variables: {\"invitation_id\":\"inv-1\"}",
            "X-PM-Metadata-invitation_id: inv-1",
            "Date: Thu, 26 Nov 2026 13:00:00 +0000",
            "To: \"Jamie Guest\" <guest@example.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
    }

    #[test]
    fn header_values_with_control_characters_fail_permanently_without_panicking() {
        let bad = [
            "Eve\r\nBcc: victim@example.com",
            "Eve\n",
            "Eve\r",
            "a\u{0}b",
            "a\u{85}b",
        ];
        for name in bad {
            let mut e = email();
            e.to_name = name.into();
            let built = std::panic::catch_unwind(|| build_message(&e));
            assert!(
                matches!(built, Ok(Err(SendFailure::Permanent(_)))),
                "recipient name {name:?}"
            );
            let mut e = email();
            e.subject = name.into();
            assert!(
                matches!(build_message(&e), Err(SendFailure::Permanent(_))),
                "subject {name:?}"
            );
        }
    }

    #[test]
    fn display_names_are_encoded_by_lettre() {
        let mut e = email();
        e.to_name = "Zoë \"Z\" O'Brien, Jr.".into();
        let text = String::from_utf8(build_message(&e).unwrap().formatted()).unwrap();
        let to = text.lines().find(|l| l.starts_with("To: ")).unwrap();
        assert!(
            to.contains("=?utf-8?") && to.ends_with("<guest@example.com>"),
            "{to}"
        );
    }

    #[test]
    fn a_bad_address_is_permanent() {
        let mut e = email();
        e.to_address = "not an address".into();
        assert!(matches!(build_message(&e), Err(SendFailure::Permanent(_))));
    }

    #[tokio::test]
    async fn the_dev_mailbox_keeps_each_message_as_a_file() {
        let dir = std::env::temp_dir().join(format!("mailbox-{}", uuid::Uuid::now_v7()));
        let mailbox = DevMailbox::new(&dir).unwrap();
        let receipt = mailbox.send_email(&email()).await.unwrap();
        let path = dir.join("20261126T130000Z-inv-1.eml");
        assert_eq!(
            receipt.provider_message_id,
            "dev-mailbox:20261126T130000Z-inv-1.eml"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("Subject: Ana thinks you'll love planning with us"));
        let sms = OutgoingSms {
            invitation_id: "inv-2".into(),
            to_phone: "+447700900123".into(),
            text: "hello".into(),
            date: "2026-11-26T13:00:00Z".parse().unwrap(),
        };
        mailbox.send_sms(&sms).await.unwrap();
        assert!(dir.join("20261126T130000Z-inv-2.sms.txt").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_unsubscribe_headers_and_html_part_are_sent() {
        let mut e = email();
        e.unsubscribe = Some(UnsubscribeLinks::new(
            "https://r.example",
            "example.com",
            "inv-1.abc",
        ));
        e.html = "<p>Hi</p>".into();
        // Long headers are folded at a space; unfolded, they read as one line.
        let text = String::from_utf8(build_message(&e).unwrap().formatted())
            .unwrap()
            .replace("\r\n ", " ");
        for needle in [
            "List-Unsubscribe: <https://r.example/u/inv-1.abc>, <mailto:unsubscribe@example.com?subject=unsubscribe-inv-1.abc>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "multipart/alternative",
            "Content-Type: text/html; charset=utf-8",
            "Content-Type: text/plain; charset=utf-8",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        let plain = String::from_utf8(build_message(&email()).unwrap().formatted()).unwrap();
        assert!(!plain.contains("List-Unsubscribe"));
    }
}
