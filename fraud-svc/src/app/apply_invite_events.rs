//! Apply invite-svc's events: what each of them does in fraud-svc.
//!
//! - `InvitationCreated` with status PENDING_REVIEW: fraud-svc was away when it was created
//!   (it never answers REVIEW for an invitation), so it is assessed now with the hard rules
//!   and a `FraudAssessed` (subject INVITATION) is emitted. One already assessed under its
//!   id is not assessed again.
//! - `SignupRecorded`: the signup's IP and device are recorded (rings, self-referral); one
//!   with a referrer whose risk is pending or absent is assessed now (`FraudAssessed`,
//!   subject SIGNUP). A signup already assessed synchronously is not assessed again (one
//!   answer per user).
//! - `ConversionRecorded` that is attributed: assessed (`FraudAssessed`, subject CONVERSION),
//!   conversion speed measured from its `click_at`.
//!
//! Each batch is applied in one transaction with the new offset and the ids of the events
//! applied (duplicates dropped by id).

use chrono::{DateTime, Utc};
use referral_common::ids::{self, from_ts};
use referral_proto::{
    events::v1::{ConversionRecorded, Event, InvitationCreated, SignupRecorded, event::Payload},
    invite::v1::InvitationStatus,
};

use crate::{
    app::{
        assess_subject::{
            AssessInput, ConversionQuestion, InvitationQuestion, SignupQuestion, assess_in, conversion_input,
            invitation_input, signup_input,
        },
        observe_person::{Observation, observe_in},
    },
    domain::Scoring,
    store::{REFEREE, Store, StoreResult},
};

/// What one consumed event asks of fraud-svc.
#[derive(Debug, Clone)]
pub enum Work {
    Assess(Box<AssessInput>),
    Observe(Observation),
    /// Observe, then assess (a signup left pending while fraud-svc was away).
    ObserveAndAssess(Observation, Box<AssessInput>),
    Nothing,
}

/// A consumed event and what it asks.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub event_id: String,
    pub offset: i64,
    pub work: Work,
}

/// What a batch of consumed events did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub applied: u32,
    pub duplicates: u32,
    pub assessed: u32,
}

/// Where reading `source` resumes: the offset of its last applied batch (0 before any).
pub async fn last_offset<S: Store>(store: &S, source: &str) -> StoreResult<i64> {
    store.last_offset(source).await
}

/// Applies a batch of `source`'s events in one transaction with its new offset.
pub async fn apply<S: Store>(
    store: &S,
    scoring: &Scoring,
    source: &str,
    events: &[Event],
) -> anyhow::Result<()> {
    let items: Vec<Consumed> = events
        .iter()
        .map(|e| Consumed {
            event_id: e.id.clone(),
            offset: e.offset,
            work: work_for(e),
        })
        .collect();
    let summary = apply_batch(store, scoring, source, items).await?;
    if summary.assessed > 0 {
        metrics::counter!("fraud_assessed_from_events_total").increment(u64::from(summary.assessed));
        tracing::info!(source, assessed = summary.assessed, "assessed from the event log");
    }
    Ok(())
}

/// Applies consumed events in one transaction (holding the assessment lock) with the new
/// offset of `source`, dropping events already applied (by id).
pub async fn apply_batch<S: Store>(
    store: &S,
    scoring: &Scoring,
    source: &str,
    items: Vec<Consumed>,
) -> StoreResult<ApplySummary> {
    let mut summary = ApplySummary::default();
    let Some(last) = items.iter().map(|i| i.offset).max() else {
        return Ok(summary);
    };
    let mut tx = store.begin_assessment().await?;
    for item in items {
        if !store.mark_consumed(&mut tx, &item.event_id).await? {
            summary.duplicates += 1;
            continue;
        }
        summary.applied += 1;
        match item.work {
            Work::Nothing => {}
            Work::Observe(o) => observe_in(store, &mut tx, &o, scoring).await?,
            Work::Assess(input) => {
                if assess_in(store, &mut tx, scoring, *input).await?.fresh {
                    summary.assessed += 1;
                }
            }
            Work::ObserveAndAssess(o, input) => {
                observe_in(store, &mut tx, &o, scoring).await?;
                if assess_in(store, &mut tx, scoring, *input).await?.fresh {
                    summary.assessed += 1;
                }
            }
        }
    }
    store.save_offset(&mut tx, source, last).await?;
    store.commit(tx, summary.assessed > 0).await?;
    Ok(summary)
}

/// What one of invite-svc's events asks of fraud-svc (pure).
pub fn work_for(event: &Event) -> Work {
    let event_at = event.occurred_at.as_ref().and_then(from_ts);
    match &event.payload {
        Some(Payload::InvitationCreated(created)) => invitation_created(created, event_at),
        Some(Payload::SignupRecorded(signup)) => signup_recorded(signup, event_at),
        Some(Payload::ConversionRecorded(conversion)) => conversion_recorded(conversion, event_at),
        _ => Work::Nothing,
    }
}

fn invitation_created(created: &InvitationCreated, event_at: Option<DateTime<Utc>>) -> Work {
    if created.status != InvitationStatus::PendingReview as i32 {
        return Work::Nothing;
    }
    let Some(facts) = &created.invitation else {
        return Work::Nothing;
    };
    if facts.invitation_id.is_empty() || facts.referrer_id.is_empty() {
        return Work::Nothing;
    }
    Work::Assess(Box::new(invitation_input(InvitationQuestion {
        invitation_id: facts.invitation_id.clone(),
        referrer_id: facts.referrer_id.clone(),
        // The event carries no address (only its pseudonymous key): the disposable and
        // self-referral-by-e-mail rules cannot apply here.
        email: String::new(),
        recipient_key: created.recipient_key.clone(),
        ip: created.ip.clone(),
        device_id: created.device_id.clone(),
        occurred_at: ids::at_or(facts.created_at.as_ref(), event_at),
    })))
}

