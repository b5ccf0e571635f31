//! Background work survives a panic: invite-svc's sending loop panics on a send, and the
//! invitation is still delivered afterwards (the supervisor and the per-row guard); a row
//! that always panics is parked, listed in `GET /v1/parked` and sent once an admin retries
//! it after the fault is gone.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Datelike, TimeZone, Utc, Weekday};
use chrono_tz::Europe::London;
use invite_svc::scheduler::SendFault;
use referral_tests::{eventually, start_with, test_options, unique};
use serde_json::json;

/// Tuesday 11:00 in London a week or more ahead: outside every blackout.
fn a_tuesday_morning() -> DateTime<Utc> {
    let mut date = (Utc::now() + chrono::Duration::days(7))
        .with_timezone(&London)
        .date_naive();
    while date.weekday() != Weekday::Tue {
        date = date.succ_opt().expect("a next day");
    }
    London
        .from_local_datetime(&date.and_hms_opt(11, 0, 0).expect("valid time"))
        .single()
        .expect("unambiguous")
        .with_timezone(&Utc)
}

fn sent_files(dir: &Path, invitation_id: &str) -> usize {
    let suffix = format!("-{invitation_id}.eml");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().to_string_lossy().ends_with(&suffix))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_delivered_after_the_sending_loop_panicked() {
    let args = [
        "--scheduler-tick",
        "50ms",
        "--send-lease",
        "1s",
        "--send-retry-base",
        "1s",
    ];
    let mut options = test_options(vec![], args.iter().map(|s| s.to_string()).collect(), false);
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    options.invite_send_fault = SendFault::new(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("injected: the first send panics");
        }
    });
    let app = start_with(options).await.expect("the mesh starts");
    let mailbox = app.mesh.mailbox.clone().expect("a dev mailbox");
    app.mesh.invite_clock.set(a_tuesday_morning());

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
                "channel": "EMAIL",
                "recipient": {"email": format!("{}@example.com", unique("jo")), "name": "Jo"},
            }),
        )
        .await;
    assert_eq!(status, 200, "{inv}");
    let id = inv["id"].as_str().expect("id").to_string();

    let delivered = eventually(Duration::from_secs(20), || {
        let n = sent_files(&mailbox, &id);
        async move { (n > 0).then_some(n) }
    })
    .await;
    assert_eq!(delivered, Some(1), "sent once, after the panic");
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the first attempt panicked, a later one sent"
    );
    // The file is written before the outcome is recorded: wait for SENT.
    let status = eventually(Duration::from_secs(10), || async {
        let (_, inv) = app.get(&token, &format!("/v1/invitations/{id}")).await;
        (inv["status"] == "SENT").then_some(())
    })
    .await;
    assert!(status.is_some(), "the invitation ends SENT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_whose_send_always_panics_is_parked_the_next_one_sent_and_a_retry_sends_it() {
    let args = [
        "--scheduler-tick",
        "50ms",
        "--send-retry-base",
        "300ms",
        "--park-after",
        "2",
    ];
    let mut options = test_options(vec![], args.iter().map(|s| s.to_string()).collect(), false);
    // The first invitation the scheduler sees panics on every send.
    let poisoned: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let calls = Arc::new(AtomicU32::new(0));
    let broken = Arc::new(AtomicBool::new(true));
    let (p, c, b) = (poisoned.clone(), calls.clone(), broken.clone());
    options.invite_send_fault = SendFault::new(move |id| {
        let mut first = p.lock().expect("not poisoned");
        if first.get_or_insert_with(|| id.to_string()) == id && b.load(Ordering::SeqCst) {
            c.fetch_add(1, Ordering::SeqCst);
            drop(first);
            panic!("injected: this row always panics");
        }
    });
    let app = start_with(options).await.expect("the mesh starts");
    let mailbox = app.mesh.mailbox.clone().expect("a dev mailbox");
    app.mesh.invite_clock.set(a_tuesday_morning());
    let ana = unique("ana");
    let token = app.member(&ana, "SUPPLIER");
    let mut ids = vec![];
    for _ in 0..2 {
        let (status, inv) = app
            .post(
                &token,
                "/v1/invitations",
                json!({
                    "referrerId": ana,
                    "referrerKind": "SUPPLIER",
                    "refereeKind": "COUPLE",
                    "channel": "EMAIL",
                    "recipient": {"email": format!("{}@example.com", unique("jo")), "name": "Jo"},
                }),
            )
            .await;
        assert_eq!(status, 200, "{inv}");
        ids.push(inv["id"].as_str().expect("id").to_string());
    }
    let bad = eventually(Duration::from_secs(10), || {
        let p = poisoned.lock().expect("not poisoned").clone();
        async move { p }
    })
    .await
    .expect("the scheduler tried a send");
    let good = ids
        .iter()
        .find(|id| **id != bad)
        .expect("another invitation")
        .clone();
    let sent = eventually(Duration::from_secs(20), || {
        let n = sent_files(&mailbox, &good);
        async move { (n > 0).then_some(n) }
    })
    .await;
    assert_eq!(sent, Some(1), "the row behind the bad one is sent");
    // Parked after its second panic: never tried again.
    eventually(Duration::from_secs(10), || {
        let n = calls.load(Ordering::SeqCst);
        async move { (n >= 2).then_some(()) }
    })
    .await
    .expect("the bad row was retried once");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "parked after 2 panics, not leased again"
    );
    assert_eq!(sent_files(&mailbox, &bad), 0);
    let (status, inv) = app.get(&token, &format!("/v1/invitations/{bad}")).await;
    assert_eq!(status, 200, "{inv}");
    assert_eq!(inv["status"], "SCHEDULED", "parked, not given up: {inv}");

    // Admins see it parked, with the panic's message.
    let admin = app.fresh_admin();
    let (status, list) = app.get(&admin, "/v1/parked?kind=SEND").await;
    assert_eq!(status, 200, "{list}");
    let items = list["parked"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{list}");
    let item = &items[0];
    assert_eq!(item["id"], format!("invite.send.{bad}"), "{item}");
    assert_eq!(
        (item["kind"].as_str(), item["service"].as_str()),
        (Some("SEND"), Some("invite-svc"))
    );
    assert_eq!(item["subject"], bad.as_str());
    assert_eq!(item["attempts"], json!("2"), "int64 as a string: {item}");
    assert!(
        item["reason"].as_str().unwrap_or_default().contains("injected"),
        "{item}"
    );
    let (_, events) = app.get(&admin, "/v1/parked?kind=EVENT").await;
    assert_eq!(
        events["parked"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{events}"
    );

    // The fault is gone; a retry releases it and the scheduler sends it.
    broken.store(false, Ordering::SeqCst);
    let (status, body) = app
        .post(&admin, &format!("/v1/parked/invite.send.{bad}:retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["retried"].as_bool(), body["outcome"].as_str()),
        (Some(true), Some("RELEASED")),
        "{body}"
    );
    let sent = eventually(Duration::from_secs(20), || {
        let n = sent_files(&mailbox, &bad);
        async move { (n > 0).then_some(n) }
    })
    .await;
    assert_eq!(sent, Some(1), "the released row is sent");
    let (_, list) = app.get(&admin, "/v1/parked").await;
    assert_eq!(list["parked"].as_array().map(Vec::len).unwrap_or(0), 0, "{list}");
    let (status, body) = app
        .post(&admin, &format!("/v1/parked/invite.send.{bad}:retry"), json!({}))
        .await;
    assert_eq!(status, 404, "no longer parked: {body}");
    let (_, audit) = app.get(&admin, "/v1/audit?action=parked.retry").await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1), "{audit}");
    let (_, audit) = app.get(&admin, "/v1/audit?action=invitation.send.park").await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1), "{audit}");
}
