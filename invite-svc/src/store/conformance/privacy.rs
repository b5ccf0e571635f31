//! Conformance of the privacy request book and a person's records on both backends: a
//! request opens with its parts, audit row and event in one transaction and only once per
//! person and kind while pending; parts complete once (a repeated confirmation keeps the
//! first receipt) and the last completes the request; export documents are purged after
//! retention; the records of a person are found and an erasure rewrites them.

use referral_common::{
    audit::{AuditEntry, action},
    ids,
};
use referral_proto::{
    common::v1::{PrivacyRequestKind, PrivacySubject},
    events::v1::event::Payload,
};

use super::{
    Harness, admin, attributed_signup, audit_rows, click, created, invitation, log_events, new_invitation,
};
use crate::store::{
    PgStore, SqliteStore, Store, events as invite_events,
    privacy::{Completed, Opened, PersonErasure, PrivacyRequestRow},
};

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 4;
    privacy_requests_open_once_and_complete: sqlite_privacy_requests_open_once_and_complete, pg_privacy_requests_open_once_and_complete;
    privacy_exports_are_purged: sqlite_privacy_exports_are_purged, pg_privacy_exports_are_purged;
    person_records_are_found_and_erased: sqlite_person_records_are_found_and_erased, pg_person_records_are_found_and_erased;
}

const SERVICES: [&str; 4] = ["invite-svc", "fraud-svc", "incentive-svc", "analytics-svc"];

fn request(person: &str, kind: &str) -> PrivacyRequestRow {
    PrivacyRequestRow {
        id: ids::new_id(),
        kind: kind.into(),
        person_id: person.into(),
        state: "PENDING".into(),
        subject_json: r#"{"personId":"p"}"#.into(),
        requested_by: "admin-1".into(),
        created_at: ids::now(),
        completed_at: None,
        export_purged_at: None,
    }
}

async fn open<S: Store>(store: &S, row: &PrivacyRequestRow) -> Opened {
    let entry = AuditEntry::new(&admin(), action::PRIVACY_REQUEST_CREATE, "person", &row.person_id);
    let kind = if row.kind == "ERASE" {
        PrivacyRequestKind::Erase
    } else {
        PrivacyRequestKind::Export
    };
    let subject = PrivacySubject {
        person_id: row.person_id.clone(),
        ..Default::default()
    };
    let event = invite_events::privacy_requested(&row.id, kind, &subject, row.created_at);
    store
        .open_privacy_request(row, &SERVICES, &entry, &event)
        .await
        .unwrap()
}

