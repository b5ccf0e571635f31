//! fraud-svc's events: `FraudAssessed` for every assessment and `FraudResolved` for every
//! case resolution, built from stored rows.

use referral_common::events::new_event;
use referral_proto::{
    common::v1::FraudAction,
    events::v1::{Event, FraudAssessed, FraudResolved, event::Payload},
    fraud::v1::SubjectType,
};

use crate::{
    domain::SubjectKind,
    store::convert,
    store::{AssessmentRow, CaseRow, StoreError},
};

pub const SOURCE: &str = "fraud";

/// The aggregate is the subject (invitation, signup or conversion id), or the assessment
/// itself when the caller named no subject.
pub fn fraud_assessed(row: &AssessmentRow) -> Result<Event, StoreError> {
    let aggregate = if row.subject_id.is_empty() {
        &row.id
    } else {
        &row.subject_id
    };
    let payload = Payload::FraudAssessed(FraudAssessed {
        assessment: Some(convert::assessment(row)?),
    });
    Ok(new_event(SOURCE, aggregate, row.assessed_at, payload))
}

pub fn fraud_resolved(case: &CaseRow) -> Event {
    let payload = Payload::FraudResolved(FraudResolved {
        case_id: case.id.clone(),
        subject_type: SubjectKind::parse(&case.subject_type)
            .map(convert::subject_type)
            .unwrap_or(SubjectType::Unspecified) as i32,
        subject_id: case.subject_id.clone(),
        referrer_id: case.referrer_id.clone(),
        decision: FraudAction::from_str_name(&case.decision).unwrap_or(FraudAction::Unspecified) as i32,
        note: case.note.clone(),
        resolved_by: case.resolved_by.clone(),
    });
    let at = case.resolved_at.unwrap_or(case.created_at);
    new_event(SOURCE, &case.id, at, payload)
}
