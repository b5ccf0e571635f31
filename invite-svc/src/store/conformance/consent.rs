//! Conformance of the suppression list on both backends: one active suppression per address,
//! the queued invitations to it cancelled in the same transaction, a new one refused in the
//! creating transaction, bounces and complaints suppressing with their status change, lifts
//! audited and kept in the consent history, and the consent events in the outbox.

use std::collections::HashMap;

use referral_common::{
    audit::{AuditEntry, action},
    ids,
};

use super::{Harness, admin, assert_log, audit_rows, create, created, invitation, new_invitation, status_of};
use crate::{
    domain::suppression::CANCEL_REASON,
    store::{
        CreateOutcome, PgStore, SqliteStore,
        consent::{LiftOutcome, NewSuppression},
    },
};

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 4;
    suppression_cancels_queued_and_refuses_new: sqlite_suppression_cancels_queued_and_refuses_new, pg_suppression_cancels_queued_and_refuses_new;
    bounces_and_complaints_suppress: sqlite_bounces_and_complaints_suppress, pg_bounces_and_complaints_suppress;
    lifting_is_audited_and_kept_in_history: sqlite_lifting_is_audited_and_kept_in_history, pg_lifting_is_audited_and_kept_in_history;
    the_sender_cancels_what_it_leased: sqlite_the_sender_cancels_what_it_leased, pg_the_sender_cancels_what_it_leased;
}

fn suppression(key: &str, reason: &str, source: &str) -> NewSuppression {
    NewSuppression {
        id: ids::new_id(),
        contact_key: key.into(),
        kind: "email".into(),
        address_sealed: "sealed".into(),
        reason: reason.into(),
        source_invitation_id: source.into(),
        at: ids::now(),
    }
}

fn to(key: &str, email: &str, referrer: &str) -> crate::store::NewInvitation {
    crate::store::NewInvitation {
        contact_lookup: key.into(),
        ..new_invitation(invitation(referrer, email, "EMAIL"))
    }
}

async fn suppression_cancels_queued_and_refuses_new<S: Harness>(store: &S) {
    let queued = created(store, to("key-a", "a@example.com", "ref-1")).await;
    let other = created(store, to("key-b", "b@example.com", "ref-1")).await;
    assert!(!store.is_suppressed("key-a").await.unwrap());

    let done = store
        .suppress(&suppression("key-a", "UNSUBSCRIBED", &queued.id), CANCEL_REASON)
        .await
        .unwrap();
    assert!(done.created);
    assert_eq!(done.cancelled, vec![queued.id.clone()]);
    assert_eq!(status_of(store, &queued.id).await, "CANCELLED");
    assert_eq!(
        status_of(store, &other.id).await,
        "SCHEDULED",
        "another address is untouched"
    );
    let row = store.get_invitation(&queued.id).await.unwrap().unwrap();
    assert_eq!(row.status_reason, CANCEL_REASON);
    assert_eq!(
        super::queued(store, "ref-1").await,
        1,
        "the cancelled one left the queue"
    );
    assert!(store.is_suppressed("key-a").await.unwrap());

    // Suppressing again (a later complaint): the first stays, nothing new is recorded.
    let again = store
        .suppress(&suppression("key-a", "COMPLAINT", ""), CANCEL_REASON)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(
        (again.row.id.as_str(), again.row.reason.as_str()),
        (done.row.id.as_str(), "UNSUBSCRIBED")
    );

    // A new invitation to it is refused in its own transaction, and nothing is written.
    let refused = create(store, to("key-a", "a@example.com", "ref-2")).await;
    assert!(matches!(refused, CreateOutcome::Suppressed), "{refused:?}");
    assert_eq!(super::queued(store, "ref-2").await, 0);

    let events = assert_log(
        store,
        &[
            "invitation.created",
            "invitation.created",
            "consent.suppressed",
            "invitation.cancelled",
        ],
    )
    .await;
    match events[2].payload.as_ref() {
        Some(referral_proto::events::v1::event::Payload::ConsentSuppressed(c)) => {
            assert_eq!((c.contact_key.as_str(), c.kind.as_str()), ("key-a", "email"));
            assert_eq!(
                c.reason,
                referral_proto::invite::v1::SuppressionReason::Unsubscribed as i32
            );
            assert_eq!(c.source_invitation_id, queued.id);
        }
        other => panic!("expected consent.suppressed, got {other:?}"),
    }
    let history = store
        .consent_history(&["key-a".into(), "key-b".into()])
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].action.as_str(), history[0].reason.as_str()),
        ("SUPPRESSED", "UNSUBSCRIBED")
    );
}

