//! Consent and suppression end to end (issue #16, docs/api.md "Privacy and operations"):
//! every invitation email carries `List-Unsubscribe` (signed https link and mailto) and
//! `List-Unsubscribe-Post` (RFC 8058) and a visible link; `GET /u/{token}` changes nothing,
//! the one-click POST suppresses the address, cancels what is queued to it and refuses the
//! next invitation with `RECIPIENT_SUPPRESSED`; a hard bounce and a complaint suppress too,
//! with the same refusal; admins list (masked), lift (audited), and the address may be
//! invited again; a forged or altered token is refused and changes nothing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use referral_tests::{
    TestApp, error_info, eventually, mail_header as header, spawn_app_with_args, ts, unique,
};
use serde_json::{Value, json};
use sha2::Sha256;

const RESEND_KEY: &[u8] = b"resend-consent-test-key-0123456789";

fn invite_args() -> Vec<String> {
    vec![
        "--scheduler-tick".into(),
        "50ms".into(),
        "--resend-webhook-secret".into(),
        format!("whsec_{}", STANDARD.encode(RESEND_KEY)),
    ]
}

fn email_invitation(referrer: &str, email: &str) -> Value {
    json!({
        "referrerId": referrer,
        "referrerKind": "SUPPLIER",
        "refereeKind": "COUPLE",
        "vendorType": "PHOTOGRAPHER",
        "channel": "EMAIL",
        "recipient": {"email": email, "name": "Jamie"},
    })
}

/// A supplier of its own inviting `email`: the answer's status and body.
async fn invite(app: &TestApp, email: &str, extra: Value) -> (u16, Value) {
    let supplier = unique("sup");
    let token = app.member(&supplier, "SUPPLIER");
    let mut body = email_invitation(&supplier, email);
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.post(&token, "/v1/invitations", body).await
}

async fn invite_ok(app: &TestApp, email: &str, extra: Value) -> Value {
    let (status, inv) = invite(app, email, extra).await;
    assert_eq!(status, 200, "inviting {email}: {inv}");
    inv
}

/// The refusal's message, checked to be FAILED_PRECONDITION / RECIPIENT_SUPPRESSED.
async fn refused(app: &TestApp, email: &str) -> String {
    let (status, body) = invite(app, email, json!({})).await;
    assert_eq!(status, 400, "inviting suppressed {email}: {body}");
    assert_eq!(body["code"], 9, "FAILED_PRECONDITION: {body}");
    let info = error_info(&body).unwrap_or_else(|| panic!("ErrorInfo in {body}"));
    assert_eq!(info["reason"], "RECIPIENT_SUPPRESSED", "{body}");
    body["message"].as_str().unwrap_or_default().to_string()
}

async fn invitation(app: &TestApp, id: &str) -> Value {
    let (status, inv) = app.get(&app.admin(), &format!("/v1/invitations/{id}")).await;
    assert_eq!(status, 200, "{inv}");
    inv
}

fn mailbox_file(dir: &Path, invitation_id: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&format!("-{invitation_id}.eml")))
        })
}

/// The message's parts with quoted-printable soft breaks and `=3D` undone.
fn bodies(message: &str) -> String {
    let raw = message.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    raw.replace("=\r\n", "").replace("=3D", "=")
}

