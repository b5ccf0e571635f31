//! fraud-svc's resources: review cases and assessments (docs/api.md).

use axum::http::Method;
use referral_proto::fraud::v1 as fraud;

use super::route::{Body, Route, Rpc, api, unary};

const FRAUD: &str = "referral.fraud.v1.FraudService";

const FRAUD_TAG: &str = "Fraud review";

/// fraud-svc's routes.
pub fn routes() -> Vec<Route> {
    use Body::{None as NoBody, Whole};
    use Method as M;
    vec![
        api(
            M::GET,
            "/v1/fraud/cases",
            "Fraud review cases (admin)",
            FRAUD_TAG,
            Rpc::new(FRAUD, "ListCases", NoBody),
            unary!(fraud.list_cases(fraud::ListCasesRequest)),
        ),
        api(
            M::GET,
            "/v1/fraud/cases/{id}",
            "A fraud review case with its assessment and cluster (admin)",
            FRAUD_TAG,
            Rpc::new(FRAUD, "GetCase", NoBody),
            unary!(fraud.get_case(fraud::GetCaseRequest)),
        ),
        api(
            M::GET,
            "/v1/fraud/assessments",
            "How one subject was assessed: its score, every signal and rule (admin). \
            subjectType INVITATION | SIGNUP | CONVERSION; subjectId the invitation or conversion id, or a signup's user id",
            FRAUD_TAG,
            Rpc::new(FRAUD, "GetAssessment", NoBody),
            unary!(fraud.get_assessment(fraud::GetAssessmentRequest)),
        ),
        api(
            M::POST,
            "/v1/fraud/cases/{id}:resolve",
            "Resolve a case: APPROVE releases held rewards, REJECT voids them (admin)",
            FRAUD_TAG,
            Rpc::new(FRAUD, "ResolveCase", Whole),
            unary!(fraud.resolve_case(fraud::ResolveCaseRequest)),
        ),
    ]
}
