//! Delivery as a new user meets it (issue #6): humane send times in the recipient's zone,
//! the scheduler sending at `scheduledFor` into the dev mailbox (or a real SMTP server on
//! loopback), personalised templates with a recorded A/B variant, and signed provider
//! webhooks moving the status forward only.
//!
//! invite-svc's scheduling clock is moved (`mesh.invite_clock`), so "a Friday evening" and
//! "the Thursday it is due" happen now instead of days apart. Webhook signatures are
//! checked against the real clock, so they are signed with it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::{America::New_York, Europe::London};
use hmac::{Hmac, Mac};
use referral_tests::{
    TestApp, assert_outside_blackouts, eventually, mail_header as header,
    smtp::{Reply, SmtpServer},
    spawn_app_with_args, ts, unique,
};
use serde_json::{Value, json};
use sha2::Sha256;

const RESEND_KEY: &[u8] = b"delivery-test-resend-key-0123456789";

fn resend_secret() -> String {
    format!("whsec_{}", STANDARD.encode(RESEND_KEY))
}

/// invite-svc flags for these tests: a quick scheduler and a Resend secret.
fn invite_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--scheduler-tick",
        "50ms",
        "--resend-webhook-secret",
        &resend_secret(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The first `weekday` at `hour:minute` local time in `tz` at least a week from now.
fn next_local(tz: chrono_tz::Tz, weekday: Weekday, hour: u32, minute: u32) -> DateTime<Utc> {
    let mut date = (Utc::now() + chrono::Duration::days(7))
        .with_timezone(&tz)
        .date_naive();
    while date.weekday() != weekday {
        date = date.succ_opt().expect("a next day");
    }
    local(tz, date, hour, minute)
}

fn local(tz: chrono_tz::Tz, date: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    tz.from_local_datetime(&date.and_hms_opt(hour, minute, 0).expect("valid time"))
        .single()
        .expect("an unambiguous local time")
        .with_timezone(&Utc)
}

/// The `.eml` files the dev mailbox holds for an invitation.
fn mailbox_files(dir: &Path, invitation_id: &str) -> Vec<PathBuf> {
    let suffix = format!("-{invitation_id}.eml");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(&suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The message body, with quoted-printable soft line breaks and `=XX` escapes undone.
fn body(message: &str) -> String {
    let raw = message.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let joined = raw.replace("=\r\n", "");
    let mut out = Vec::new();
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=')
            .then(|| joined.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

fn hmac_b64(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A Resend webhook call: Svix headers signed with `key` now.
async fn resend(app: &TestApp, key: &[u8], kind: &str, invitation_id: &str) -> (u16, Value) {
    let body = json!({
        "type": kind,
        "created_at": Utc::now().to_rfc3339(),
        "data": {
            "email_id": unique("email"),
            "to": ["jamie@example.com"],
            "tags": [{"name": "invitation_id", "value": invitation_id}],
        },
    })
    .to_string();
    resend_raw(app, key, &unique("msg"), &body).await
}

async fn resend_raw(app: &TestApp, key: &[u8], id: &str, body: &str) -> (u16, Value) {
    let ts = Utc::now().timestamp().to_string();
    let sig = hmac_b64(key, &format!("{id}.{ts}.{body}"));
    let r = app
        .http
        .post(app.url("/v1/webhooks/email/resend"))
        .header("content-type", "application/json")
        .header("svix-id", id)
        .header("svix-timestamp", ts)
        .header("svix-signature", format!("v1,{sig}"))
        .body(body.to_string())
        .send()
        .await
        .expect("webhook request");
    TestApp::read(r).await
}

async fn invitation_of(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, inv) = app.get(token, &format!("/v1/invitations/{id}")).await;
    assert_eq!(status, 200, "{inv}");
    inv
}

/// The walk-through of the issue, literally, through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friday_evening_in_new_york_with_a_wedding_in_two_days() {
    let app = spawn_app_with_args(vec![], invite_args(&[])).await;
    let mailbox = app.mesh.mailbox.clone().expect("the mesh keeps a dev mailbox");
    assert_eq!(
        mailbox,
        app.data_dir.join("mailbox"),
        "the mailbox is in the data dir"
    );

    // Friday 19:30 in New York; the wedding is on Sunday.
    let friday_evening = next_local(New_York, Weekday::Fri, 19, 30);
    let friday = friday_evening.with_timezone(&New_York).date_naive();
    let wedding = friday + chrono::Duration::days(2);
    app.mesh.invite_clock.set(friday_evening);

    let ana = unique("ana");
    let token = app.member(&ana, "SUPPLIER");
    let (status, inv) = app
        .post(
            &token,
            "/v1/invitations",
            json!({
                "referrerId": ana,
                "referrerKind": "SUPPLIER",
                "refereeKind": "COUPLE",
                "vendorType": "PHOTOGRAPHER",
                "channel": "EMAIL",
                "recipient": {"email": "jamie@example.com", "name": "Jamie", "timezone": "America/New_York"},
                "weddingDate": wedding.to_string(),
                "referrerName": "Ana",
                "businessName": "Ana Photography",
            }),
        )
        .await;
    assert_eq!(status, 200, "{inv}");
    let id = inv["id"].as_str().expect("id").to_string();
    assert_eq!(inv["status"], "SCHEDULED", "{inv}");

    // After the blackout, in their time: the wedding blocks Thursday..Wednesday around
    // Sunday whole, then quiet hours until 08:00: Thursday 08:00 in New York.
    let scheduled = ts(&inv["scheduledFor"]);
    let expected = local(New_York, friday + chrono::Duration::days(6), 8, 0);
    assert_eq!(scheduled, expected, "{inv}");
    assert_outside_blackouts(scheduled, New_York, Some(wedding));
    assert!(scheduled > friday_evening);

    // The template for a photographer inviting a couple, with its variant recorded.
    assert_eq!(inv["templateId"], "supplier-to-couple-photographer", "{inv}");
    let variant = inv["templateVariant"].as_str().unwrap_or_default().to_string();
    assert!(["A", "B"].contains(&variant.as_str()), "{inv}");

    // Not sent before its time, even a minute before.
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.mesh
        .invite_clock
        .set(scheduled - chrono::Duration::minutes(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        mailbox_files(&mailbox, &id).is_empty(),
        "nothing sent before scheduledFor"
    );
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "SCHEDULED");

    // At that time it appears in the dev mailbox, once, personalised.
    app.mesh.invite_clock.set(scheduled);
    let file = eventually(Duration::from_secs(10), || {
        let found = mailbox_files(&mailbox, &id);
        async move { found.into_iter().next() }
    })
    .await
    .expect("the message appears in the dev mailbox");
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with(&scheduled.format("%Y%m%dT%H%M").to_string()),
        "{name} is named for its send time {scheduled}"
    );
    let message = std::fs::read_to_string(&file).expect("readable .eml");
    let date = DateTime::parse_from_rfc2822(&header(&message, "Date").expect("Date"))
        .expect("RFC 2822 date")
        .with_timezone(&Utc);
    assert!(
        date >= scheduled && date - scheduled < chrono::Duration::seconds(30),
        "sent at {date}, due {scheduled}"
    );
    assert_eq!(
        header(&message, "To").as_deref(),
        Some("Jamie <jamie@example.com>")
    );
    assert_eq!(header(&message, "X-Invitation-Id").as_deref(), Some(id.as_str()));
    let subject = header(&message, "Subject").expect("Subject");
    let expected_subject = if variant == "A" {
        "Ana can't wait to photograph your day"
    } else {
        "Your photographer Ana Photography has a tip for you"
    };
    assert_eq!(subject, expected_subject, "the subject of variant {variant}");
    let text = body(&message);
    let link = format!("{}/r/{}", app.base, inv["code"].as_str().unwrap());
    for needle in ["Jamie", "Ana Photography", link.as_str()] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    let long_date = wedding.format("%A %-d %B %Y").to_string();
    assert!(
        text.contains(&long_date),
        "the wedding date {long_date} in\n{text}"
    );

    let sent = eventually(Duration::from_secs(5), || async {
        let inv = invitation_of(&app, &token, &id).await;
        (inv["status"] == "SENT").then_some(inv)
    })
    .await
    .expect("SENT");
    assert_eq!(
        sent["templateVariant"],
        variant.as_str(),
        "the variant stays recorded"
    );
    assert!(ts(&sent["sentAt"]) >= scheduled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mailbox_files(&mailbox, &id).len(), 1, "sent exactly once");

    // A signed Resend "delivered" moves it to DELIVERED; the same event again changes
    // nothing; a forged one is 401 and changes nothing.
    let body = json!({
        "type": "email.delivered",
        "created_at": Utc::now().to_rfc3339(),
        "data": {"email_id": unique("email"), "to": ["jamie@example.com"],
                 "tags": [{"name": "invitation_id", "value": id}]},
    })
    .to_string();
    let (status, answer) = resend_raw(&app, RESEND_KEY, "msg_delivered", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "DELIVERED");
    let (status, answer) = resend_raw(&app, RESEND_KEY, "msg_delivered", &body).await;
    assert_eq!((status, &answer["duplicates"]), (200, &json!(1)), "{answer}");
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "DELIVERED");
    let (status, answer) = resend(&app, b"a forger's key", "email.clicked", &id).await;
    assert_eq!(status, 401, "forged -> {answer}");
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "DELIVERED");

    // Clicked, then a late "delivered": it stays CLICKED.
    let (status, answer) = resend(&app, RESEND_KEY, "email.clicked", &id).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "CLICKED");
    let (status, answer) = resend(&app, RESEND_KEY, "email.delivered", &id).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        invitation_of(&app, &token, &id).await["status"],
        "CLICKED",
        "a late DELIVERED never overwrites CLICKED"
    );

    // The InvitationSent event carries the template and variant for analytics.
    let events = referral_tests::read_event_log(
        app.mesh.invite,
        &app.service_token(),
        &[id.clone()].into_iter().collect(),
        Duration::from_secs(10),
    )
    .await;
    let sent_event = events
        .iter()
        .find_map(|e| match &e.payload {
            Some(referral_proto::events::v1::event::Payload::InvitationSent(t)) if t.invitation_id == id => {
                Some(t)
            }
            _ => None,
        })
        .expect("an InvitationSent event");
    assert_eq!(sent_event.template_id, "supplier-to-couple-photographer");
    assert_eq!(sent_event.template_variant, variant);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_aims_for_tuesday_afternoon_and_bad_templates_are_named() {
    let app = spawn_app_with_args(vec![], invite_args(&[])).await;
    let monday = next_local(London, Weekday::Mon, 10, 0);
    app.mesh.invite_clock.set(monday);
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let base = |email: &str| {
        json!({
            "referrerId": sue, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
            "channel": "EMAIL", "recipient": {"email": email},
        })
    };
    let mut optimized = base("o@example.com");
    optimized["optimize"] = json!(true);
    let inv = app.invite_ok(&token, optimized).await;
    let tuesday_2pm = local(
        London,
        monday.with_timezone(&London).date_naive() + chrono::Duration::days(1),
        14,
        0,
    );
    assert_eq!(ts(&inv["scheduledFor"]), tuesday_2pm, "{inv}");
    let plain = app.invite_ok(&token, base("p@example.com")).await;
    let first = ts(&plain["scheduledFor"]) - monday;
    assert!(
        first >= chrono::Duration::zero() && first < chrono::Duration::seconds(10),
        "without optimize: the first allowed instant (now, Monday 10:00) -> {plain}"
    );
    assert_eq!(plain["templateId"], "supplier-to-couple");

    // An explicit template must exist and fit the flow.
    for (template, why) in [("no-such-template", "unknown"), ("couple-to-couple", "flow")] {
        let mut bad = base(&format!("{why}@example.com"));
        bad["templateId"] = json!(template);
        let (status, body) = app.post(&token, "/v1/invitations", bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(referral_tests::violated_fields(&body), ["templateId"], "{body}");
    }
    app.stop().await;
}

/// SMTP in production: the server is down at first (the attempt fails and is retried with
/// backoff), then comes up and gets the message exactly once, with the invitation id in
/// every provider's metadata header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_retries_until_the_server_takes_the_message_once() {
    // The port is bound but refuses connections until the server listens.
    let reserved = SmtpServer::reserve();
    let port_arg = reserved.port().to_string();
    let app = spawn_app_with_args(
        vec![],
        invite_args(&[
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &port_arg,
            "--smtp-tls",
            "none",
            "--send-retry-base",
            "1s",
        ]),
    )
    .await;
    assert_eq!(app.mesh.mailbox, None, "with SMTP there is no dev mailbox");
    app.mesh.invite_clock.set(next_local(London, Weekday::Tue, 11, 0));
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let inv = app
        .invite_ok(
            &token,
            json!({
                "referrerId": sue, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
                "channel": "EMAIL", "recipient": {"email": "pat@example.com", "name": "Pat"},
                "businessName": "Sue's Flowers", "message": "See you at the tasting!",
            }),
        )
        .await;
    let id = inv["id"].as_str().unwrap().to_string();
    // Nobody listens yet: the attempt fails, the invitation waits for its retry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "SCHEDULED");

    let server = reserved.listen();
    let sent = eventually(Duration::from_secs(20), || async {
        let inv = invitation_of(&app, &token, &id).await;
        (inv["status"] == "SENT").then_some(inv)
    })
    .await
    .expect("SENT once the SMTP server is up");
    assert!(ts(&sent["sentAt"]) >= ts(&inv["scheduledFor"]));
    let messages = server
        .wait_for(1, Duration::from_secs(5))
        .await
        .expect("the SMTP server took the message");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.messages().len(), 1, "exactly one message");
    assert_eq!(messages[0].rcpt_to, ["pat@example.com"], "the envelope recipient");
    assert_eq!(messages[0].mail_from, "invitations@referral-mesh.localhost");
    assert_eq!(messages[0].authenticated_as, None, "no credentials configured");
    let message = messages[0].text();
    assert_eq!(header(&message, "X-Invitation-Id").as_deref(), Some(id.as_str()));
    assert_eq!(
        header(&message, "Message-ID"),
        Some(format!("<{id}@invitations.referral-mesh>"))
    );
    assert_eq!(
        header(&message, "X-Mailgun-Variables"),
        Some(json!({"invitation_id": id}).to_string())
    );
    assert_eq!(
        header(&message, "X-PM-Metadata-invitation_id").as_deref(),
        Some(id.as_str())
    );
    let text = body(&message);
    for needle in ["Pat", "Sue's Flowers", "See you at the tasting!"] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    assert!(
        !text.contains("wedding on"),
        "no wedding date line without a date:\n{text}"
    );

    // With SMTP (production) and no SMS provider plugged in, an SMS is refused, not faked.
    let sms = app
        .invite_ok(
            &token,
            json!({
                "referrerId": sue, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
                "channel": "SMS", "recipient": {"phone": "+447700900456"},
            }),
        )
        .await;
    let sms_id = sms["id"].as_str().unwrap().to_string();
    let bounced = eventually(Duration::from_secs(10), || async {
        let inv = invitation_of(&app, &token, &sms_id).await;
        (inv["status"] == "BOUNCED").then_some(inv)
    })
    .await
    .expect("the SMS is given up");
    assert!(
        bounced["statusReason"]
            .as_str()
            .unwrap_or_default()
            .contains("no SMS provider"),
        "{bounced}"
    );
    app.stop().await;
}

