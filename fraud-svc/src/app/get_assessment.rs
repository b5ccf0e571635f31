//! The assessment of a subject, found by the key its question was asked with: a signup by its
//! user, an invitation or conversion by its id.

use referral_common::{ApiError, ApiResult};

use crate::{
    app::assess_subject::signup_dedupe_key,
    domain::SubjectKind,
    store::{AssessmentRow, Store},
};

pub async fn get_assessment<S: Store>(
    store: &S,
    kind: SubjectKind,
    subject_id: &str,
) -> ApiResult<AssessmentRow> {
    let key = match kind {
        SubjectKind::Signup => signup_dedupe_key(subject_id),
        SubjectKind::Invitation | SubjectKind::Conversion => subject_id.to_string(),
    };
    store
        .find_assessment(kind, &key)
        .await?
        .ok_or_else(|| ApiError::not_found("assessment", subject_id))
}
