//! invite-svc's part of a privacy request ([`PersonRecords`], its `PersonData`), and who a
//! person is in invite-svc's records ([`subject_of`]): the signup under their user id, the
//! invitations that signup was attributed to, and every invitation addressed to an e-mail
//! address or phone number they signed up or were invited under (normalised as the invite
//! path normalises: Gmail dots and plus tags, E.164 phones).

use std::path::PathBuf;

use referral_common::{
    ApiError,
    pii::{self, PiiKeys, TOMBSTONE},
    privacy::{Counts, PersonData},
};
use referral_proto::common::v1::PrivacySubject;
use serde_json::{Value, json};

use crate::{
    domain::contact,
    store::{ClickRow, InvitationRow, SignupRow, Store, privacy::PersonErasure},
};

/// Earlier clicks followed back from a signup's clicks (`previous_click_id`), at most.
const MAX_CLICK_CHAIN: usize = 50;

/// A person's records in invite-svc: what `PrivacyService` erases and exports here.
pub struct PersonRecords<S> {
    store: S,
    pii: PiiKeys,
    /// The dev mailbox (the mesh's stand-in for a provider's logs), when messages go there.
    mailbox: Option<PathBuf>,
}

impl<S: Store> PersonRecords<S> {
    pub fn new(store: S, pii: PiiKeys) -> Self {
        Self {
            store,
            pii,
            mailbox: None,
        }
    }

    /// The keys the subject's lookup hashes and pseudonym were made with.
    pub fn pii(&self) -> &PiiKeys {
        &self.pii
    }

    /// Also deletes the person's messages from this dev mailbox directory on erasure.
    pub fn with_mailbox(mut self, dir: Option<PathBuf>) -> Self {
        self.mailbox = dir;
        self
    }
}

/// The e-mail address or phone number, normalised as the invite path does; `None` when it
/// is empty, erased or does not read as one.
fn normalised_email(raw: &str) -> Option<String> {
    (!raw.is_empty() && raw != TOMBSTONE)
        .then(|| contact::normalize_email(raw).ok())
        .flatten()
}

fn normalised_phone(raw: &str) -> Option<String> {
    (!raw.is_empty() && raw != TOMBSTONE)
        .then(|| contact::normalize_phone(raw).ok())
        .flatten()
}

/// Everything invite-svc knows a person by, in plain form (never leaves this module but as
/// lookup hashes in a [`PrivacySubject`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Person {
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub invitation_ids: Vec<String>,
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// Who `person_id` is in invite-svc's records.
pub async fn person_of<S: Store>(store: &S, person_id: &str) -> Result<Person, ApiError> {
    let mut person = Person::default();
    let Some(signup) = store.signup_of(&[person_id.to_string()]).await? else {
        return Ok(person);
    };
    if let Some(e) = normalised_email(&signup.email_norm).or_else(|| normalised_email(&signup.email)) {
        push_unique(&mut person.emails, e);
    }
    // The invitations the signup was attributed to (the winner and every touch).
    let mut attributed: Vec<String> = signup.invitation_id.iter().cloned().collect();
    for touch in signup.touchpoints()? {
        if !touch.invitation_id.is_empty() {
            push_unique(&mut attributed, touch.invitation_id);
        }
    }
    for inv in store.invitations_by_ids(&attributed).await? {
        add_recipient(&mut person, &inv);
        push_unique(&mut person.invitation_ids, inv.id);
    }
    // Invitations are found by the keyed hashes of their addresses, never the addresses.
    let pii = store.pii();
    let contacts: Vec<String> = person
        .emails
        .iter()
        .map(|e| pii.lookup("email", e))
        .chain(person.phones.iter().map(|p| pii.lookup("phone", p)))
        .collect();
    for inv in store.invitations_to(&contacts).await? {
        push_unique(&mut person.invitation_ids, inv.id);
    }
    person.invitation_ids.truncate(referral_common::privacy::MAX_KEYS);
    Ok(person)
}

fn add_recipient(person: &mut Person, inv: &InvitationRow) {
    if let Some(e) = normalised_email(&inv.recipient_email) {
        push_unique(&mut person.emails, e);
    }
    if let Some(p) = normalised_phone(&inv.recipient_phone) {
        push_unique(&mut person.phones, p);
    }
}

