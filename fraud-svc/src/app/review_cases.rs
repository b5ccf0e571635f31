//! Review cases as an admin reads them: each with its assessment and the ring its person
//! belongs to now.

use referral_common::{ApiError, ApiResult};

use crate::store::{AssessmentRow, CaseRow, ClusterView, Store};

/// Ring members listed per case in a list; a single case lists more.
pub const LIST_MEMBERS: i64 = 20;
pub const CASE_MEMBERS: i64 = 100;

/// A case with what it is about.
pub struct CaseView {
    pub case: CaseRow,
    pub assessment: Option<AssessmentRow>,
    /// The ring of the case's person now (not as assessed).
    pub cluster: Option<ClusterView>,
}

/// One page of cases.
pub struct CasePage {
    pub cases: Vec<CaseView>,
    /// The last case's id when more follow.
    pub next_after: Option<String>,
}

/// Cases in id (time) order after `after`, optionally of one state (OPEN, RESOLVED) and one
/// referrer, at most `size`.
pub async fn list_cases<S: Store>(
    store: &S,
    state: Option<&str>,
    referrer_id: Option<&str>,
    after: Option<&str>,
    size: u32,
) -> ApiResult<CasePage> {
    let mut rows = store
        .list_cases(state, referrer_id, after, i64::from(size) + 1)
        .await?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_after = match rows.last() {
        Some(last) if more => Some(last.id.clone()),
        _ => None,
    };
    let mut cases = Vec::with_capacity(rows.len());
    for row in rows {
        cases.push(case_view(store, row, LIST_MEMBERS).await?);
    }
    Ok(CasePage { cases, next_after })
}

pub async fn get_case<S: Store>(store: &S, id: &str) -> ApiResult<CaseView> {
    let row = store
        .get_case(id)
        .await?
        .ok_or_else(|| ApiError::not_found("case", id))?;
    case_view(store, row, CASE_MEMBERS).await
}

/// A case with its assessment and its person's ring (at most `members` members listed).
pub async fn case_view<S: Store>(store: &S, case: CaseRow, members: i64) -> ApiResult<CaseView> {
    let assessment = store.get_assessment(&case.assessment_id).await?;
    let cluster = store.cluster_of(&case.cluster_member, members).await?;
    Ok(CaseView {
        case,
        assessment,
        cluster,
    })
}