async fn bounces_and_complaints_suppress<S: Harness>(store: &S) {
    use crate::domain::webhooks::{Outcome, ProviderEvent};
    let bounced = created(store, to("key-bounce", "x@example.com", "ref-h")).await;
    let complained = created(store, to("key-spam", "y@example.com", "ref-h")).await;
    let queued_too = created(store, to("key-spam", "y@example.com", "ref-i")).await;
    for row in [&bounced, &complained] {
        store.transition(&row.id, "SENT", "", ids::now()).await.unwrap();
    }
    let event = |id: &str, inv: &str, outcome: Outcome| ProviderEvent {
        event_id: id.into(),
        invitation_id: Some(inv.into()),
        kind: format!("{outcome:?}").to_lowercase(),
        outcome,
    };
    let subjects = HashMap::from([
        (
            bounced.id.clone(),
            suppression("key-bounce", "HARD_BOUNCE", &bounced.id),
        ),
        (
            complained.id.clone(),
            suppression("key-spam", "COMPLAINT", &complained.id),
        ),
    ]);
    let tally = store
        .apply_provider_events(
            "resend",
            &[
                event("e1", &bounced.id, Outcome::Bounced),
                event("e2", &complained.id, Outcome::Complained),
            ],
            &subjects,
            ids::now(),
        )
        .await
        .unwrap();
    assert_eq!(tally.recorded, 2);
    assert_eq!(status_of(store, &bounced.id).await, "BOUNCED");
    assert!(store.is_suppressed("key-bounce").await.unwrap());
    assert!(store.is_suppressed("key-spam").await.unwrap());
    assert_eq!(status_of(store, &queued_too.id).await, "CANCELLED");
    let listed = store
        .list_suppressions(None, Some("COMPLAINT"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].contact_key, "key-spam");
    let by_key = store
        .list_suppressions(Some("key-bounce"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].reason, "HARD_BOUNCE");
    // Newest first, and paged by id.
    let all = store.list_suppressions(None, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].id > all[1].id);
    let rest = store
        .list_suppressions(None, None, Some(&all[0].id), 10)
        .await
        .unwrap();
    assert_eq!(rest, vec![all[1].clone()]);
}