/// The subject every service matches `person_id` by: lookup hashes, never plaintext.
pub async fn subject_of<S: Store>(
    store: &S,
    pii: &PiiKeys,
    person_id: &str,
) -> Result<PrivacySubject, ApiError> {
    let person = person_of(store, person_id).await?;
    let mut contact_keys: Vec<String> = person
        .emails
        .iter()
        .map(|e| pii.lookup("email", e))
        .chain(person.phones.iter().map(|p| pii.lookup("phone", p)))
        .collect();
    contact_keys.dedup();
    contact_keys.truncate(referral_common::privacy::MAX_KEYS);
    Ok(PrivacySubject {
        person_id: person_id.to_string(),
        contact_keys,
        pseudonym: pii.pseudonym(person_id),
        invitation_ids: person.invitation_ids,
    })
}

/// What invite-svc holds about a subject, read once for both erasure and export.
struct Records {
    received: Vec<InvitationRow>,
    sent: Vec<InvitationRow>,
    signup: Option<SignupRow>,
    clicks: Vec<ClickRow>,
    conversions: Vec<crate::store::ConversionRow>,
}

impl<S: Store> PersonRecords<S> {
    async fn records(&self, subject: &PrivacySubject) -> Result<Records, ApiError> {
        let ids = [subject.person_id.clone(), subject.pseudonym.clone()];
        let signup = self.store.signup_of(&ids).await?;
        let received = self.store.invitations_by_ids(&subject.invitation_ids).await?;
        let sent = self.store.invitations_sent_by(&subject.person_id).await?;
        // The click chain of their signup, and every click on an invitation to them.
        let mut click_ids: Vec<String> = Vec::new();
        if let Some(s) = &signup {
            for touch in s.touchpoints()? {
                if touch.kind == "CLICK" && !touch.id.is_empty() {
                    push_unique(&mut click_ids, touch.id);
                }
            }
        }
        let mut frontier = click_ids.clone();
        while let Some(id) = frontier.pop() {
            if click_ids.len() >= MAX_CLICK_CHAIN {
                break;
            }
            if let Some(c) = self.store.get_click(&id).await?
                && !c.previous_click_id.is_empty()
                && !click_ids.contains(&c.previous_click_id)
            {
                click_ids.push(c.previous_click_id.clone());
                frontier.push(c.previous_click_id);
            }
        }
        let clicks = self.store.clicks_of(&click_ids, &subject.invitation_ids).await?;
        let conversions = self.store.conversions_of(&ids).await?;
        Ok(Records {
            received,
            sent,
            signup,
            clicks,
            conversions,
        })
    }
}

/// A personal field erased: a non-empty value becomes the tombstone.
fn tomb(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        TOMBSTONE.to_string()
    }
}

/// An invitation addressed to the erased person: the recipient's fields tombstoned (and the
/// message, which speaks to them by name, and their wedding date), the IP truncated, the
/// device dropped.
pub fn erased_received(row: &InvitationRow) -> InvitationRow {
    InvitationRow {
        recipient_email: tomb(&row.recipient_email),
        recipient_phone: tomb(&row.recipient_phone),
        recipient_name: tomb(&row.recipient_name),
        recipient_key: String::new(),
        message: tomb(&row.message),
        wedding_date: String::new(),
        ip: pii::truncate_ip(&row.ip),
        device_id: String::new(),
        ..row.clone()
    }
}

/// An invitation the erased person sent: the recipient's data stays theirs; the sender's
/// IP, device and name go.
pub fn erased_sent(row: &InvitationRow) -> InvitationRow {
    InvitationRow {
        ip: String::new(),
        device_id: String::new(),
        referrer_name: tomb(&row.referrer_name),
        ..row.clone()
    }
}

/// Their signup: e-mail and name tombstoned, IP truncated, device dropped, the row kept
/// (it counts for the referrer) under the pseudonym.
pub fn erased_signup(row: &SignupRow, pseudonym: &str) -> SignupRow {
    SignupRow {
        user_id: pseudonym.to_string(),
        email: tomb(&row.email),
        email_norm: String::new(),
        name: tomb(&row.name),
        ip: pii::truncate_ip(&row.ip),
        device_id: String::new(),
        ..row.clone()
    }
}

/// Their click: IP truncated, user agent, device and visitor dropped.
pub fn erased_click(row: &ClickRow) -> ClickRow {
    ClickRow {
        ip: pii::truncate_ip(&row.ip),
        user_agent: String::new(),
        device_id: String::new(),
        visitor_id: String::new(),
        ..row.clone()
    }
}

