//! The synchronous fraud check before an invitation is accepted. Without fraud-svc
//! configured everything is approved; configured but slow or down, the invitation is held
//! for review (PENDING_REVIEW) and fraud-svc assesses it later from the event log.

use std::time::Duration;

use referral_common::{auth::ServiceCredentials, ids::to_ts};
use referral_proto::{
    common::v1::{FraudAction, Risk, RiskLevel},
    fraud::v1::{AssessInvitationRequest, fraud_service_client::FraudServiceClient},
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
    pub fn connect(addr: &str, credentials: ServiceCredentials, deadline: Duration) -> anyhow::Result<Self> {
        let channel = referral_common::server::channel(addr)?;
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
        let mut request = tonic::Request::new(req);
        request.set_timeout(*deadline);
        match tokio::time::timeout(*deadline, client.assess_invitation(request)).await {
            Ok(Ok(resp)) => {
                let a = resp.into_inner();
                let risk = Risk {
                    score: a.score,
                    level: a.level,
                    action: a.action,
                    signals: a.signals,
                    rules: a.rules,
                    pending: false,
                    assessment_id: a.id,
                    case_id: a.case_id,
                };
                let screening = match FraudAction::try_from(a.action).unwrap_or(FraudAction::Review) {
                    FraudAction::Approve => Screening::Approved,
                    FraudAction::Reject => Screening::Rejected,
                    _ => Screening::NeedsReview,
                };
                (screening, risk)
            }
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "fraud-svc refused the assessment; holding for review");
                (Screening::Unavailable, pending())
            }
            Err(_) => {
                tracing::warn!("fraud-svc did not answer in time; holding for review");
                (Screening::Unavailable, pending())
            }
        }
    }
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
pub fn occurred_at(at: chrono::DateTime<chrono::Utc>) -> Option<pbjson_types::Timestamp> {
    Some(to_ts(at))
}
