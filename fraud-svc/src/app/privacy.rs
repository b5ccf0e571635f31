//! fraud-svc's part of a privacy request (issue #16): erase a person, export what fraud-svc
//! holds about them ([`PersonData`], served as `referral.common.v1.PrivacyService` and driven
//! by the privacy follower).
//!
//! A person is found by their user id (as referee, referrer or ring member), by the lookup
//! hashes of their e-mails and phones (`contact_keys`: facts, identities and ring links keyed
//! by them) and by the invitations they received.
//!
//! Erase, in one transaction holding the assessment lock: every fact about them loses its
//! keys and sealed values (so they no longer join rings or windows), their identities, ring
//! links and ring membership go; facts, assessments and cases that others' decisions or the
//! books rest on stay, under the pseudonym: the decision, score, level and which signals fired
//! are kept, the person's id, ring keys and case notes are not. Idempotent: a second erase
//! finds nothing personal and counts zeros.
//!
//! Export: the assessments and cases about them and their ring, as readable JSON.

use referral_common::{
    ApiError, Violations, input,
    pii::{self, PiiKeys},
    privacy::{Counts, PersonData},
};
use referral_proto::{
    common::v1::{PrivacySubject, Rule, Signal},
    fraud::v1::Cluster,
};
use serde_json::{Value, json};

use crate::{
    domain::{rules, signals},
    store::{AssessmentRow, CaseRow, PersonKeys, Store, StoreError, StoreResult, convert},
};

/// Rows read per page while erasing or exporting.
const PAGE: i64 = 500;
/// Most ring-mates whose assessments' snapshots are searched for the erased person (a
/// snapshot lists at most `SNAPSHOT_MEMBERS` members, the first by id).
const RING_MATES_MAX: i64 = 1_000;
/// Most assessments (and cases) one export lists; more is said, never silently cut.
const EXPORT_MAX: usize = 10_000;

/// fraud-svc's [`PersonData`] over its store.
pub struct PersonRecords<S> {
    store: S,
    pii: PiiKeys,
}

impl<S: Store> PersonRecords<S> {
    pub fn new(store: S, pii: PiiKeys) -> Self {
        Self { store, pii }
    }
}

#[tonic::async_trait]
impl<S: Store> PersonData for PersonRecords<S> {
    async fn erase(&self, subject: &PrivacySubject) -> Result<Counts, ApiError> {
        check_keys(subject)?;
        let pseudonym = pseudonym_of(&self.pii, subject)?;
        let who = keys_of(subject, &pseudonym);
        Ok(erase(&self.store, &who).await?)
    }

    async fn export(&self, subject: &PrivacySubject) -> Result<(Counts, Value), ApiError> {
        check_keys(subject)?;
        let pseudonym = pseudonym_of(&self.pii, subject)?;
        let who = keys_of(subject, &pseudonym);
        Ok(export(&self.store, &who).await?)
    }
}

/// Each contact key is a lookup hash (32 hex digits) and each invitation id a bounded,
/// printable id: anything else names nobody here and is refused, field named.
fn check_keys(subject: &PrivacySubject) -> Result<(), ApiError> {
    let mut v = Violations::default();
    if let Some(i) = subject
        .contact_keys
        .iter()
        .position(|k| k.len() != 32 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        v.add(
            &format!("subject.contactKeys[{i}]"),
            "must be a lookup hash (32 hex digits)",
        );
    }
    for (i, id) in subject.invitation_ids.iter().enumerate() {
        input::line(&mut v, id, input::ID_MAX, &format!("subject.invitationIds[{i}]"));
    }
    v.into_result()
}

/// The pseudonym rows stay under: the subject's, which must be one `PiiKeys::pseudonym`
/// makes (anything else would re-key rows under a caller's choice), else ours.
fn pseudonym_of(keys: &PiiKeys, subject: &PrivacySubject) -> Result<String, ApiError> {
    if subject.pseudonym.is_empty() {
        return Ok(keys.pseudonym(&subject.person_id));
    }
    if !pii::is_pseudonym(&subject.pseudonym) {
        return Err(ApiError::invalid(
            "subject.pseudonym",
            "must be anon- followed by 24 hex digits",
        ));
    }
    Ok(subject.pseudonym.clone())
}

fn keys_of<'a>(subject: &'a PrivacySubject, pseudonym: &'a str) -> PersonKeys<'a> {
    PersonKeys {
        person_id: &subject.person_id,
        pseudonym,
        contact_keys: &subject.contact_keys,
        invitation_ids: &subject.invitation_ids,
    }
}

