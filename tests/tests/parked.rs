//! Parked events (issue #13): analytics-svc's rollups cannot apply one signup event (an
//! injected panic keyed by the user); after CONSUMER_PARK_AFTER attempts it is parked, the
//! signup behind it is still counted, an admin sees it in `GET /v1/parked`, a retry while
//! still broken keeps it parked with one more attempt, and a retry once fixed applies it.
//! (Parked sends: supervision.rs.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use referral_common::{auth::Role, consumer::ConsumerFault};
use referral_proto::events::v1::event::Payload;
use referral_tests::{TestApp, eventually, int, start_with, test_options, unique, violated_fields};
use serde_json::{Value, json};

/// Signs `user` up through a LINK invitation of `referrer`.
async fn sign_up(app: &TestApp, referrer: &str, user: &str) {
    let token = app.member(referrer, "SUPPLIER");
    let inv = app
        .invite_ok(
            &token,
            json!({
                "referrerId": referrer,
                "referrerKind": "SUPPLIER",
                "refereeKind": "COUPLE",
                "channel": "LINK",
                "recipient": {"email": format!("{}@example.org", unique("guest")), "name": "Guest"},
            }),
        )
        .await;
    let (status, body) = app
        .post(
            &app.member(user, "COUPLE"),
            "/v1/signups",
            json!({"userId": user, "userKind": "COUPLE", "invitationId": inv["id"]}),
        )
        .await;
    assert_eq!(status, 200, "signup -> {body}");
}

async fn viral_signups(app: &TestApp, admin: &str) -> i64 {
    let (status, body) = app.get(admin, "/v1/metrics/viral").await;
    assert_eq!(status, 200, "{body}");
    int(&body["signups"])
}

async fn parked(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let (status, body) = app.get(admin, &format!("/v1/parked{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["parked"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_the_events_behind_it_applied_and_a_retry_applies_it() {
    let poisoned = unique("poisoned");
    let broken = Arc::new(AtomicBool::new(true));
    let mut options = test_options(vec![], vec![], false);
    options.analytics_args = vec!["--consumer-park-after".into(), "2".into()];
    let (target, fault_on) = (poisoned.clone(), broken.clone());
    options.consumer_fault = ConsumerFault::new(move |consumer, source, event| {
        let is_target = matches!(&event.payload, Some(Payload::SignupRecorded(s)) if s.user_id == target);
        if is_target && consumer == "analytics-svc" && source == "invite" && fault_on.load(Ordering::SeqCst) {
            panic!("injected: the rollups cannot take {target}'s signup");
        }
        Ok(())
    });
    let app = start_with(options).await.expect("the mesh starts");
    let admin = app.fresh_admin();
    // Five referrers (metrics of fewer people are suppressed), one signup each: the
    // first one poisoned.
    let referrers: Vec<String> = (0..5).map(|_| unique("ana")).collect();
    let referrer = referrers[0].clone();
    sign_up(&app, &referrer, &poisoned).await;
    for r in &referrers[1..] {
        sign_up(&app, r, &unique("later")).await;
    }

    // The later signups are counted although the one before them cannot be applied.
    let counted = eventually(Duration::from_secs(20), || async {
        (viral_signups(&app, &admin).await == 4).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the events behind the poison one are applied");

    let items = parked(&app, &admin, "").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    let id = item["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("analytics.event."), "{id}");
    assert_eq!(item["service"], "analytics-svc");
    assert_eq!(item["kind"], "EVENT");
    assert_eq!(item["source"], "invite");
    assert_eq!(item["consumer"], "analytics-svc");
    assert_eq!(item["eventType"], "signup.recorded");
    assert_eq!(int(&item["attempts"]), 2);
    assert!(
        item["reason"].as_str().unwrap_or_default().contains("injected"),
        "{item}"
    );
    assert!(
        item["firstFailedAt"].is_string() && item["lastFailedAt"].is_string(),
        "{item}"
    );
    // Filters: the service and kind it has; none of another service or kind.
    assert_eq!(
        parked(&app, &admin, "?service=analytics-svc&kind=EVENT")
            .await
            .len(),
        1
    );
    assert!(parked(&app, &admin, "?service=fraud-svc").await.is_empty());
    assert!(parked(&app, &admin, "?kind=SEND").await.is_empty());

    // Who may look: admins only.
    let member = app.member(&referrer, "SUPPLIER");
    assert_eq!(app.get(&member, "/v1/parked").await.0, 403);
    assert_eq!(app.get("", "/v1/parked").await.0, 401);
    let (status, _) = app
        .post(&member, &format!("/v1/parked/{id}:retry"), json!({}))
        .await;
    assert_eq!(status, 403);
    let service = app.token(&unique("svc"), Role::Service, None);
    assert_eq!(app.get(&service, "/v1/parked").await.0, 401);
    // Bad input names its field.
    for (query, field) in [
        ("?service=mail-svc", "service"),
        ("?kind=LOST", "kind"),
        ("?pageSize=-1", "pageSize"),
        ("?pageToken=zzz", "pageToken"),
    ] {
        let (status, body) = app.get(&admin, &format!("/v1/parked{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(violated_fields(&body), [field], "{query}: {body}");
    }
    let (status, body) = app
        .post(&admin, "/v1/parked/analytics.thing.x:retry", json!({}))
        .await;
    assert_eq!(
        (status, violated_fields(&body)),
        (400, vec!["id".to_string()]),
        "{body}"
    );
    let unknown = "fraud.event.01900000-0000-7000-8000-000000000000";
    assert_eq!(
        app.post(&admin, &format!("/v1/parked/{unknown}:retry"), json!({}))
            .await
            .0,
        404
    );

    // Still broken: 200, not retried, parked with one more attempt.
    let (status, body) = app
        .post(&admin, &format!("/v1/parked/{id}:retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retried"], false, "{body}");
    assert_eq!(body["outcome"], "FAILED", "{body}");
    assert_eq!(int(&body["parked"]["attempts"]), 3, "{body}");
    assert_eq!(viral_signups(&app, &admin).await, 4);

    // Fixed: applied, gone from the list, counted.
    broken.store(false, Ordering::SeqCst);
    let (status, body) = app
        .post(&admin, &format!("/v1/parked/{id}:retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retried"], true, "{body}");
    assert_eq!(body["outcome"], "APPLIED", "{body}");
    assert!(parked(&app, &admin, "").await.is_empty());
    assert_eq!(
        viral_signups(&app, &admin).await,
        5,
        "the parked signup now counts"
    );
    let (status, _) = app
        .post(&admin, &format!("/v1/parked/{id}:retry"), json!({}))
        .await;
    assert_eq!(status, 404, "a retried item is gone");

    // Parking and both retries are in the audit log.
    let (status, audit) = app.get(&admin, "/v1/audit?action=parked.retry").await;
    assert_eq!(status, 200, "{audit}");
    let retries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(retries.len(), 2, "{audit}");
    assert!(
        retries
            .iter()
            .all(|e| e["actorRole"] == "admin" && e["subjectId"] == id.as_str()),
        "{audit}"
    );
    let (_, parks) = app.get(&admin, "/v1/audit?action=event.park").await;
    assert_eq!(parks["entries"].as_array().map(Vec::len), Some(1), "{parks}");
    app.stop().await;
}
