//! Personal data at rest on both backends (issue #16): sealed in every column that holds it,
//! opened on read, found by keyed hash; an altered value is an error naming no data; and
//! `reencrypt` moves every row (rows from before encryption too) under a rotated key.

use referral_common::{config::Secret, pii::PiiKeys};
use referral_proto::events::v1::event::Payload;

use super::{
    Harness, click, created, email_key, invitation, log_events, new_invitation, unattributed_signup,
};
use crate::store::{PgStore, SqliteStore, StoreError, sealed};

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 4;
    personal_data_is_sealed_at_rest: sqlite_personal_data_is_sealed_at_rest, pg_personal_data_is_sealed_at_rest;
    altered_personal_data_is_an_error: sqlite_altered_personal_data_is_an_error, pg_altered_personal_data_is_an_error;
    reencrypt_moves_every_row_under_the_new_key: sqlite_reencrypt_moves_every_row_under_the_new_key, pg_reencrypt_moves_every_row_under_the_new_key;
}

const EMAIL: &str = "anna.sealed@example.com";
const PHONE: &str = "+447700900417";
const SIGNUP_EMAIL: &str = "bride.sealed@example.com";
const IP: &str = "198.51.100.77";
const USER_AGENT: &str = "SealedAgent/9.9";
const DEVICE: &str = "device-sealed-1";
const VISITOR: &str = "visitor-sealed-1";
const NAME: &str = "Ottoline Sealwright";

/// Every text column of the personal tables, lower-cased, one string per row.
async fn raw_text<S: Harness>(store: &S) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["invitations", "clicks", "signups"] {
        for row in store.raw_rows(&format!("SELECT * FROM {table}")).await {
            out.push(row.join("|").to_lowercase());
        }
    }
    out
}

/// Stores an invitation by e-mail and one by SMS, a click and a signup, each with the
/// distinctive values above; returns the e-mail invitation's id.
async fn populate<S: Harness>(store: &S, referrer: &str) -> String {
    let mut by_email = invitation(referrer, EMAIL, "LINK");
    by_email.recipient_name = NAME.into();
    by_email.ip = IP.into();
    by_email.device_id = DEVICE.into();
    let by_email = created(store, new_invitation(by_email)).await;
    let by_sms = created(store, new_invitation(invitation(referrer, PHONE, "SMS"))).await;
    assert_eq!(by_sms.recipient_phone, PHONE);
    let mut c = click(&by_email.code, &format!("click-{referrer}"));
    c.ip = IP.into();
    c.user_agent = USER_AGENT.into();
    c.device_id = DEVICE.into();
    c.visitor_id = VISITOR.into();
    store.record_clicks(&[c]).await.expect("record_clicks");
    let mut signup = unattributed_signup(&format!("user-{referrer}"), SIGNUP_EMAIL);
    signup.name = NAME.into();
    signup.ip = IP.into();
    signup.device_id = DEVICE.into();
    store.insert_signup(&signup).await.expect("insert_signup");
    by_email.id
}

