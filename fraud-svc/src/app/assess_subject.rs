//! Assess a subject: an invitation, a signup or a conversion, asked by gRPC or found in
//! invite-svc's event log. In one transaction holding the assessment lock:
//!
//! 1. a repeated question (same dedupe key) answers with the first assessment;
//! 2. the question's facts are recorded and its people observed (identities, ring links):
//!    an invitation's recipient and device, a signup's referee, a conversion's referee as
//!    their signup showed them;
//! 3. its windows are read (an invitation's recipient and device; a referral's referrer:
//!    velocity, same IP, recent referees, the referrer's own e-mail and device) and the larger
//!    of the referee's and the referrer's rings;
//! 4. the domain decides ([`Scoring::evaluate`]);
//! 5. the assessment is stored with a snapshot of the ring, a REVIEW or REJECT opens a case,
//!    and a `FraudAssessed` event is staged.

use std::time::Instant;

use chrono::{DateTime, Utc};
use referral_common::{ApiResult, ids};

use crate::{
    app::observe_person::{Observation, observe_in},
    domain::{self, Action, Count, Evidence, Scoring, SubjectKind, identity, rules::ReferrerMatch},
    store::convert,
    store::events,
    store::{
        AssessmentRow, InvitationFact, InvitationWindows, NewCase, REFEREE, REFERRER, ReferralFact,
        ReferralWindows, SNAPSHOT_MEMBERS, Store, StoreResult,
    },
};

/// One question to assess, already validated and normalised.
#[derive(Debug, Clone)]
pub struct AssessInput {
    pub assessment_id: String,
    pub kind: SubjectKind,
    pub subject_id: String,
    /// A second question with the same key answers with the first assessment.
    pub dedupe_key: String,
    pub referrer_id: String,
    /// The referee's user id (signups, conversions).
    pub referee_id: String,
    /// Normalised e-mail (the referee's; an invitation's recipient's) and name.
    pub email: String,
    pub name: String,
    pub ip: String,
    pub device_id: String,
    /// Invitations: the recipient's lookup key (`PiiKeys::lookup` of their e-mail or phone).
    pub recipient_key: String,
    pub occurred_at: DateTime<Utc>,
    pub click_at: Option<DateTime<Utc>>,
}

/// The stored assessment, and whether this call made it.
#[derive(Debug, Clone)]
pub struct Assessed {
    pub row: AssessmentRow,
    pub fresh: bool,
}

/// Assesses one direct question in its own transaction, with the latency and outcome
/// metrics of a direct question.
pub async fn assess<S: Store>(store: &S, scoring: &Scoring, input: AssessInput) -> ApiResult<AssessmentRow> {
    let started = Instant::now();
    let kind = input.kind;
    let assessed = assess_once(store, scoring, input).await?;
    metrics::histogram!("fraud_assess_seconds", "subject" => kind.as_str())
        .record(started.elapsed().as_secs_f64());
    if assessed.fresh {
        metrics::counter!("fraud_assessments_total", "subject" => kind.as_str(), "action" => assessed.row.action.clone())
            .increment(1);
    }
    Ok(assessed.row)
}

/// Assesses one question in its own transaction (committed only if every step succeeds).
pub async fn assess_once<S: Store>(
    store: &S,
    scoring: &Scoring,
    input: AssessInput,
) -> StoreResult<Assessed> {
    let mut tx = store.begin_assessment().await?;
    let assessed = assess_in(store, &mut tx, scoring, input).await?;
    store.commit(tx, assessed.fresh).await?;
    Ok(assessed)
}