/// Erases the person (see the module's doc) in one transaction; counts by kind.
pub async fn erase<S: Store>(store: &S, who: &PersonKeys<'_>) -> StoreResult<Counts> {
    let mut tx = store.begin_assessment().await?;
    // Read before the membership goes: their ring-mates' assessments snapshot the ring.
    let mates = store.ring_mates(&mut tx, who.person_id, RING_MATES_MAX).await?;
    let mut counts = store.erase_facts(&mut tx, who).await?;
    let mut assessments = 0;
    let mut after = String::new();
    loop {
        let page = store.assessments_about_in(&mut tx, who, &after, PAGE).await?;
        for row in &page {
            let mut kept = row.clone();
            scrub_assessment(&mut kept, Some(who), None)?;
            if &kept != row {
                store.rewrite_assessment(&mut tx, &kept).await?;
                assessments += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.id.clone(),
            _ => break,
        }
    }
    // Ring snapshots in the assessments of their ring-mates list them by id: the pseudonym.
    for mate in &mates {
        let theirs = PersonKeys {
            person_id: mate,
            pseudonym: "",
            contact_keys: &[],
            invitation_ids: &[],
        };
        let mut after = String::new();
        loop {
            let page = store.assessments_about_in(&mut tx, &theirs, &after, PAGE).await?;
            for row in &page {
                let mut kept = row.clone();
                if pseudonymise_snapshot(&mut kept, who)? {
                    store.rewrite_assessment(&mut tx, &kept).await?;
                    assessments += 1;
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = last.id.clone(),
                _ => break,
            }
        }
    }
    counts.insert("assessments".into(), assessments);
    let mut cases = 0;
    let mut after = String::new();
    loop {
        let page = store.cases_about_in(&mut tx, who, &after, PAGE).await?;
        for row in &page {
            let mut kept = row.clone();
            scrub_case(&mut kept, who);
            if &kept != row {
                store.rewrite_case(&mut tx, &kept).await?;
                cases += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.id.clone(),
            _ => break,
        }
    }
    counts.insert("cases".into(), cases);
    store.commit(tx, false).await?;
    Ok(counts)
}

/// What fraud-svc holds about the person, readable: the assessments and cases about them
/// (their role in each, the decision, score, level, the signals and rules that fired with
/// their explanations, when) and the ring they belong to.
pub async fn export<S: Store>(store: &S, who: &PersonKeys<'_>) -> StoreResult<(Counts, Value)> {
    let mut assessments = Vec::new();
    let mut truncated = false;
    let mut after = String::new();
    loop {
        let page = store.assessments_about(who, &after, PAGE).await?;
        for row in &page {
            if assessments.len() == EXPORT_MAX {
                truncated = true;
                break;
            }
            assessments.push(assessment_doc(row, who)?);
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE && !truncated => after = last.id.clone(),
            _ => break,
        }
    }
    let mut cases = Vec::new();
    let mut after = String::new();
    loop {
        let page = store.cases_about(who, &after, PAGE).await?;
        for row in &page {
            if cases.len() == EXPORT_MAX {
                truncated = true;
                break;
            }
            cases.push(case_doc(row, who));
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE && cases.len() < EXPORT_MAX => after = last.id.clone(),
            _ => break,
        }
    }
    let ring = store.cluster_of(who.person_id, 0).await?;
    let mut counts = Counts::new();
    counts.insert("assessments".into(), assessments.len() as i64);
    counts.insert("cases".into(), cases.len() as i64);
    counts.insert("rings".into(), i64::from(ring.is_some()));
    let document = json!({
        "service": "fraud-svc",
        "about": "Fraud checks made about you: each decision, its risk score and level, and the signals and rules that fired with their explanations. fraud-svc keeps no e-mail address, IP address or device id in readable form.",
        "assessments": assessments,
        "cases": cases,
        "ring": ring.map(|r| json!({
            "clusterId": r.id,
            "size": r.size,
            "meaning": "you are linked to this many people by a shared IP address, device or e-mail address",
        })),
        "truncated": truncated,
    });
    Ok((counts, document))
}

fn role_of(who: &PersonKeys<'_>, referee: &str, referrer: &str) -> &'static str {
    if referee == who.person_id {
        "referee"
    } else if referrer == who.person_id {
        "referrer"
    } else {
        "recipient"
    }
}

fn assessment_doc(row: &AssessmentRow, who: &PersonKeys<'_>) -> StoreResult<Value> {
    let a = convert::assessment(row)?;
    let fired: Vec<Value> = a
        .signals
        .iter()
        .filter(|s| s.triggered)
        .map(|s| json!({ "signal": s.name, "weight": s.weight, "explanation": s.detail }))
        .collect();
    let rules: Vec<Value> = a
        .rules
        .iter()
        .map(|r| json!({ "rule": r.name, "explanation": r.detail }))
        .collect();
    Ok(json!({
        "id": row.id,
        "yourRole": role_of(who, &row.referee_id, &row.referrer_id),
        "subjectType": row.subject_type,
        "subjectId": row.subject_id,
        "decision": row.action,
        "score": row.score,
        "level": row.level,
        "signalsFired": fired,
        "rulesFired": rules,
        "caseId": row.case_id,
        "occurredAt": row.occurred_at,
        "assessedAt": row.assessed_at,
    }))
}

fn case_doc(row: &CaseRow, who: &PersonKeys<'_>) -> Value {
    json!({
        "id": row.id,
        "yourRole": role_of(who, &row.referee_id, &row.referrer_id),
        "state": row.state,
        "subjectType": row.subject_type,
        "subjectId": row.subject_id,
        "assessmentId": row.assessment_id,
        "decision": row.decision,
        "reviewerNote": row.note,
        "openedAt": row.created_at,
        "resolvedAt": row.resolved_at,
    })
}

/// Another person's assessment whose ring snapshot lists the erased person: that entry
/// becomes the pseudonym. Whether it did.
fn pseudonymise_snapshot(row: &mut AssessmentRow, who: &PersonKeys<'_>) -> StoreResult<bool> {
    let quoted = format!("\"{}\"", who.person_id);
    if row.cluster_json.is_empty() || !row.cluster_json.contains(&quoted) {
        return Ok(false);
    }
    let mut c: Cluster = serde_json::from_str(&row.cluster_json)
        .map_err(|e| StoreError::Encoding(format!("assessment {}: cluster_json: {e}", row.id)))?;
    let mut changed = false;
    for m in &mut c.members {
        if m.id == who.person_id {
            m.id = who.pseudonym.to_string();
            changed = true;
        }
    }
    if changed {
        row.cluster_json = serde_json::to_string(&c)
            .map_err(|e| StoreError::Encoding(format!("assessment {}: cluster_json: {e}", row.id)))?;
    }
    Ok(changed)
}

/// An erased person's case: their ids become the pseudonym and the reviewer's note (free
/// text that may name them) a tombstone; the state and decision stay.
fn scrub_case(row: &mut CaseRow, who: &PersonKeys<'_>) {
    for id in [&mut row.referee_id, &mut row.referrer_id, &mut row.cluster_member] {
        if id == who.person_id {
            *id = who.pseudonym.to_string();
        }
    }
    if !row.note.is_empty() && row.note != pii::TOMBSTONE {
        row.note = pii::TOMBSTONE.to_string();
    }
}

/// Makes a stored assessment hold no personal data, keeping its decision, score, level and
/// which signals and rules fired:
/// - explanations written before issue #16 that named an e-mail, IP, device or person are
///   rewritten in today's words ([`redact_detail`]);
/// - with `erased`, that person's ids become the pseudonym and the ring snapshot loses its
///   link keys (hashes of their IP, device, e-mail);
/// - with `rehash`, ring links stored as plaintext (`ip:203.0.113.7`) become their keyed
///   hashes (re-encryption of old rows).
pub fn scrub_assessment(
    row: &mut AssessmentRow,
    erased: Option<&PersonKeys<'_>>,
    rehash: Option<&PiiKeys>,
) -> StoreResult<()> {
    let unreadable = |column: &str, e: serde_json::Error| {
        StoreError::Encoding(format!("assessment {}: {column}: {e}", row.id))
    };
    let mut list: Vec<Signal> =
        serde_json::from_str(&row.signals_json).map_err(|e| unreadable("signals_json", e))?;
    for s in &mut list {
        s.detail = redact_detail(&s.name, s.value, s.threshold, &s.detail);
    }
    let signals_json = serde_json::to_string(&list).map_err(|e| unreadable("signals_json", e))?;
    let mut hits: Vec<Rule> =
        serde_json::from_str(&row.rules_json).map_err(|e| unreadable("rules_json", e))?;
    for r in &mut hits {
        r.detail = redact_detail(&r.name, 0.0, 0.0, &r.detail);
    }
    let rules_json = serde_json::to_string(&hits).map_err(|e| unreadable("rules_json", e))?;
    let mut cluster_json = row.cluster_json.clone();
    if !cluster_json.is_empty() {
        let mut c: Cluster =
            serde_json::from_str(&row.cluster_json).map_err(|e| unreadable("cluster_json", e))?;
        if let Some(who) = erased {
            for m in &mut c.members {
                if m.id == who.person_id {
                    m.id = who.pseudonym.to_string();
                }
            }
            c.links.clear();
        }
        if let Some(keys) = rehash {
            for link in &mut c.links {
                *link = rehash_link(keys, link);
            }
        }
        cluster_json = serde_json::to_string(&c).map_err(|e| unreadable("cluster_json", e))?;
    }
    // Only rewrite what changed, so an unchanged row compares equal.
    if signals_json != row.signals_json && list_changed(&row.signals_json, &list) {
        row.signals_json = signals_json;
    }
    if rules_json != row.rules_json && rules_changed(&row.rules_json, &hits) {
        row.rules_json = rules_json;
    }
    if cluster_json != row.cluster_json && cluster_changed(&row.cluster_json, &cluster_json) {
        row.cluster_json = cluster_json;
    }
    if let Some(who) = erased {
        if row.referee_id == who.person_id {
            row.referee_id = who.pseudonym.to_string();
        }
        if row.referrer_id == who.person_id {
            row.referrer_id = who.pseudonym.to_string();
        }
        if row.dedupe_key.as_deref() == Some(&format!("user:{}", who.person_id)) {
            row.dedupe_key = Some(format!("user:{}", who.pseudonym));
        }
    }
    Ok(())
}

/// Whether the stored JSON says something other than `now` (the same values serialised
/// differently are not a change).
fn list_changed(stored: &str, now: &[Signal]) -> bool {
    serde_json::from_str::<Vec<Signal>>(stored).map_or(true, |was| was != now)
}

fn rules_changed(stored: &str, now: &[Rule]) -> bool {
    serde_json::from_str::<Vec<Rule>>(stored).map_or(true, |was| was != now)
}

fn cluster_changed(stored: &str, now: &str) -> bool {
    let was = serde_json::from_str::<Cluster>(stored);
    let now = serde_json::from_str::<Cluster>(now);
    match (was, now) {
        (Ok(a), Ok(b)) => a != b,
        _ => true,
    }
}

/// A ring link as stored before issue #16 (`ip:203.0.113.7`, `email:a@example.com`,
/// `device:laptop-1`, maybe `legacy:`-prefixed) as its keyed hash; a hashed link as it is.
pub fn rehash_link(keys: &PiiKeys, link: &str) -> String {
    let plain = link.strip_prefix("legacy:").unwrap_or(link);
    let Some((kind, value)) = plain.split_once(':') else {
        return link.to_string();
    };
    let hashed = value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit());
    if hashed && plain.len() == link.len() {
        return link.to_string();
    }
    let value = value.trim();
    format!("{kind}:{}", keys.lookup(kind, value))
}

/// An explanation in today's words where an older one may have named personal data (an
/// e-mail, local part, name, IP, device or another person); others as they are.
pub fn redact_detail(name: &str, value: f64, threshold: f64, detail: &str) -> String {
    match name {
        signals::SIMILARITY if !(detail.starts_with("the ") || detail.starts_with("no ")) => {
            format!("the e-mail local part or name is {value:.2} similar to another referee's")
        }
        signals::IP_CLUSTER if !(detail.contains("from one IP address") || detail.starts_with("no ")) => {
            format!(
                "{value} of this referrer's referees came from one IP address in the last 7 days; {threshold} or more fires"
            )
        }
        signals::DISPOSABLE_EMAIL
            if detail.ends_with(" is not on the disposable-domain list")
                && !detail.starts_with("the e-mail domain") =>
        {
            "the e-mail domain is not on the disposable-domain list".to_string()
        }
        rules::SELF_REFERRAL => {
            const TODAY: [&str; 3] = [
                "the referee is the referrer",
                "the referee's e-mail is the referrer's own",
                "the referee's device is the referrer's own",
            ];
            if detail.split("; ").all(|part| TODAY.contains(&part)) {
                detail.to_string()
            } else {
                "the referee is the referrer, or uses the referrer's own e-mail or device".to_string()
            }
        }
        rules::DEVICE_INVITATION_FLOOD => match (detail.find(" from device "), detail.find(" in the last")) {
            (Some(from), Some(until)) if from < until => {
                format!("{} from one device{}", &detail[..from], &detail[until..])
            }
            _ => detail.to_string(),
        },
        _ => detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_explanations_lose_what_named_a_person() {
        let sim = redact_detail(
            signals::SIMILARITY,
            0.909091,
            0.8,
            "e-mail local part \"anna.smith2\" is 0.91 similar to \"anna.smith1\" (referee u1)",
        );
        assert_eq!(
            sim,
            "the e-mail local part or name is 0.91 similar to another referee's"
        );
        let ip = redact_detail(
            signals::IP_CLUSTER,
            5.0,
            5.0,
            "5 of this referrer's referees came from 203.0.113.7 in the last 7 days; 5 or more fires",
        );
        assert!(
            !ip.contains("203.0.113.7") && ip.contains("from one IP address"),
            "{ip}"
        );
        let domain = redact_detail(
            signals::DISPOSABLE_EMAIL,
            0.0,
            1.0,
            "smithfamily.net is not on the disposable-domain list",
        );
        assert!(!domain.contains("smithfamily"), "{domain}");
        let own = redact_detail(
            rules::SELF_REFERRAL,
            0.0,
            0.0,
            "a@example.com is the referrer's own e-mail",
        );
        assert!(!own.contains("a@example.com"), "{own}");
        let flood = redact_detail(
            rules::DEVICE_INVITATION_FLOOD,
            0.0,
            0.0,
            "150 invitations from device laptop-7 in the last 24 h for 3 referrer(s) (at most 100)",
        );
        assert_eq!(
            flood,
            "150 invitations from one device in the last 24 h for 3 referrer(s) (at most 100)"
        );
        // Today's words stay as they are.
        for (name, text) in [
            (
                signals::SIMILARITY,
                "the name is 1.00 similar to another referee's",
            ),
            (
                signals::DISPOSABLE_EMAIL,
                "mailinator.com is a disposable e-mail domain",
            ),
            (
                rules::SELF_REFERRAL,
                "the referee is the referrer; the referee's device is the referrer's own",
            ),
            (
                signals::VELOCITY,
                "12 signups referred by this referrer in the last 24 h; more than 10 fires",
            ),
        ] {
            assert_eq!(redact_detail(name, 1.0, 1.0, text), text);
        }
    }

    #[test]
    fn plaintext_ring_links_become_their_hashes() {
        let keys = PiiKeys::for_tests();
        let ip = keys.lookup("ip", "203.0.113.7");
        assert_eq!(rehash_link(&keys, "ip:203.0.113.7"), format!("ip:{ip}"));
        assert_eq!(rehash_link(&keys, "legacy:ip:203.0.113.7"), format!("ip:{ip}"));
        assert_eq!(rehash_link(&keys, &format!("ip:{ip}")), format!("ip:{ip}"));
        assert_eq!(
            rehash_link(&keys, "email:a@example.com"),
            format!("email:{}", keys.lookup("email", "a@example.com"))
        );
    }

    #[test]
    fn contact_keys_and_invitation_ids_are_bounded() {
        let keys = PiiKeys::for_tests();
        let mut s = PrivacySubject {
            person_id: "couple-1".into(),
            contact_keys: vec![keys.lookup("email", "a@example.com")],
            invitation_ids: vec!["inv-1".into()],
            ..Default::default()
        };
        assert!(check_keys(&s).is_ok());
        s.contact_keys.push("a@example.com".into());
        let e = check_keys(&s).unwrap_err();
        assert!(format!("{e:?}").contains("subject.contactKeys[1]"), "{e:?}");
        s.contact_keys.pop();
        s.invitation_ids.push("x".repeat(500));
        let e = check_keys(&s).unwrap_err();
        assert!(format!("{e:?}").contains("subject.invitationIds[1]"), "{e:?}");
    }

    #[test]
    fn a_pseudonym_is_ours_or_refused() {
        let keys = PiiKeys::for_tests();
        let mut s = PrivacySubject {
            person_id: "couple-1".into(),
            ..Default::default()
        };
        assert_eq!(pseudonym_of(&keys, &s).unwrap(), keys.pseudonym("couple-1"));
        s.pseudonym = "someone-else".into();
        assert!(pseudonym_of(&keys, &s).is_err());
        s.pseudonym = keys.pseudonym("couple-1");
        assert_eq!(pseudonym_of(&keys, &s).unwrap(), s.pseudonym);
    }
}
