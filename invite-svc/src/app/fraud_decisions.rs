//! fraud-svc decided after the fact (it was away, or a reviewer resolved a case): each
//! decision moves the invitation or signup it names (`domain::review`), and the consumer's
//! offset advances in the same transaction.

use referral_proto::{common::v1::Risk, fraud::v1::Assessment};

use crate::store::{FraudOutcome, Store, StoreResult};

/// Where the consumer of `source` resumes.
pub async fn resume_offset<S: Store>(store: &S, source: &str) -> StoreResult<i64> {
    store.consumer_offset(source).await
}

/// Applies a batch of decisions (None: an event that means nothing here) read up to `last`.
pub async fn apply_fraud_decisions<S: Store>(
    store: &S,
    source: &str,
    last: i64,
    outcomes: Vec<(String, Option<FraudOutcome>)>,
) -> StoreResult<()> {
    store.apply_fraud(source, last, outcomes).await
}

/// The risk invite-svc records from an assessment.
pub fn risk_of(a: &Assessment) -> Risk {
    Risk {
        score: a.score,
        level: a.level,
        action: a.action,
        signals: a.signals.clone(),
        rules: a.rules.clone(),
        pending: false,
        assessment_id: a.id.clone(),
        case_id: a.case_id.clone(),
    }
}
