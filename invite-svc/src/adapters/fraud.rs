//! The synchronous fraud check before an invitation is accepted. Without fraud-svc
//! configured everything is approved; configured but slow or down, the invitation is held
//! for review (PENDING_REVIEW) and fraud-svc assesses it later from the event log.

use std::time::Duration;

use referral_common::{auth::ServiceCredentials, ids::to_ts};
use referral_proto::{
    common::v1::{FraudAction, Risk, RiskLevel},
    fraud::v1::{
        AssessInvitationRequest, AssessSignupRequest, Assessment, fraud_service_client::FraudServiceClient,
    },
};
use tonic::{codegen::InterceptedService, transport::Channel};

use crate::domain::status::Screening;

#[derive(Clone)]
pub enum FraudGate {
    /// No fraud-svc: approve.
    Off,
    On {
        client: Box<FraudServiceClient<InterceptedService<Channel, ServiceCredentials>>>,
        deadline: Duration,
    },
}

impl FraudGate {
    pub fn connect(
        addr: &str,
        tls: &referral_common::tls::GrpcTls,
        credentials: ServiceCredentials,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let channel = referral_common::server::channel(addr, tls)?;
        Ok(FraudGate::On {
            client: Box::new(FraudServiceClient::with_interceptor(channel, credentials)),
            deadline,
        })
    }

    pub async fn assess_invitation(&self, req: AssessInvitationRequest) -> (Screening, Risk) {
        let FraudGate::On { client, deadline } = self else {
            return (Screening::Approved, approved());
        };
        let mut client = client.as_ref().clone();
        let answer = with_deadline(*deadline, client.assess_invitation(timed(req, *deadline))).await;
        screening(answer)
    }

    /// Assesses a signup before its attribution is answered; away or slow means REVIEW,
    /// assessed later from the event log.
    pub async fn assess_signup(&self, req: AssessSignupRequest) -> (Screening, Risk) {
        let FraudGate::On { client, deadline } = self else {
            return (Screening::Approved, approved());
        };
        let mut client = client.as_ref().clone();
        let answer = with_deadline(*deadline, client.assess_signup(timed(req, *deadline))).await;
        screening(answer)
    }
}

fn timed<T>(req: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(req);
    request.set_timeout(deadline);
    request
}

async fn with_deadline(
    deadline: Duration,
    call: impl Future<Output = Result<tonic::Response<Assessment>, tonic::Status>>,
) -> Option<Assessment> {
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(resp)) => Some(resp.into_inner()),
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "fraud-svc refused the assessment; holding for review");
            None
        }
        Err(_) => {
            tracing::warn!("fraud-svc did not answer in time; holding for review");
            None
        }
    }
}

fn screening(answer: Option<Assessment>) -> (Screening, Risk) {
    let Some(a) = answer else {
        return (Screening::Unavailable, pending());
    };
    let risk = crate::app::fraud_decisions::risk_of(&a);
    let screening = match FraudAction::try_from(a.action).unwrap_or(FraudAction::Review) {
        FraudAction::Approve => Screening::Approved,
        FraudAction::Reject => Screening::Rejected,
        _ => Screening::NeedsReview,
    };
    (screening, risk)
}

fn approved() -> Risk {
    Risk {
        score: 0.0,
        level: RiskLevel::Low as i32,
        action: FraudAction::Approve as i32,
        ..Default::default()
    }
}

fn pending() -> Risk {
    Risk {
        pending: true,
        action: FraudAction::Review as i32,
        ..Default::default()
    }
}

/// The timestamp fraud-svc sees for an invitation.
pub fn occurred_at(at: chrono::DateTime<chrono::Utc>) -> Option<referral_proto::Timestamp> {
    Some(to_ts(at))
}