async fn lifting_is_audited_and_kept_in_history<S: Harness>(store: &S) {
    let done = store
        .suppress(&suppression("key-l", "UNSUBSCRIBED", "inv-9"), CANCEL_REASON)
        .await
        .unwrap();
    let id = done.row.id.clone();
    let entry = AuditEntry::new(&admin(), action::SUPPRESSION_LIFT, "suppression", &id);
    let lifted = match store.lift_suppression(&id, ids::now(), &entry).await.unwrap() {
        LiftOutcome::Lifted(row) => row,
        other => panic!("expected Lifted, got {other:?}"),
    };
    assert!(lifted.lifted_at.is_some());
    assert_eq!(lifted.lifted_by, "admin-1");
    assert!(!store.is_suppressed("key-l").await.unwrap());
    assert!(
        store
            .list_suppressions(None, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Twice is the same lift, audited once; an unknown id is not found.
    assert!(matches!(
        store.lift_suppression(&id, ids::now(), &entry).await.unwrap(),
        LiftOutcome::AlreadyLifted(_)
    ));
    assert!(matches!(
        store
            .lift_suppression("no-such-id", ids::now(), &entry)
            .await
            .unwrap(),
        LiftOutcome::NotFound
    ));
    let rows = audit_rows(store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].action, "suppression.lift");
    let json = |v: &Option<pbjson_types::Value>| serde_json::to_value(v).unwrap();
    let (before, after) = (json(&rows[0].before), json(&rows[0].after));
    assert_eq!(
        (before["lifted"].clone(), after["lifted"].clone()),
        (false.into(), true.into())
    );
    assert!(
        !after.to_string().contains("sealed"),
        "the audit never holds the address"
    );

    // Suppressed again after the lift: a new row, and the history holds all three changes.
    let again = store
        .suppress(&suppression("key-l", "HARD_BOUNCE", ""), CANCEL_REASON)
        .await
        .unwrap();
    assert!(again.created && again.row.id != id);
    let history = store.consent_history(&["key-l".into()]).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(actions, ["SUPPRESSED", "LIFTED", "SUPPRESSED"]);
    assert_eq!(history[1].actor, "admin-1");
    // The person's export: each change, its reason and time, no address and no admin's name.
    let export = crate::app::consent::history(store, &["key-l".into(), "key-other".into()])
        .await
        .unwrap();
    let changes = export["consentHistory"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{export}");
    assert_eq!(
        (changes[0]["action"].clone(), changes[0]["reason"].clone()),
        ("SUPPRESSED".into(), "UNSUBSCRIBED".into())
    );
    assert_eq!(changes[0]["sourceInvitationId"], "inv-9");
    assert_eq!(changes[1]["action"], "LIFTED");
    assert!(
        changes[2]["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{export}"
    );
    assert!(
        !export.to_string().contains("sealed") && !export.to_string().contains("admin-1"),
        "{export}"
    );
    assert_eq!(
        crate::app::consent::history(store, &[]).await.unwrap()["consentHistory"],
        serde_json::json!([])
    );
    assert_log(
        store,
        &["consent.suppressed", "consent.lifted", "consent.suppressed"],
    )
    .await;
}

/// The sender's last check: a leased invitation to a suppressed address (e.g. one stored
/// before contact lookups, which the suppression could not find) is released and cancelled;
/// a stale attempt changes nothing.
async fn the_sender_cancels_what_it_leased<S: Harness>(store: &S) {
    let legacy = created(
        store,
        new_invitation(invitation("ref-s", "old@example.com", "EMAIL")),
    )
    .await;
    let done = store
        .suppress(&suppression("key-old", "UNSUBSCRIBED", ""), CANCEL_REASON)
        .await
        .unwrap();
    assert!(
        done.cancelled.is_empty(),
        "a row without a contact lookup is not found"
    );
    let t = ids::now() + chrono::Duration::seconds(1);
    let claimed = store
        .claim_due(t, t + chrono::Duration::seconds(60))
        .await
        .unwrap()
        .expect("the legacy row is due");
    assert_eq!(claimed.row.id, legacy.id);
    assert!(
        !store
            .cancel_claimed(&legacy.id, claimed.send_attempts + 1, CANCEL_REASON, t)
            .await
            .unwrap()
    );
    assert_eq!(status_of(store, &legacy.id).await, "SCHEDULED");
    assert!(
        store
            .cancel_claimed(&legacy.id, claimed.send_attempts, CANCEL_REASON, t)
            .await
            .unwrap()
    );
    let row = store.get_invitation(&legacy.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.status_reason.as_str()),
        ("CANCELLED", CANCEL_REASON)
    );
    assert_eq!(super::queued(store, "ref-s").await, 0);
    assert!(
        !store
            .cancel_claimed(&legacy.id, claimed.send_attempts, CANCEL_REASON, t)
            .await
            .unwrap()
    );
}