/// One assessment inside the caller's transaction (steps 1-5 above).
pub async fn assess_in<S: Store>(
    store: &S,
    tx: &mut S::Tx,
    scoring: &Scoring,
    input: AssessInput,
) -> StoreResult<Assessed> {
    if let Some(row) = store.assessment_by_key(tx, input.kind, &input.dedupe_key).await? {
        return Ok(Assessed { row, fresh: false });
    }
    let at = input.occurred_at;
    // From here on only keyed hashes and derived traits: nothing stored or shown holds the
    // address, IP or device itself.
    let pii = store.pii();
    let mut email_key = pii.lookup("email", &input.email);
    let mut e = Evidence::new(input.kind, at);
    e.referrer_id = input.referrer_id.clone();
    e.referee_id = input.referee_id.clone();
    e.email = identity::EmailTraits::of(&input.email);
    e.name = input.name.clone();
    e.ip_key = pii.lookup("ip", input.ip.trim());
    e.device_key = pii.lookup("device", input.device_id.trim());
    e.click_at = input.click_at;
    // Whose ring the assessment shows: the referee's, or an invitation's referrer's.
    let mut ring_person = input.referee_id.clone();
    match input.kind {
        SubjectKind::Invitation => {
            ring_person = input.referrer_id.clone();
            invitation_facts_in(store, tx, scoring, &input, &email_key, &mut e).await?;
        }
        SubjectKind::Signup => {
            if !input.referrer_id.is_empty() && !input.referee_id.is_empty() {
                let fact = ReferralFact {
                    referee_id: &input.referee_id,
                    referrer_id: &input.referrer_id,
                    subject_id: &input.subject_id,
                    email_key: &email_key,
                    email: &e.email,
                    name_norm: &input.name,
                    ip_key: &e.ip_key,
                    device_key: &e.device_key,
                    occurred_at: at,
                };
                store.record_referral(tx, &fact).await?;
            }
            let me = Observation {
                person_id: input.referee_id.clone(),
                role: REFEREE,
                email: input.email.clone(),
                ip: input.ip.clone(),
                device_id: input.device_id.clone(),
                at,
            };
            observe_in(store, tx, &me, scoring).await?;
        }
        SubjectKind::Conversion => {
            // The referee as their signup showed them, where the conversion says less.
            if let Some(known) = store.known_referee(tx, &input.referee_id).await? {
                if !e.email.known {
                    e.email = known.email;
                }
                fill(&mut email_key, known.email_key);
                fill(&mut e.name, known.name);
                fill(&mut e.ip_key, known.ip_key);
                fill(&mut e.device_key, known.device_key);
            }
            if !input.ip.is_empty() || !input.device_id.is_empty() {
                let me = Observation {
                    person_id: input.referee_id.clone(),
                    role: REFEREE,
                    email: String::new(),
                    ip: input.ip.clone(),
                    device_id: input.device_id.clone(),
                    at,
                };
                observe_in(store, tx, &me, scoring).await?;
            }
        }
    }
    // The ring signal counts the larger of the referee's and the referrer's rings; the
    // referrer's windows read both clusters with them.
    let referrer_counts = input.kind != SubjectKind::Invitation && !input.referrer_id.is_empty();
    let (mut ring, theirs) = if referrer_counts {
        referral_windows_in(store, tx, scoring, &mut e, &email_key, &ring_person).await?
    } else {
        store.clusters_of(tx, &ring_person, "").await?
    };
    if let Some(t) = theirs
        && ring.as_ref().is_none_or(|r| t.size > r.size)
    {
        ring_person = input.referrer_id.clone();
        ring = Some(t);
    }
    e.cluster = ring.clone();
    let verdict = scoring.evaluate(&e);
    let snapshot = match &ring {
        Some(c) => Some(store.cluster_snapshot(tx, c, SNAPSHOT_MEMBERS).await?),
        None => None,
    };
    let now = ids::now();
    let case_id = (verdict.action != Action::Approve).then(ids::new_id);
    let row = AssessmentRow {
        id: input.assessment_id.clone(),
        subject_type: input.kind.as_str().to_string(),
        subject_id: input.subject_id.clone(),
        dedupe_key: (!input.dedupe_key.is_empty()).then(|| input.dedupe_key.clone()),
        referrer_id: input.referrer_id.clone(),
        referee_id: input.referee_id.clone(),
        score: verdict.score,
        level: verdict.level.as_str().to_string(),
        action: verdict.action.as_str().to_string(),
        signals_json: convert::signals_json(&verdict.signals)?,
        rules_json: convert::rules_json(&verdict.rules)?,
        cluster_json: convert::cluster_json(snapshot.as_ref())?,
        case_id: case_id.clone(),
        occurred_at: at,
        assessed_at: now,
    };
    store.insert_assessment(tx, &row).await?;
    if let Some(case_id) = &case_id {
        let cluster_member = if ring_person.is_empty() {
            &input.referrer_id
        } else {
            &ring_person
        };
        let case = NewCase {
            id: case_id,
            assessment: &row,
            cluster_member,
            created_at: now,
        };
        store.open_case(tx, &case).await?;
    }
    store.stage(tx, &events::fraud_assessed(&row)?).await?;
    Ok(Assessed { row, fresh: true })
}