/// The rows that change, and how many per kind (an unchanged row is not counted: a second
/// erasure counts zeros).
fn plan(records: &Records, received_ids: &[String], subject: &PrivacySubject) -> (PersonErasure, Counts) {
    let mut erasure = PersonErasure {
        conversions_to: subject.pseudonym.clone(),
        ..Default::default()
    };
    let mut counts = Counts::new();
    let mut count = |kind: &str, n: usize| {
        counts.insert(kind.to_string(), n as i64);
    };
    let received: Vec<InvitationRow> = records
        .received
        .iter()
        .map(erased_received)
        .zip(&records.received)
        .filter(|(after, before)| after != *before)
        .map(|(after, _)| after)
        .collect();
    count("invitations_received", received.len());
    // An invitation to themselves is erased as received; not again as sent.
    let sent: Vec<InvitationRow> = records
        .sent
        .iter()
        .filter(|r| !received_ids.contains(&r.id))
        .map(|r| (erased_sent(r), r))
        .filter(|(after, before)| after != *before)
        .map(|(after, _)| after)
        .collect();
    count("invitations_sent", sent.len());
    erasure.invitations = received.into_iter().chain(sent).collect();
    erasure.signup = records
        .signup
        .as_ref()
        .map(|s| (erased_signup(s, &subject.pseudonym), s))
        .filter(|(after, before)| after != *before)
        .map(|(after, _)| after);
    count("signups", usize::from(erasure.signup.is_some()));
    erasure.clicks = records
        .clicks
        .iter()
        .map(|c| (erased_click(c), c))
        .filter(|(after, before)| after != *before)
        .map(|(after, _)| after)
        .collect();
    count("clicks", erasure.clicks.len());
    let personal: Vec<&crate::store::ConversionRow> = records
        .conversions
        .iter()
        .filter(|c| c.user_id == subject.person_id)
        .collect();
    count("conversions", personal.len());
    if !personal.is_empty() {
        erasure.conversions_from = vec![subject.person_id.clone()];
    }
    (erasure, counts)
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn opt_ts(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map(ts).map(Value::String).unwrap_or(Value::Null)
}

/// A value as a person should read it: absent when empty.
fn text(value: &str) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        Value::String(value.to_string())
    }
}

fn received_doc(r: &InvitationRow) -> Value {
    json!({
        "invitationId": r.id,
        "from": {"referrerId": r.referrer_id, "name": text(&r.referrer_name), "business": text(&r.business_name)},
        "channel": r.channel,
        "to": {"name": text(&r.recipient_name), "email": text(&r.recipient_email), "phone": text(&r.recipient_phone)},
        "message": text(&r.message),
        "weddingDate": text(&r.wedding_date),
        "status": r.status,
        "createdAt": ts(r.created_at),
        "sentAt": opt_ts(r.sent_at),
    })
}

fn sent_doc(r: &InvitationRow) -> Value {
    json!({
        "invitationId": r.id,
        "code": r.code,
        "channel": r.channel,
        "to": {"name": text(&r.recipient_name)},
        "yourName": text(&r.referrer_name),
        "status": r.status,
        "yourIp": text(&r.ip),
        "yourDeviceId": text(&r.device_id),
        "createdAt": ts(r.created_at),
        "sentAt": opt_ts(r.sent_at),
    })
}

fn click_doc(c: &ClickRow) -> Value {
    json!({
        "clickId": c.click_id,
        "code": c.code,
        "invitationId": c.invitation_id,
        "at": ts(c.occurred_at),
        "ip": text(&c.ip),
        "userAgent": text(&c.user_agent),
        "deviceId": text(&c.device_id),
        "utm": {"source": text(&c.utm_source), "medium": text(&c.utm_medium), "campaign": text(&c.utm_campaign)},
    })
}

fn signup_doc(s: &SignupRow) -> Value {
    json!({
        "userId": s.user_id,
        "kind": s.user_kind,
        "email": text(&s.email),
        "name": text(&s.name),
        "referredBy": s.referrer_id,
        "invitationId": s.invitation_id,
        "code": s.code,
        "attributed": s.attributed,
        "ip": text(&s.ip),
        "deviceId": text(&s.device_id),
        "at": ts(s.created_at),
    })
}

