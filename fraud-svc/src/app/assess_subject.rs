//! Assess a subject: an invitation, a signup or a conversion, asked by gRPC or found in
//! invite-svc's event log. A repeated question (same dedupe key) answers with the first
//! assessment; a REVIEW or REJECT opens a case; every fresh assessment is a `FraudAssessed`
//! event.

use std::time::Instant;

use chrono::{DateTime, Utc};
use referral_common::{ApiResult, ids};

use crate::{
    domain::{Scoring, SubjectKind},
    store::{AssessInput, AssessmentRow, Store},
};

/// Assesses one question in its own transaction, with the latency and outcome metrics of a
/// direct question.
pub async fn assess<S: Store>(store: &S, scoring: &Scoring, input: AssessInput) -> ApiResult<AssessmentRow> {
    let started = Instant::now();
    let kind = input.kind;
    let assessed = store.assess(input, scoring).await?;
    metrics::histogram!("fraud_assess_seconds", "subject" => kind.as_str())
        .record(started.elapsed().as_secs_f64());
    if assessed.fresh {
        metrics::counter!("fraud_assessments_total", "subject" => kind.as_str(), "action" => assessed.row.action.clone())
            .increment(1);
    }
    Ok(assessed.row)
}

/// An invitation to assess, validated.
pub struct InvitationQuestion {
    pub invitation_id: String,
    pub referrer_id: String,
    /// The recipient's normalised e-mail, or empty when unknown.
    pub email: String,
    /// The recipient's pseudonymous key.
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