/// Records an invitation's facts and gathers its windows (recipient, device, the referrer's
/// own e-mail) in one read.
async fn invitation_facts_in<S: Store>(
    store: &S,
    tx: &mut S::Tx,
    scoring: &Scoring,
    input: &AssessInput,
    email_key: &str,
    e: &mut Evidence,
) -> StoreResult<()> {
    let at = input.occurred_at;
    let fact = InvitationFact {
        id: if input.subject_id.is_empty() {
            &input.assessment_id
        } else {
            &input.subject_id
        },
        referrer_id: &input.referrer_id,
        recipient_key: &input.recipient_key,
        device_key: &e.device_key,
        occurred_at: at,
    };
    store.record_invitation(tx, &fact).await?;
    // The device an invitation comes from is the referrer's own.
    let me = Observation {
        person_id: input.referrer_id.clone(),
        role: REFERRER,
        email: String::new(),
        ip: input.ip.clone(),
        device_id: input.device_id.clone(),
        at,
    };
    observe_in(store, tx, &me, scoring).await?;
    let recipient_cap = domain::count_cap(scoring.recipient_referrer_limit);
    let device_cap = domain::count_cap(scoring.device_invitation_limit);
    // The recipient's e-mail key: from the address when the caller gave one, else the
    // event's recipient key (the same `lookup("email", ..)` when it is an address's).
    let own_email_key = if email_key.is_empty() {
        &input.recipient_key
    } else {
        email_key
    };
    let windows = InvitationWindows {
        referrer_id: &input.referrer_id,
        email_key: own_email_key,
        recipient_key: &input.recipient_key,
        recipient_since: at - domain::RECIPIENT_WINDOW,
        recipient_cap,
        device_key: &e.device_key,
        device_since: at - domain::DEVICE_WINDOW,
        device_cap,
        until: at,
    };
    let n = store.invitation_counts(tx, &windows).await?;
    e.recipient_known = !input.recipient_key.is_empty();
    e.recipient_referrers = Count::of(n.recipient_referrers, recipient_cap);
    e.device_invitations = Count::of(n.device_invitations, device_cap);
    e.device_referrers = Count::of(n.device_referrers, device_cap);
    e.referrer_match.same_email = n.own_email > 0;
    Ok(())
}

/// The referrer's windows for a signup or conversion at `e.occurred_at`: the counts, the
/// referrer-identity checks and the clusters of `referee` and the referrer in one read, the
/// recent referees in another.
async fn referral_windows_in<S: Store>(
    store: &S,
    tx: &mut S::Tx,
    scoring: &Scoring,
    e: &mut Evidence,
    email_key: &str,
    referee: &str,
) -> StoreResult<(Option<domain::ClusterSize>, Option<domain::ClusterSize>)> {
    let at = e.occurred_at;
    let velocity_cap = domain::count_cap(scoring.velocity_limit);
    let ip_cap = domain::count_cap(scoring.ip_cluster_min);
    let windows = ReferralWindows {
        referrer_id: &e.referrer_id,
        referee,
        email_key,
        ip_key: &e.ip_key,
        device_key: &e.device_key,
        velocity_since: at - domain::VELOCITY_WINDOW,
        velocity_cap,
        same_ip_since: at - domain::REFEREE_WINDOW,
        same_ip_cap: ip_cap,
        until: at,
    };
    let n = store.referral_counts(tx, &windows).await?;
    e.signups_24h = Count::of(n.signups, velocity_cap);
    e.same_ip_referees = Count::of(n.same_ip, ip_cap);
    e.referrer_match = ReferrerMatch {
        same_email: n.own_email > 0,
        same_device: n.own_device > 0,
    };
    e.peers = store
        .recent_referees(
            tx,
            &e.referrer_id,
            at - domain::REFEREE_WINDOW,
            at,
            domain::PEER_LIMIT,
        )
        .await?;
    Ok((n.referee_cluster, n.referrer_cluster))
}

