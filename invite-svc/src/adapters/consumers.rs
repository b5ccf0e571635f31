//! invite-svc consumes fraud-svc's log: decisions on invitations held for review (fraud-svc
//! was away, or a reviewer resolved a case) and on signups assessed after the fact.

use referral_common::consumer::EventSink;
use referral_proto::{
    common::v1::FraudAction,
    events::v1::{Event, event::Payload},
    fraud::v1::SubjectType,
};

use crate::{
    app::fraud_decisions,
    domain::review::Decision,
    store::{FraudOutcome, FraudRisk, Store},
};

pub struct FraudSink<S> {
    store: S,
}

impl<S: Store> FraudSink<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

impl<S: Store> EventSink for FraudSink<S> {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        Ok(fraud_decisions::resume_offset(&self.store, source).await?)
    }

    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        let Some(last) = events.last().map(|e| e.offset) else {
            return Ok(());
        };
        let outcomes = events.iter().map(|e| (e.id.clone(), outcome_of(e))).collect();
        fraud_decisions::apply_fraud_decisions(&self.store, source, last, outcomes).await?;
        Ok(())
    }
}

fn decision(action: i32) -> Decision {
    Decision::from_action(
        FraudAction::try_from(action)
            .unwrap_or(FraudAction::Review)
            .as_str_name(),
    )
}

/// What an event of fraud-svc's log means here (None: nothing for invite-svc).
pub fn outcome_of(event: &Event) -> Option<FraudOutcome> {
    match event.payload.as_ref()? {
        Payload::FraudAssessed(assessed) => {
            let a = assessed.assessment.as_ref()?;
            let (decision, risk) = (
                decision(a.action),
                FraudRisk::Assessed(fraud_decisions::risk_of(a)),
            );
            match SubjectType::try_from(a.subject_type).ok()? {
                SubjectType::Invitation if !a.subject_id.is_empty() => Some(FraudOutcome::Invitation {
                    invitation_id: a.subject_id.clone(),
                    decision,
                    risk,
                }),
                SubjectType::Signup if !a.subject_id.is_empty() => Some(FraudOutcome::Signup {
                    signup_id: a.subject_id.clone(),
                    decision,
                    risk,
                }),
                _ => None,
            }
        }
        Payload::FraudResolved(r) => {
            let risk = FraudRisk::Resolved {
                action: r.decision,
                case_id: r.case_id.clone(),
            };
            match SubjectType::try_from(r.subject_type).ok()? {
                SubjectType::Invitation => Some(FraudOutcome::Invitation {
                    invitation_id: r.subject_id.clone(),
                    decision: decision(r.decision),
                    risk,
                }),
                SubjectType::Signup => Some(FraudOutcome::Signup {
                    signup_id: r.subject_id.clone(),
                    decision: decision(r.decision),
                    risk,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}