fn signup_recorded(signup: &SignupRecorded, event_at: Option<DateTime<Utc>>) -> Work {
    if signup.user_id.is_empty() {
        return Work::Nothing;
    }
    let at = ids::at_or(signup.at.as_ref(), event_at);
    let pending = signup.risk.as_ref().is_none_or(|r| r.pending);
    if pending && !signup.referrer_id.is_empty() {
        // Assessing records the referee's IP and device as well.
        return Work::Assess(Box::new(signup_input(SignupQuestion {
            signup_id: signup.signup_id.clone(),
            user_id: signup.user_id.clone(),
            referrer_id: signup.referrer_id.clone(),
            email: String::new(),
            name: String::new(),
            ip: signup.ip.clone(),
            device_id: signup.device_id.clone(),
            occurred_at: at,
            click_at: None,
        })));
    }
    Work::Observe(Observation {
        person_id: signup.user_id.clone(),
        role: REFEREE,
        email: String::new(),
        ip: signup.ip.clone(),
        device_id: signup.device_id.clone(),
        at,
    })
}

fn conversion_recorded(conversion: &ConversionRecorded, event_at: Option<DateTime<Utc>>) -> Work {
    if !conversion.attributed || conversion.user_id.is_empty() {
        return Work::Nothing;
    }
    Work::Assess(Box::new(conversion_input(ConversionQuestion {
        conversion_id: conversion.conversion_id.clone(),
        user_id: conversion.user_id.clone(),
        referrer_id: conversion.referrer_id.clone(),
        ip: String::new(),
        device_id: String::new(),
        occurred_at: ids::at_or(conversion.at.as_ref(), event_at),
        click_at: conversion.click_at.as_ref().and_then(from_ts),
    })))
}

#[cfg(test)]
mod tests {
    use referral_common::{events::new_event, ids::to_ts};
    use referral_proto::{
        common::v1::{FraudAction, Risk},
        events::v1::InvitationFacts,
    };

    use super::*;
    use crate::domain::SubjectKind;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn created(status: InvitationStatus) -> Event {
        new_event(
            "invite",
            "inv-1",
            at(0),
            Payload::InvitationCreated(InvitationCreated {
                invitation: Some(InvitationFacts {
                    invitation_id: "inv-1".into(),
                    referrer_id: "ref-1".into(),
                    created_at: Some(to_ts(at(0))),
                    ..Default::default()
                }),
                status: status as i32,
                recipient_key: "abc".into(),
                ip: "203.0.113.7".into(),
                device_id: "dev-1".into(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn pending_invitations_are_assessed_others_ignored() {
        match work_for(&created(InvitationStatus::PendingReview)) {
            Work::Assess(input) => {
                assert_eq!(input.kind, SubjectKind::Invitation);
                assert_eq!(input.subject_id, "inv-1");
                assert_eq!(input.dedupe_key, "inv-1");
                assert_eq!(input.recipient_key, "abc");
                assert_eq!(input.occurred_at, at(0));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            work_for(&created(InvitationStatus::Scheduled)),
            Work::Nothing
        ));
    }

    fn signup(risk: Option<Risk>, referrer: &str) -> Event {
        new_event(
            "invite",
            "s-1",
            at(1),
            Payload::SignupRecorded(SignupRecorded {
                signup_id: "s-1".into(),
                user_id: "u-1".into(),
                attributed: !referrer.is_empty(),
                referrer_id: referrer.into(),
                risk,
                at: Some(to_ts(at(1))),
                ip: "203.0.113.7".into(),
                device_id: "dev-9".into(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn pending_or_unassessed_signups_are_assessed() {
        let pending = Risk {
            pending: true,
            action: FraudAction::Review as i32,
            ..Default::default()
        };
        for risk in [None, Some(pending)] {
            match work_for(&signup(risk, "ref-1")) {
                Work::Assess(input) => {
                    assert_eq!(input.kind, SubjectKind::Signup);
                    assert_eq!(input.dedupe_key, "user:u-1");
                    assert_eq!(
                        (input.ip.as_str(), input.device_id.as_str()),
                        ("203.0.113.7", "dev-9")
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let decided = Risk {
            action: FraudAction::Approve as i32,
            ..Default::default()
        };
        assert!(matches!(
            work_for(&signup(Some(decided), "ref-1")),
            Work::Observe(_)
        ));
        assert!(matches!(work_for(&signup(None, "")), Work::Observe(_)));
    }

    #[test]
    fn attributed_conversions_are_assessed_with_their_click() {
        let event = |attributed: bool| {
            new_event(
                "invite",
                "c-1",
                at(5),
                Payload::ConversionRecorded(ConversionRecorded {
                    conversion_id: "c-1".into(),
                    user_id: "u-1".into(),
                    attributed,
                    referrer_id: "ref-1".into(),
                    at: Some(to_ts(at(5))),
                    click_at: Some(to_ts(at(3))),
                    ..Default::default()
                }),
            )
        };
        match work_for(&event(true)) {
            Work::Assess(input) => {
                assert_eq!(input.kind, SubjectKind::Conversion);
                assert_eq!(input.subject_id, "c-1");
                assert_eq!(input.click_at, Some(at(3)));
                assert_eq!(input.occurred_at, at(5));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(work_for(&event(false)), Work::Nothing));
    }
}