/// Takes `known` where the caller said nothing.
fn fill(slot: &mut String, known: String) {
    if slot.is_empty() {
        *slot = known;
    }
}

/// An invitation to assess, validated.
pub struct InvitationQuestion {
    pub invitation_id: String,
    pub referrer_id: String,
    /// The recipient's normalised e-mail, or empty when unknown.
    pub email: String,
    /// The recipient's lookup key (see [`identity::recipient_contact`]).
    pub recipient_key: String,
    pub ip: String,
    pub device_id: String,
    pub occurred_at: DateTime<Utc>,
}

/// An invitation is asked about once per invitation id.
pub fn invitation_input(q: InvitationQuestion) -> AssessInput {
    AssessInput {
        assessment_id: ids::new_id(),
        kind: SubjectKind::Invitation,
        subject_id: q.invitation_id.clone(),
        dedupe_key: q.invitation_id,
        referrer_id: q.referrer_id,
        referee_id: String::new(),
        email: q.email,
        name: String::new(),
        ip: q.ip,
        device_id: q.device_id,
        recipient_key: q.recipient_key,
        occurred_at: q.occurred_at,
        click_at: None,
    }
}

/// A signup to assess, validated (from the RPC or from invite-svc's event log).
pub struct SignupQuestion {
    pub signup_id: String,
    pub user_id: String,
    pub referrer_id: String,
    /// Normalised.
    pub email: String,
    /// Normalised.
    pub name: String,
    pub ip: String,
    pub device_id: String,
    pub occurred_at: DateTime<Utc>,
    pub click_at: Option<DateTime<Utc>>,
}

/// A signup is asked about once per user: a second question returns the first answer, and
/// an assessment of a signup is found by its user.
pub fn signup_dedupe_key(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// A signup is asked about once per user: a second question returns the first answer.
pub fn signup_input(q: SignupQuestion) -> AssessInput {
    AssessInput {
        assessment_id: ids::new_id(),
        kind: SubjectKind::Signup,
        dedupe_key: signup_dedupe_key(&q.user_id),
        subject_id: q.signup_id,
        referrer_id: q.referrer_id,
        referee_id: q.user_id,
        email: q.email,
        name: q.name,
        ip: q.ip,
        device_id: q.device_id,
        recipient_key: String::new(),
        occurred_at: q.occurred_at,
        click_at: q.click_at,
    }
}

/// A conversion to assess, validated.
pub struct ConversionQuestion {
    pub conversion_id: String,
    pub user_id: String,
    pub referrer_id: String,
    pub ip: String,
    pub device_id: String,
    pub occurred_at: DateTime<Utc>,
    pub click_at: Option<DateTime<Utc>>,
}

/// A conversion is asked about once per conversion id.
pub fn conversion_input(q: ConversionQuestion) -> AssessInput {
    AssessInput {
        assessment_id: ids::new_id(),
        kind: SubjectKind::Conversion,
        dedupe_key: q.conversion_id.clone(),
        subject_id: q.conversion_id,
        referrer_id: q.referrer_id,
        referee_id: q.user_id,
        email: String::new(),
        name: String::new(),
        ip: q.ip,
        device_id: q.device_id,
        recipient_key: String::new(),
        occurred_at: q.occurred_at,
        click_at: q.click_at,
    }
}