/// What the SMTP server answers decides the outcome: a 550 for the recipient is a bounce
/// at once (with the server's words as the reason), a 451 at DATA is tried again and then
/// delivered once; the client logs in (AUTH) with the configured credentials, waits out a
/// slow server, and encodes a non-ASCII display name (RFC 2047).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_answers_decide_bounce_or_retry() {
    let server = SmtpServer::start().await;
    server.require_auth("mesh-sender", "smtp-password-123");
    server.reject_recipient(
        "gone@example.com",
        Reply::new(550, "5.1.1 gone@example.com: no such user"),
    );
    server.fail_next_data(Reply::new(451, "4.3.0 mailbox busy, try later"));
    server.set_delay(Duration::from_millis(50));
    let port = server.port().to_string();
    let app = spawn_app_with_args(
        vec![],
        invite_args(&[
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &port,
            "--smtp-tls",
            "none",
            "--smtp-username",
            "mesh-sender",
            "--smtp-password",
            "smtp-password-123",
            "--send-retry-base",
            "1s",
        ]),
    )
    .await;
    app.mesh.invite_clock.set(next_local(London, Weekday::Tue, 11, 0));
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let invite = |email: &str, name: &str| {
        json!({
            "referrerId": sue, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
            "channel": "EMAIL", "recipient": {"email": email, "name": name},
        })
    };
    let gone = app.invite_ok(&token, invite("gone@example.com", "Gone")).await;
    let gone_id = gone["id"].as_str().unwrap().to_string();
    let bounced = eventually(Duration::from_secs(10), || async {
        let inv = invitation_of(&app, &token, &gone_id).await;
        (inv["status"] == "BOUNCED").then_some(inv)
    })
    .await
    .expect("a 550 recipient bounces");
    let reason = bounced["statusReason"].as_str().unwrap_or_default();
    assert!(reason.contains("no such user"), "the server's words: {bounced}");
    assert!(
        server.messages().is_empty(),
        "nothing taken for a refused recipient"
    );

    // The first DATA is answered 451: the invitation waits for its retry, then is sent once.
    let zoe = app
        .invite_ok(&token, invite("zoe@example.com", "Zoë Brontë"))
        .await;
    let zoe_id = zoe["id"].as_str().unwrap().to_string();
    let sent = eventually(Duration::from_secs(20), || async {
        let inv = invitation_of(&app, &token, &zoe_id).await;
        (inv["status"] == "SENT").then_some(inv)
    })
    .await
    .expect("SENT after the temporary failure");
    assert!(ts(&sent["sentAt"]) >= ts(&zoe["scheduledFor"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "the 451 attempt kept nothing; the retry once");
    let message = &messages[0];
    assert_eq!(message.rcpt_to, ["zoe@example.com"]);
    assert_eq!(message.authenticated_as.as_deref(), Some("mesh-sender"));
    let raw_to = header(&message.text(), "To").expect("To");
    assert!(
        raw_to.to_ascii_lowercase().contains("=?utf-8?"),
        "RFC 2047 encoded: {raw_to}"
    );
    let parsed = message.parsed();
    let to = parsed.to().and_then(|a| a.first()).expect("a To address");
    assert_eq!(
        (to.name(), to.address()),
        (Some("Zoë Brontë"), Some("zoe@example.com"))
    );
    assert_eq!(
        parsed.message_id(),
        Some(format!("{zoe_id}@invitations.referral-mesh").as_str())
    );
    assert_eq!(
        parsed.header_raw("X-Invitation-Id").map(str::trim),
        Some(zoe_id.as_str())
    );
    app.stop().await;
}

/// SendGrid through the gateway: a batch signed with ECDSA P-256 over timestamp + body moves
/// the status; a replay, a changed body, a stale timestamp and empty, truncated or
/// wrong-length signatures change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_batches_are_verified_with_p256() {
    use p256::{
        ecdsa::{Signature, SigningKey, signature::Signer},
        pkcs8::EncodePublicKey,
    };
    let signing = SigningKey::from_slice(&[42u8; 32]).expect("a valid scalar");
    let public = STANDARD.encode(
        signing
            .verifying_key()
            .to_public_key_der()
            .expect("DER")
            .as_bytes(),
    );
    let app = spawn_app_with_args(vec![], invite_args(&["--sendgrid-webhook-public-key", &public])).await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let inv = app
        .invite_ok(
            &token,
            referral_tests::invitation(&sue, "LINK", "kim@example.com"),
        )
        .await;
    let id = inv["id"].as_str().unwrap().to_string();
    let body = json!([
        {"email": "kim@example.com", "timestamp": Utc::now().timestamp(), "event": "delivered",
         "sg_event_id": unique("sg"), "sg_message_id": "m1", "invitation_id": id},
        {"email": "kim@example.com", "timestamp": Utc::now().timestamp(), "event": "open",
         "sg_event_id": unique("sg"), "sg_message_id": "m1", "invitation_id": id},
    ])
    .to_string();
    let post = |body: String, sig: String, ts: String| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(app.url("/v1/webhooks/email/sendgrid"))
                .header("content-type", "application/json")
                .header("x-twilio-email-event-webhook-signature", sig)
                .header("x-twilio-email-event-webhook-timestamp", ts)
                .body(body)
                .send()
                .await
                .expect("webhook request");
            TestApp::read(r).await
        }
    };
    let sign = |ts: &str, body: &str| {
        let sig: Signature = signing.sign(format!("{ts}{body}").as_bytes());
        STANDARD.encode(sig.to_der().as_bytes())
    };
    let now = Utc::now().timestamp().to_string();
    let good = sign(&now, &body);

    let stale = (Utc::now().timestamp() - 600).to_string();
    let refused = [
        (
            "a changed body",
            body.replace("open", "click"),
            good.clone(),
            now.clone(),
        ),
        ("a stale timestamp", body.clone(), sign(&stale, &body), stale),
        ("an empty signature", body.clone(), String::new(), now.clone()),
        (
            "a truncated signature",
            body.clone(),
            good[..good.len() / 2].to_string(),
            now.clone(),
        ),
        (
            "a wrong-length signature",
            body.clone(),
            format!("{good}AAAA"),
            now.clone(),
        ),
    ];
    for (what, body, sig, ts) in refused {
        let (status, answer) = post(body, sig, ts).await;
        assert_eq!(status, 401, "{what} -> {answer}");
    }
    assert_eq!(
        invitation_of(&app, &token, &id).await["status"],
        "SENT",
        "nothing recorded"
    );

    let (status, answer) = post(body.clone(), good.clone(), now.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["recorded"], 2, "{answer}");
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "OPENED");
    let (status, answer) = post(body, good, now).await;
    assert_eq!(
        (status, &answer["duplicates"]),
        (200, &json!(2)),
        "a replay -> {answer}"
    );
    assert_eq!(invitation_of(&app, &token, &id).await["status"], "OPENED");
    app.stop().await;
}