async fn privacy_requests_open_once_and_complete<S: Harness>(store: &S) {
    let first = request("person-1", "ERASE");
    let Opened::Created(view) = open(store, &first).await else {
        panic!("created")
    };
    assert_eq!(view.request, first);
    assert_eq!(view.parts.len(), 4);
    assert!(
        view.parts
            .iter()
            .all(|p| p.state == "PENDING" && p.document.is_none())
    );
    // The event and the audit row were written with it.
    let events = log_events(store).await;
    assert_eq!(events.len(), 1);
    let Some(Payload::PrivacyRequested(r)) = &events[0].payload else {
        panic!("{events:?}")
    };
    assert_eq!(r.request_id, first.id);
    assert_eq!(audit_rows(store).await[0].action, "privacy_request.create");

    // Pending: the same person and kind answers the first, writing nothing.
    let Opened::Pending(again) = open(store, &request("person-1", "ERASE")).await else {
        panic!("pending")
    };
    assert_eq!(again.request.id, first.id);
    assert_eq!(log_events(store).await.len(), 1);
    // Another kind, or another person, is a request of its own.
    assert!(matches!(
        open(store, &request("person-1", "EXPORT")).await,
        Opened::Created(_)
    ));
    assert!(matches!(
        open(store, &request("person-2", "ERASE")).await,
        Opened::Created(_)
    ));
    assert_eq!(
        store.pending_privacy_parts("fraud-svc", 10).await.unwrap().len(),
        3
    );

    // Parts: each once; a repeat keeps the first receipt; the last completes the request.
    let at = ids::now();
    for (i, service) in SERVICES.iter().enumerate() {
        let Completed::Done(v) = store
            .complete_privacy_part(&first.id, service, r#"{"rows":1}"#, None, at)
            .await
            .unwrap()
        else {
            panic!("done")
        };
        assert_eq!(
            v.request.state,
            if i == 3 { "DONE" } else { "PENDING" },
            "{service}"
        );
    }
    let Completed::Done(v) = store
        .complete_privacy_part(&first.id, "fraud-svc", r#"{"rows":9}"#, None, ids::now())
        .await
        .unwrap()
    else {
        panic!("done")
    };
    let fraud = v.parts.iter().find(|p| p.service == "fraud-svc").unwrap();
    assert_eq!(fraud.counts_json, r#"{"rows":1}"#);
    assert!(v.request.completed_at.is_some());
    assert_eq!(
        store.pending_privacy_parts("fraud-svc", 10).await.unwrap().len(),
        2
    );
    assert_eq!(
        store
            .complete_privacy_part("nope", "fraud-svc", "{}", None, at)
            .await
            .unwrap(),
        Completed::NotFound
    );
    assert_eq!(
        store
            .complete_privacy_part(&first.id, "mail-svc", "{}", None, at)
            .await
            .unwrap(),
        Completed::NotFound
    );
    // Done, a new erasure of the same person may be opened.
    assert!(matches!(
        open(store, &request("person-1", "ERASE")).await,
        Opened::Created(_)
    ));
    assert_eq!(store.get_privacy_request("nope").await.unwrap(), None);
}

async fn privacy_exports_are_purged<S: Harness>(store: &S) {
    let row = request("person-3", "EXPORT");
    open(store, &row).await;
    let done_at = ids::now() - chrono::Duration::days(31);
    for service in SERVICES {
        store
            .complete_privacy_part(&row.id, service, "{}", Some("pii1.t1.sealed"), done_at)
            .await
            .unwrap();
    }
    let recent = request("person-4", "EXPORT");
    open(store, &recent).await;
    for service in SERVICES {
        store
            .complete_privacy_part(&recent.id, service, "{}", Some("pii1.t1.sealed"), ids::now())
            .await
            .unwrap();
    }
    let before = ids::now() - chrono::Duration::days(30);
    assert_eq!(store.purge_privacy_exports(before, 100).await.unwrap(), 1);
    assert_eq!(store.purge_privacy_exports(before, 100).await.unwrap(), 0);
    let purged = store.get_privacy_request(&row.id).await.unwrap().unwrap();
    assert!(purged.request.export_purged_at.is_some());
    assert!(purged.parts.iter().all(|p| p.document.is_none()));
    let kept = store.get_privacy_request(&recent.id).await.unwrap().unwrap();
    assert!(
        kept.parts
            .iter()
            .all(|p| p.document.as_deref() == Some("pii1.t1.sealed"))
    );
}

async fn person_records_are_found_and_erased<S: Harness>(store: &S) {
    let to_her = created(
        store,
        new_invitation(invitation("ref-p", "bride@example.com", "LINK")),
    )
    .await;
    let by_phone = created(
        store,
        new_invitation(invitation("ref-q", "+447700900123", "LINK")),
    )
    .await;
    let other = created(
        store,
        new_invitation(invitation("ref-p", "other@example.com", "LINK")),
    )
    .await;
    // Found by the keyed hashes of her addresses, as the app asks.
    let pii = referral_common::pii::PiiKeys::for_tests();
    let hers = store
        .invitations_to(&[
            pii.lookup("email", "bride@example.com"),
            pii.lookup("phone", "+447700900123"),
        ])
        .await
        .unwrap();
    let mut ids_found: Vec<&str> = hers.iter().map(|r| r.id.as_str()).collect();
    ids_found.sort_unstable();
    let mut want = vec![to_her.id.as_str(), by_phone.id.as_str()];
    want.sort_unstable();
    assert_eq!(ids_found, want);
    let signup = attributed_signup("bride-1", &to_her);
    store.insert_signup(&signup).await.unwrap();
    let mut c = click(&to_her.code, &ids::new_id());
    c.invitation_id = Some(to_her.id.clone());
    store.record_clicks(&[c.clone()]).await.unwrap();
    store
        .record_conversion(super::conversion("bride-1", 2500, "PROFESSIONAL"))
        .await
        .unwrap();
    assert_eq!(
        store.signup_of(&["bride-1".into()]).await.unwrap().unwrap().id,
        signup.id
    );
    assert_eq!(
        store
            .clicks_of(&[], std::slice::from_ref(&to_her.id))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.conversions_of(&["bride-1".into()]).await.unwrap().len(), 1);
    assert_eq!(store.invitations_sent_by("ref-p").await.unwrap().len(), 2);

    let status = store.get_invitation(&to_her.id).await.unwrap().unwrap().status;
    let mut inv = to_her.clone();
    inv.recipient_email = "erased".into();
    inv.recipient_key = String::new();
    inv.ip = "203.0.113.0".into();
    let mut s = store.find_signup("bride-1").await.unwrap().unwrap();
    s.user_id = "anon-1".into();
    s.email = "erased".into();
    let mut clicked = store.get_click(&c.click_id).await.unwrap().unwrap();
    clicked.user_agent = String::new();
    store
        .erase_person(&PersonErasure {
            invitations: vec![inv],
            signup: Some(s),
            clicks: vec![clicked],
            conversions_from: vec!["bride-1".into()],
            conversions_to: "anon-1".into(),
        })
        .await
        .unwrap();
    let after = store.get_invitation(&to_her.id).await.unwrap().unwrap();
    assert_eq!(
        (after.recipient_email.as_str(), after.ip.as_str()),
        ("erased", "203.0.113.0")
    );
    assert_eq!(after.status, status, "the status is not the erasure's business");
    assert_eq!(store.find_signup("bride-1").await.unwrap(), None);
    assert_eq!(
        store
            .signup_of(&["bride-1".into(), "anon-1".into()])
            .await
            .unwrap()
            .unwrap()
            .email,
        "erased"
    );
    assert_eq!(store.conversions_of(&["bride-1".into()]).await.unwrap().len(), 0);
    let kept = store.conversions_of(&["anon-1".into()]).await.unwrap();
    assert_eq!((kept.len(), kept[0].amount_minor), (1, 2500));
    assert_eq!(
        store.get_click(&c.click_id).await.unwrap().unwrap().user_agent,
        ""
    );
    assert_eq!(
        store
            .invitations_to(&[pii.lookup("email", "bride@example.com")])
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .get_invitation(&other.id)
            .await
            .unwrap()
            .unwrap()
            .recipient_email,
        "other@example.com"
    );
}