fn conversion_doc(c: &crate::store::ConversionRow) -> Value {
    json!({
        "conversionId": c.id,
        "plan": c.plan,
        "annual": c.annual,
        "amountMinor": c.amount_minor,
        "currency": c.currency,
        "firstPaid": c.first_paid,
        "referredBy": c.referrer_id,
        "at": ts(c.occurred_at),
    })
}

#[tonic::async_trait]
impl<S: Store> PersonData for PersonRecords<S> {
    async fn erase(&self, subject: &PrivacySubject) -> Result<Counts, ApiError> {
        let records = self.records(subject).await?;
        let received_ids: Vec<String> = records.received.iter().map(|r| r.id.clone()).collect();
        // Nothing still queued goes out to an address that is about to be erased.
        let now = referral_common::ids::now();
        for inv in &records.received {
            if matches!(inv.status.as_str(), "SCHEDULED" | "PENDING_REVIEW") {
                self.store.cancel(&inv.id, "recipient erased", now, None).await?;
            }
        }
        let (erasure, mut counts) = plan(&records, &received_ids, subject);
        self.store.erase_person(&erasure).await?;
        if let Some(dir) = &self.mailbox {
            let removed = remove_messages(dir, &received_ids)
                .await
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("dev mailbox {}: {e}", dir.display())))?;
            counts.insert("mailbox_messages".into(), removed as i64);
        }
        Ok(counts)
    }

    async fn export(&self, subject: &PrivacySubject) -> Result<(Counts, Value), ApiError> {
        let r = self.records(subject).await?;
        let received_ids: Vec<&str> = r.received.iter().map(|i| i.id.as_str()).collect();
        let sent: Vec<&InvitationRow> = r
            .sent
            .iter()
            .filter(|i| !received_ids.contains(&i.id.as_str()))
            .collect();
        let mut counts = Counts::new();
        counts.insert("invitations_received".into(), r.received.len() as i64);
        counts.insert("invitations_sent".into(), sent.len() as i64);
        counts.insert("clicks".into(), r.clicks.len() as i64);
        counts.insert("signups".into(), i64::from(r.signup.is_some()));
        counts.insert("conversions".into(), r.conversions.len() as i64);
        // Unsubscribes, bounces, complaints and lifts of the addresses they were known by.
        let consent = crate::app::consent::history(&self.store, &subject.contact_keys)
            .await
            .map_err(ApiError::from)?["consentHistory"]
            .take();
        counts.insert(
            "consent_events".into(),
            consent.as_array().map_or(0, |a| a.len() as i64),
        );
        let doc = json!({
            "invitationsReceived": r.received.iter().map(received_doc).collect::<Vec<_>>(),
            "invitationsSent": sent.into_iter().map(sent_doc).collect::<Vec<_>>(),
            "clicks": r.clicks.iter().map(click_doc).collect::<Vec<_>>(),
            "signup": r.signup.as_ref().map(signup_doc),
            "conversions": r.conversions.iter().map(conversion_doc).collect::<Vec<_>>(),
            "consentHistory": consent,
        });
        Ok((counts, doc))
    }
}