async fn personal_data_is_sealed_at_rest<S: Harness>(store: &S) {
    let id = populate(store, "ref-sealed").await;
    // Read back plain.
    let inv = store.get_invitation(&id).await.unwrap().expect("stored");
    assert_eq!(
        (
            inv.recipient_email.as_str(),
            inv.recipient_name.as_str(),
            inv.ip.as_str()
        ),
        (EMAIL, NAME, IP)
    );
    let c = store.get_click("click-ref-sealed").await.unwrap().expect("click");
    assert_eq!(
        (c.user_agent.as_str(), c.visitor_id.as_str()),
        (USER_AGENT, VISITOR)
    );
    let s = store
        .find_signup("user-ref-sealed")
        .await
        .unwrap()
        .expect("signup");
    assert_eq!(
        (s.email.as_str(), s.name.as_str()),
        (SIGNUP_EMAIL.to_uppercase().as_str(), NAME)
    );
    assert_eq!(s.email_norm, email_key(SIGNUP_EMAIL));
    // Found by keyed hash.
    let open = store
        .open_invitation_for(&email_key(EMAIL), inv.created_at - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(open.map(|r| r.id), Some(id));
    // Stored sealed: no value, in any case, in any column.
    let rows = raw_text(store).await;
    assert!(rows.len() >= 4, "{} rows", rows.len());
    for needle in [
        EMAIL,
        PHONE,
        SIGNUP_EMAIL,
        IP,
        USER_AGENT,
        DEVICE,
        VISITOR,
        NAME,
        "2027-06-12",
    ] {
        let needle = needle.to_lowercase();
        assert!(
            rows.iter().all(|r| !r.contains(&needle)),
            "{needle} is stored in plain"
        );
    }
    // The events in the outbox carry IPs, devices and visitors sealed, recipients by hash.
    let mut seen = 0;
    for event in log_events(store).await {
        let (ip, device) = match &event.payload {
            Some(Payload::InvitationCreated(c)) => (c.ip.clone(), c.device_id.clone()),
            Some(Payload::ClickRecorded(c)) => {
                assert_eq!(store.pii().open(&c.visitor_id).unwrap(), VISITOR);
                (c.ip.clone(), c.device_id.clone())
            }
            Some(Payload::SignupRecorded(s)) => (s.ip.clone(), s.device_id.clone()),
            _ => continue,
        };
        assert!(ip.starts_with("pii1."), "{ip}");
        assert!(store.pii().open(&ip).is_ok() && store.pii().open(&device).is_ok());
        seen += 1;
    }
    assert_eq!(seen, 4, "two invitations, a click and a signup");
}

async fn altered_personal_data_is_an_error<S: Harness>(store: &S) {
    let id = populate(store, "ref-altered").await;
    let stored = store
        .raw_rows(&format!(
            "SELECT recipient_name FROM invitations WHERE id = '{id}'"
        ))
        .await;
    let mut altered = stored[0][0].clone();
    let last = altered.pop().expect("sealed");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    store
        .raw_exec(
            "UPDATE invitations SET recipient_name = $1 WHERE id = $2",
            &[&altered, &id],
        )
        .await;
    let err = store.get_invitation(&id).await.expect_err("does not open");
    assert!(matches!(err, StoreError::Sealed(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&id) && !message.contains(NAME), "{message}");
    // Under a key that is not configured: an error too, never an empty value.
    let other = keys("k9:another-secret-0123456789abcdef0123456789");
    let err = store
        .with_keys(other)
        .find_signup("user-ref-altered")
        .await
        .expect_err("unknown key");
    assert!(err.to_string().contains("not configured"), "{err}");
}

fn keys(raw: &str) -> PiiKeys {
    PiiKeys::parse(
        &Secret::new(raw),
        &Secret::new("referral-mesh-test-pii-lookup-key-0123456789"),
    )
    .expect("keys parse")
}

const K1: &str = "k1:first-secret-0123456789abcdef0123456789";
const K2: &str = "k2:second-secret-0123456789abcdef012345678";

/// Every non-empty personal column of the three tables.
async fn sealed_values<S: Harness>(store: &S) -> Vec<String> {
    let mut out = Vec::new();
    for (table, cols) in [
        ("invitations", &sealed::INVITATION_SEALED[..]),
        ("clicks", &sealed::CLICK_SEALED[..]),
        ("signups", &sealed::SIGNUP_SEALED[..]),
    ] {
        for row in store
            .raw_rows(&format!("SELECT {} FROM {table}", cols.join(", ")))
            .await
        {
            out.extend(row.into_iter().filter(|v| !v.is_empty()));
        }
    }
    out
}

async fn reencrypt_moves_every_row_under_the_new_key<S: Harness>(store: &S) {
    let old = store.with_keys(keys(K1));
    let id = populate(&old, "ref-rotate").await;
    // A row from before encryption: plaintext, and its address as the lookup key.
    let legacy = created(
        &old,
        new_invitation(invitation("ref-rotate", "legacy@example.com", "LINK")),
    )
    .await;
    old.raw_exec(
        "UPDATE invitations SET recipient_email = $1, recipient_key = $1, ip = $2 WHERE id = $3",
        &["legacy@example.com", IP, &legacy.id],
    )
    .await;
    old.insert_signup(&unattributed_signup("user-legacy", "legacy-user@example.com"))
        .await
        .unwrap();
    old.raw_exec(
        "UPDATE signups SET email = $1, email_norm = $1, name = $2 WHERE user_id = 'user-legacy'",
        &["legacy-user@example.com", NAME],
    )
    .await;
    let before = old.get_invitation(&id).await.unwrap().expect("stored");

    // Restarted with k2 first: everything still reads.
    let both = store.with_keys(keys(&format!("{K2},{K1}")));
    assert_eq!(both.get_invitation(&id).await.unwrap().as_ref(), Some(&before));
    assert_eq!(
        both.get_invitation(&legacy.id)
            .await
            .unwrap()
            .map(|r| r.recipient_email),
        Some("legacy@example.com".to_string()),
        "plaintext from before encryption reads as it is"
    );
    // Batches of 2: several transactions per table.
    let report = both.reencrypt(2).await.expect("reencrypt");
    let by_table = |t: &str| report.iter().find(|(n, _)| *n == t).map(|(_, r)| *r).unwrap();
    assert_eq!(by_table("invitations").examined, 3);
    assert_eq!(by_table("invitations").changed, 3);
    assert_eq!((by_table("clicks").examined, by_table("clicks").changed), (1, 1));
    assert_eq!(
        (by_table("signups").examined, by_table("signups").changed),
        (2, 2)
    );
    let values = sealed_values(store).await;
    assert!(!values.is_empty());
    for v in &values {
        assert!(v.starts_with("pii1.k2."), "not under k2: {v}");
    }
    // Idempotent: a second run changes nothing.
    let again = both.reencrypt(2).await.expect("reencrypt again");
    assert!(again.iter().all(|(_, r)| r.changed == 0), "{again:?}");

    // The old key removed: everything reads, and old rows are found by keyed hash.
    let new = store.with_keys(keys(K2));
    assert_eq!(new.get_invitation(&id).await.unwrap().as_ref(), Some(&before));
    let since = legacy.created_at - chrono::Duration::hours(1);
    let found = new
        .open_invitation_for(&email_key("legacy@example.com"), since)
        .await
        .unwrap();
    assert_eq!(
        found.map(|r| (r.id, r.ip)),
        Some((legacy.id.clone(), IP.to_string()))
    );
    assert_eq!(
        new.referrer_email("user-legacy").await.unwrap(),
        Some(email_key("legacy-user@example.com"))
    );
    let signup = new.find_signup("user-legacy").await.unwrap().expect("signup");
    assert_eq!(
        (signup.email.as_str(), signup.name.as_str()),
        ("legacy-user@example.com", NAME)
    );
    let rows = raw_text(store).await;
    for needle in [
        "legacy@example.com",
        "legacy-user@example.com",
        IP,
        &NAME.to_lowercase(),
    ] {
        assert!(rows.iter().all(|r| !r.contains(needle)), "{needle} left in plain");
    }
}