async fn page(app: &TestApp, token: &str) -> (u16, String) {
    let r = app
        .http
        .get(app.url(&format!("/u/{token}")))
        .send()
        .await
        .expect("GET /u");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn one_click(app: &TestApp, token: &str) -> (u16, String) {
    let r = app
        .http
        .post(app.url(&format!("/u/{token}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST /u");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn suppressions(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app.get(&app.admin(), &format!("/v1/suppressions{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["suppressions"].as_array().cloned().unwrap_or_default()
}

fn resend_webhook(kind: &str, invitation_id: &str) -> (String, Vec<(String, String)>) {
    let body = json!({
        "type": kind,
        "created_at": chrono::Utc::now().to_rfc3339(),
        "data": {
            "email_id": unique("email"),
            "to": ["someone@example.com"],
            "tags": [{"name": "invitation_id", "value": invitation_id}],
        },
    })
    .to_string();
    let id = unique("msg");
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(RESEND_KEY).expect("any key length");
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    let headers = vec![
        ("svix-id".to_string(), id),
        ("svix-timestamp".to_string(), ts),
        ("svix-signature".to_string(), format!("v1,{sig}")),
    ];
    (body, headers)
}

async fn webhook(app: &TestApp, kind: &str, invitation_id: &str) {
    let (body, headers) = resend_webhook(kind, invitation_id);
    let mut rb = app
        .http
        .post(app.url("/v1/webhooks/email/resend"))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let (status, answer) = TestApp::read(rb.send().await.expect("webhook")).await;
    assert_eq!(status, 200, "{kind}: {answer}");
    assert_eq!(answer["recorded"], 1, "{kind}: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribes_bounces_and_complaints_suppress_and_admins_lift() {
    let app = spawn_app_with_args(vec![], invite_args()).await;
    let mailbox = app.mesh.mailbox.clone().expect("the mesh keeps a dev mailbox");
    let couple = format!("{}@example.com", unique("couple"));

    // The first supplier's invitation is sent; the second's waits a month in the queue.
    let first = invite_ok(&app, &couple, json!({})).await;
    let first_id = first["id"].as_str().expect("id").to_string();
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let queued = invite_ok(&app, &couple, json!({"sendAt": later})).await;
    let queued_id = queued["id"].as_str().expect("id").to_string();
    assert_eq!(queued["status"], "SCHEDULED", "{queued}");
    app.mesh.invite_clock.set(ts(&first["scheduledFor"]));
    let file = eventually(Duration::from_secs(20), || {
        let found = mailbox_file(&mailbox, &first_id);
        async move { found }
    })
    .await
    .expect("the first invitation reaches the dev mailbox");
    let message = std::fs::read_to_string(&file).expect("readable .eml");

    // Both headers, and the link in the text and HTML bodies.
    let list = header(&message, "List-Unsubscribe").expect("List-Unsubscribe");
    assert_eq!(
        header(&message, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let prefix = format!("<{}/u/", app.base);
    assert!(list.starts_with(&prefix), "{list}");
    let token = list[prefix.len()..]
        .split('>')
        .next()
        .expect("the link's token")
        .to_string();
    assert!(
        token.starts_with(&format!("{first_id}.")),
        "the token names the invitation: {token}"
    );
    assert!(
        list.ends_with(&format!(
            "<mailto:unsubscribe@referral-mesh.localhost?subject=unsubscribe-{token}>"
        )),
        "{list}"
    );
    let link = format!("{}/u/{token}", app.base);
    let text = bodies(&message);
    assert!(
        text.contains(&format!("Unsubscribe: {link}")),
        "visible in the text body:\n{text}"
    );
    assert!(
        text.contains(&format!("<a href=\"{link}\">")),
        "an anchor in the HTML body:\n{text}"
    );

    // A forged or altered token is refused and changes nothing.
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let other_id = token.replacen(&first_id, &queued_id, 1);
    for bad in [flipped.as_str(), other_id.as_str(), "not-a-token", "x.abc"] {
        let (status, body) = page(&app, bad).await;
        assert_eq!(status, 400, "GET /u/{bad}: {body}");
        let (status, body) = one_click(&app, bad).await;
        assert_eq!(status, 400, "POST /u/{bad}: {body}");
    }
    // GET shows the page and changes nothing (link scanners follow links).
    let (status, html) = page(&app, &token).await;
    assert_eq!(status, 200, "{html}");
    let masked = format!("{}***@example.com", &couple[..1]);
    assert!(
        html.contains(&masked) && html.contains("method=\"post\""),
        "{html}"
    );
    assert!(
        !html.contains(&couple),
        "the page shows the address masked: {html}"
    );
    assert!(
        suppressions(&app, "").await.is_empty(),
        "nothing suppressed by GET or forged tokens"
    );
    assert_eq!(invitation(&app, &queued_id).await["status"], "SCHEDULED");

    // One click: suppressed, the queued invitation cancelled, a third supplier refused.
    let (status, html) = one_click(&app, &token).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("unsubscribed"), "{html}");
    let cancelled = invitation(&app, &queued_id).await;
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    assert_eq!(cancelled["statusReason"], "recipient suppressed", "{cancelled}");
    let refusal = refused(&app, &couple).await;
    // The same address however it is written.
    let (local, domain) = couple.split_once('@').expect("an address");
    assert_eq!(
        refused(&app, &format!("{}+tag@{}", local.to_uppercase(), domain)).await,
        refusal
    );
    // A batch item to it is refused alone, with the same words; the other item goes through.
    let sup = unique("sup");
    let item =
        |email: &str| json!({"refereeKind": "COUPLE", "channel": "EMAIL", "recipient": {"email": email}});
    let (status, batch) = app
        .post(
            &app.member(&sup, "SUPPLIER"),
            "/v1/invitations:batchCreate",
            json!({"referrerId": sup, "referrerKind": "SUPPLIER", "vendorType": "PHOTOGRAPHER",
                   "invitations": [item(&couple), item(&format!("{}@example.com", unique("other")))]}),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        (batch["accepted"].clone(), batch["rejected"].clone()),
        (json!(1), json!(1)),
        "{batch}"
    );
    let first_item = &batch["results"][0];
    assert_eq!(first_item["error"]["code"], 9, "{batch}");
    assert_eq!(first_item["error"]["message"], refusal.as_str(), "{batch}");
    // Clicking again is the same unsubscribe; the page now says so.
    assert_eq!(one_click(&app, &token).await.0, 200);
    assert!(page(&app, &token).await.1.contains("You are unsubscribed"));

    // A hard bounce and a complaint suppress too, and the refusal does not say which.
    let bounced = format!("{}@example.com", unique("bounce"));
    let bounced_inv = invite_ok(&app, &bounced, json!({})).await;
    webhook(&app, "email.bounced", bounced_inv["id"].as_str().unwrap()).await;
    assert_eq!(refused(&app, &bounced).await, refusal);
    let spam = format!("{}@example.com", unique("spam"));
    let spam_inv = invite_ok(&app, &spam, json!({})).await;
    webhook(&app, "email.complained", spam_inv["id"].as_str().unwrap()).await;
    assert_eq!(refused(&app, &spam).await, refusal);
    assert!(!refusal.to_lowercase().contains("bounce") && !refusal.to_lowercase().contains("complain"));

    // Admins list them masked, find one by its address and by reason.
    let all = suppressions(&app, "").await;
    assert_eq!(all.len(), 3, "{all:?}");
    let listed = serde_json::to_string(&all).unwrap();
    for plain in [&couple, &bounced, &spam] {
        assert!(!listed.contains(plain.as_str()), "{plain} in {listed}");
    }
    let found = suppressions(&app, &format!("?email={}", couple.to_uppercase())).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["maskedAddress"], masked.as_str());
    assert_eq!(found[0]["reason"], "UNSUBSCRIBED");
    assert_eq!(found[0]["sourceInvitationId"], first_id.as_str());
    let complaints = suppressions(&app, "?reason=COMPLAINT").await;
    assert_eq!(complaints.len(), 1, "{complaints:?}");
    assert_eq!(
        complaints[0]["maskedAddress"],
        format!("{}***@example.com", &spam[..1]).as_str()
    );
    let (status, body) = app.get(&app.admin(), "/v1/suppressions?reason=NOPE").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .get(&app.admin(), "/v1/suppressions?email=not-an-address")
        .await;
    assert_eq!(status, 400, "{body}");
    let member = app.member(&unique("m"), "SUPPLIER");
    assert_eq!(app.get(&member, "/v1/suppressions").await.0, 403);

    // Lifted (audited): the address may be invited again.
    let id = found[0]["id"].as_str().expect("id");
    let r = app
        .http
        .delete(app.url(&format!("/v1/suppressions/{id}")))
        .bearer_auth(app.admin())
        .send()
        .await
        .expect("DELETE");
    let (status, lifted) = TestApp::read(r).await;
    assert_eq!(status, 200, "{lifted}");
    assert!(lifted["liftedAt"].is_string(), "{lifted}");
    let r = app
        .http
        .delete(app.url(&format!("/v1/suppressions/{id}")))
        .bearer_auth(&member)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 403);
    let (status, audit) = app.get(&app.admin(), "/v1/audit?action=suppression.lift").await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["subjectId"], id, "{audit}");
    assert!(!audit.to_string().contains(&couple), "{audit}");
    assert_eq!(suppressions(&app, "").await.len(), 2);
    invite_ok(&app, &couple, json!({})).await;
    assert_eq!(refused(&app, &spam).await, refusal, "the others stay suppressed");
}