/// Deletes the dev mailbox's messages of these invitations (`{date}-{invitation id}.eml` or
/// `.sms.txt`); returns how many.
async fn remove_messages(dir: &std::path::Path, invitation_ids: &[String]) -> std::io::Result<usize> {
    if invitation_ids.is_empty() {
        return Ok(0);
    }
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = name
            .strip_suffix(".eml")
            .or_else(|| name.strip_suffix(".sms.txt"));
        let Some(stem) = stem else { continue };
        if invitation_ids.iter().any(|id| stem.ends_with(&format!("-{id}"))) {
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use referral_common::ids;

    use super::*;
    use crate::store::{NewInvitation, PrivacyStore, SqliteStore};

    async fn store() -> (SqliteStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("privacy-app-{}", uuid::Uuid::now_v7().simple()));
        let store = SqliteStore::connect(
            &format!("sqlite://{}/invite.db", dir.display()),
            PiiKeys::for_tests(),
        )
        .await
        .expect("sqlite store");
        (store, dir)
    }

    /// An invitation as create_invitation stores it: contacts already normalised.
    fn invitation(referrer: &str, email: &str, phone: &str) -> InvitationRow {
        let now = ids::now();
        InvitationRow {
            id: ids::new_id(),
            code: format!("LOVE-{}", &uuid::Uuid::now_v7().simple().to_string()[26..]).to_uppercase(),
            referrer_id: referrer.into(),
            referrer_kind: "SUPPLIER".into(),
            referee_kind: "COUPLE".into(),
            vendor_type: None,
            flow: "SUPPLIER_TO_COUPLE".into(),
            channel: "LINK".into(),
            recipient_email: email.into(),
            recipient_phone: phone.into(),
            recipient_name: "Jane Doe".into(),
            recipient_timezone: "Europe/London".into(),
            // As create_invitation stores it: the keyed hash of the normalised contact.
            recipient_key: crate::store::sealed::recipient_key(&PiiKeys::for_tests(), email, phone),
            status: "SENT".into(),
            status_reason: String::new(),
            risk_json: String::new(),
            template_id: String::new(),
            template_variant: String::new(),
            message: "Dear Jane".into(),
            campaign_id: String::new(),
            utm_source: String::new(),
            utm_medium: String::new(),
            utm_campaign: String::new(),
            wedding_date: "2027-06-12".into(),
            scheduled_for: None,
            sent_at: Some(now),
            expires_at: Some(now + Duration::days(30)),
            ip: "203.0.113.7".into(),
            device_id: "dev-1".into(),
            created_at: now,
            updated_at: now,
            referrer_name: "Ana".into(),
            business_name: "Ana Weddings".into(),
        }
    }

    async fn stored(store: &SqliteStore, row: InvitationRow) -> InvitationRow {
        let new = NewInvitation {
            row,
            paced: false,
            duplicate_since: ids::now() - Duration::days(1),
            max_queued: 1000,
            landing_url: "https://example.com".into(),
            contact_lookup: String::new(),
        };
        match store
            .create_invitation(new, &|_| ids::now())
            .await
            .expect("create")
        {
            crate::store::CreateOutcome::Created(row) => *row,
            other => panic!("{other:?}"),
        }
    }

    fn signup(user: &str, email: &str, invitation_id: Option<&str>) -> SignupRow {
        SignupRow {
            id: ids::new_id(),
            user_id: user.into(),
            user_kind: "COUPLE".into(),
            vendor_type: None,
            email: email.into(),
            email_norm: contact::normalize_email(email).expect("email"),
            name: "Jane Doe".into(),
            attributed: invitation_id.is_some(),
            invitation_id: invitation_id.map(str::to_string),
            code: None,
            referrer_id: None,
            referrer_kind: None,
            flow: None,
            reason: String::new(),
            touchpoints_json: "[]".into(),
            risk_json: String::new(),
            click_at: None,
            ip: "198.51.100.23".into(),
            device_id: "dev-jane".into(),
            created_at: ids::now(),
            rejected_click: String::new(),
        }
    }

    #[test]
    fn gmail_spellings_are_one_address() {
        for spelling in [
            "Jane.Doe+wedding@gmail.com",
            "janedoe@googlemail.com",
            " JANE.DOE@gmail.com ",
        ] {
            assert_eq!(
                normalised_email(spelling).as_deref(),
                Some("janedoe@gmail.com"),
                "{spelling}"
            );
        }
        assert_eq!(
            normalised_email("jane.doe@example.com").as_deref(),
            Some("jane.doe@example.com")
        );
        assert_eq!(normalised_email(TOMBSTONE), None);
        assert_eq!(normalised_phone("07700 900123").as_deref(), Some("+447700900123"));
    }

    /// The subject: the signup's address (Gmail-normalised), the attributed invitation's
    /// phone, and every invitation to either; hashes only, never the address itself.
    #[tokio::test]
    async fn the_subject_follows_the_signup_and_every_invitation_to_its_contacts() {
        let (store, dir) = store().await;
        let pii = PiiKeys::for_tests();
        let attributed = stored(&store, invitation("ref-a", "janedoe@gmail.com", "+447700900123")).await;
        let by_phone = stored(&store, invitation("ref-b", "", "+447700900123")).await;
        let by_email = stored(&store, invitation("ref-c", "janedoe@gmail.com", "")).await;
        let other = stored(&store, invitation("ref-a", "someone@gmail.com", "")).await;
        store
            .insert_signup(&signup(
                "jane",
                "Jane.Doe+Wedding@googlemail.com",
                Some(&attributed.id),
            ))
            .await
            .expect("signup");
        let subject = subject_of(&store, &pii, "jane").await.expect("subject");
        let mut ids = subject.invitation_ids.clone();
        ids.sort();
        let mut want = vec![attributed.id.clone(), by_phone.id.clone(), by_email.id.clone()];
        want.sort();
        assert_eq!(ids, want);
        assert!(!subject.invitation_ids.contains(&other.id));
        assert_eq!(
            subject.contact_keys,
            vec![
                pii.lookup("email", "janedoe@gmail.com"),
                pii.lookup("phone", "+447700900123")
            ]
        );
        assert_eq!(subject.pseudonym, pii.pseudonym("jane"));
        let text = serde_json::to_string(&subject).expect("json");
        assert!(
            !text.contains("janedoe") && !text.contains("7700900123"),
            "{text}"
        );
        // Someone we never saw sign up: no contacts, nothing addressed to them.
        let nobody = subject_of(&store, &pii, "nobody").await.expect("subject");
        assert!(nobody.contact_keys.is_empty() && nobody.invitation_ids.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Erasure tombstones what is personal, keeps what counts, and is idempotent: a second
    /// run counts zeros; an export after it holds nothing personal.
    #[tokio::test]
    async fn erasure_is_complete_and_idempotent() {
        let (store, dir) = store().await;
        let pii = PiiKeys::for_tests();
        let to_her = stored(&store, invitation("ref-a", "janedoe@gmail.com", "+447700900123")).await;
        // Jane is a referrer too: her own invitation keeps its recipient.
        let mut to_friend = invitation("jane", "friend@example.com", "");
        to_friend.recipient_name = "Fran Friend".into();
        let hers = stored(&store, to_friend).await;
        store
            .insert_signup(&signup("jane", "jane.doe@gmail.com", Some(&to_her.id)))
            .await
            .expect("signup");
        let mailbox = dir.join("mailbox");
        std::fs::create_dir_all(&mailbox).expect("mailbox");
        std::fs::write(
            mailbox.join(format!("20270101T000000Z-{}.eml", to_her.id)),
            "To: jane",
        )
        .expect("eml");
        std::fs::write(mailbox.join("20270101T000000Z-unrelated.eml"), "To: x").expect("eml");
        let records = PersonRecords::new(store.clone(), pii.clone()).with_mailbox(Some(mailbox.clone()));
        let subject = subject_of(&store, &pii, "jane").await.expect("subject");

        let counts = records.erase(&subject).await.expect("erase");
        assert_eq!(counts["invitations_received"], 1, "{counts:?}");
        assert_eq!(counts["invitations_sent"], 1, "{counts:?}");
        assert_eq!(counts["signups"], 1, "{counts:?}");
        assert_eq!(counts["mailbox_messages"], 1, "{counts:?}");
        assert!(mailbox.join("20270101T000000Z-unrelated.eml").exists());
        let erased = store.get_invitation(&to_her.id).await.expect("get").expect("row");
        assert_eq!(
            (
                erased.recipient_email.as_str(),
                erased.recipient_phone.as_str(),
                erased.recipient_name.as_str()
            ),
            (TOMBSTONE, TOMBSTONE, TOMBSTONE)
        );
        assert_eq!(
            (erased.ip.as_str(), erased.device_id.as_str()),
            ("203.0.113.0", "")
        );
        let sent = store.get_invitation(&hers.id).await.expect("get").expect("row");
        assert_eq!(
            (sent.recipient_email.as_str(), sent.recipient_name.as_str()),
            ("friend@example.com", "Fran Friend")
        );
        assert_eq!((sent.ip.as_str(), sent.device_id.as_str()), ("", ""));
        let kept = store
            .signup_of(std::slice::from_ref(&subject.pseudonym))
            .await
            .expect("signup")
            .expect("kept");
        assert_eq!(
            (kept.email.as_str(), kept.ip.as_str()),
            (TOMBSTONE, "198.51.100.0")
        );

        let again = records.erase(&subject).await.expect("erase again");
        assert!(again.values().all(|n| *n == 0), "{again:?}");
        let (_, doc) = records.export(&subject).await.expect("export");
        let text = doc.to_string();
        for personal in [
            "janedoe",
            "jane.doe",
            "7700900123",
            "Jane Doe",
            "198.51.100.23",
            "dev-jane",
        ] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
