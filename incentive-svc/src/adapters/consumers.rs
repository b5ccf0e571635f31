//! incentive-svc's subscriptions: invite-svc's log (conversions to reward) and fraud-svc's
//! log (assessments and case resolutions that hold, release or void rewards). This adapter
//! only decodes each event into the [`Work`] it asks of the ledger:
//!
//! - `ConversionRecorded`, attributed and the referee's first paid one: a conversion to book,
//!   with its signup's fraud action.
//! - `FraudAssessed` of a CONVERSION or SIGNUP: a decision.
//! - `FraudResolved` (APPROVE or REJECT): a resolution.
//!
//! What the ledger does with them is `app::apply_events`.

use chrono::{DateTime, Utc};
use referral_common::{
    consumer::EventSink,
    ids::{self, from_ts},
};
use referral_proto::{
    common::v1::{Flow, FraudAction, PartyKind},
    events::v1::{ConversionRecorded, Event, FraudAssessed, FraudResolved, event::Payload},
    fraud::v1::SubjectType,
};

use crate::{
    app::apply_events,
    domain::rewards::Conversion,
    store::{Consumed, Decision, Store, Work},
};

/// The name incentive-svc reads other logs under.
pub const CONSUMER: &str = "incentive-svc";
pub const INVITE_SOURCE: &str = "invite";
pub const FRAUD_SOURCE: &str = "fraud";

/// Applies either log's events to the ledger.
pub struct LedgerSink<S> {
    store: S,
}

impl<S: Store> LedgerSink<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

impl<S: Store> EventSink for LedgerSink<S> {
    async fn last_offset(&self, source: &str) -> anyhow::Result<i64> {
        Ok(apply_events::last_offset(&self.store, source).await?)
    }

    async fn apply(&self, source: &str, events: Vec<Event>) -> anyhow::Result<()> {
        let items: Vec<Consumed> = events
            .iter()
            .map(|e| Consumed {
                event_id: e.id.clone(),
                offset: e.offset,
                work: work_for(e),
            })
            .collect();
        apply_events::apply(&self.store, source, items).await?;
        Ok(())
    }
}

/// What one event asks of the ledger (pure).
pub fn work_for(event: &Event) -> Work {
    let event_at = event.occurred_at.as_ref().and_then(from_ts);
    match &event.payload {
        Some(Payload::ConversionRecorded(c)) => conversion(c, event_at),
        Some(Payload::FraudAssessed(a)) => assessed(a, event_at),
        Some(Payload::FraudResolved(r)) => resolved(r, event_at),
        _ => Work::Nothing,
    }
}

/// The two sides of a referral edge.
fn sides(flow: Option<i32>) -> Option<(PartyKind, PartyKind)> {
    use PartyKind::*;
    Some(match Flow::try_from(flow?).ok()? {
        Flow::SupplierToCouple => (Supplier, Couple),
        Flow::CoupleToSupplier => (Couple, Supplier),
        Flow::SupplierToSupplier => (Supplier, Supplier),
        Flow::CoupleToCouple => (Couple, Couple),
        Flow::Unspecified => return None,
    })
}

fn conversion(c: &ConversionRecorded, event_at: Option<DateTime<Utc>>) -> Work {
    if !c.attributed || !c.first_paid || c.referrer_id.is_empty() || c.user_id.is_empty() {
        return Work::Nothing;
    }
    let Some(value) = &c.value else {
        return Work::Nothing;
    };
    let by_flow = sides(c.flow);
    let referrer_kind = match PartyKind::try_from(c.referrer_kind) {
        Ok(k @ (PartyKind::Supplier | PartyKind::Couple)) => k,
        _ => match by_flow {
            Some((k, _)) => k,
            None => return Work::Nothing,
        },
    };
    let referee_kind = by_flow.map(|(_, k)| k).unwrap_or(PartyKind::Couple);
    let signup_action = FraudAction::try_from(c.signup_action).unwrap_or(FraudAction::Unspecified);
    Work::Conversion(
        Box::new(Conversion {
            conversion_id: c.conversion_id.clone(),
            referee_id: c.user_id.clone(),
            referee_kind,
            referrer_id: c.referrer_id.clone(),
            referrer_kind,
            value_minor: value.amount_minor,
            currency: value.currency.clone(),
            at: ids::at_or(c.at.as_ref(), event_at),
        }),
        signup_action,
    )
}

fn subject_name(t: i32) -> Option<&'static str> {
    match SubjectType::try_from(t).ok()? {
        SubjectType::Conversion => Some("CONVERSION"),
        SubjectType::Signup => Some("SIGNUP"),
        _ => None,
    }
}

fn assessed(a: &FraudAssessed, event_at: Option<DateTime<Utc>>) -> Work {
    let Some(a) = &a.assessment else {
        return Work::Nothing;
    };
    let (Some(subject_type), Ok(action)) = (subject_name(a.subject_type), FraudAction::try_from(a.action))
    else {
        return Work::Nothing;
    };
    if a.subject_id.is_empty() || action == FraudAction::Unspecified {
        return Work::Nothing;
    }
    Work::Decision(Decision {
        subject_type: subject_type.into(),
        subject_id: a.subject_id.clone(),
        referee_id: a.referee_id.clone(),
        action,
        resolution: false,
        at: ids::at_or(a.assessed_at.as_ref(), event_at),
        origin: None,
    })
}

fn resolved(r: &FraudResolved, event_at: Option<DateTime<Utc>>) -> Work {
    let (Some(subject_type), Ok(action)) = (subject_name(r.subject_type), FraudAction::try_from(r.decision))
    else {
        return Work::Nothing;
    };
    if r.subject_id.is_empty() || !matches!(action, FraudAction::Approve | FraudAction::Reject) {
        return Work::Nothing;
    }
    Work::Decision(Decision {
        subject_type: subject_type.into(),
        subject_id: r.subject_id.clone(),
        referee_id: String::new(),
        action,
        resolution: true,
        at: event_at.unwrap_or_else(ids::now),
        origin: Some(r.resolved_by.clone()).filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use referral_common::{events::new_event, ids::to_ts};
    use referral_proto::{common::v1::Money, fraud::v1::Assessment};

    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn recorded(first_paid: bool, attributed: bool) -> Event {
        new_event(
            "invite",
            "c-1",
            at(0),
            Payload::ConversionRecorded(ConversionRecorded {
                conversion_id: "c-1".into(),
                user_id: "u-1".into(),
                value: Some(Money {
                    amount_minor: 20_000,
                    currency: "GBP".into(),
                }),
                attributed,
                first_paid,
                referrer_id: "sup-1".into(),
                flow: Some(Flow::SupplierToCouple as i32),
                at: Some(to_ts(at(1))),
                signup_action: FraudAction::Review as i32,
                ..Default::default()
            }),
        )
    }

    #[test]
    fn only_attributed_first_paid_conversions_are_rewarded() {
        match work_for(&recorded(true, true)) {
            Work::Conversion(c, action) => {
                assert_eq!(c.referrer_kind, PartyKind::Supplier, "from the flow");
                assert_eq!(c.referee_kind, PartyKind::Couple);
                assert_eq!((c.value_minor, c.at), (20_000, at(1)));
                assert_eq!(action, FraudAction::Review);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(work_for(&recorded(false, true)), Work::Nothing);
        assert_eq!(work_for(&recorded(true, false)), Work::Nothing);
    }

    #[test]
    fn assessments_and_resolutions_become_decisions() {
        let assessed = new_event(
            "fraud",
            "c-1",
            at(2),
            Payload::FraudAssessed(FraudAssessed {
                assessment: Some(Assessment {
                    subject_type: SubjectType::Conversion as i32,
                    subject_id: "c-1".into(),
                    referee_id: "u-1".into(),
                    action: FraudAction::Reject as i32,
                    ..Default::default()
                }),
            }),
        );
        match work_for(&assessed) {
            Work::Decision(d) => {
                assert_eq!(
                    (d.subject_type.as_str(), d.subject_id.as_str()),
                    ("CONVERSION", "c-1")
                );
                assert_eq!((d.action, d.resolution), (FraudAction::Reject, false));
            }
            other => panic!("{other:?}"),
        }
        let resolved = |subject: SubjectType| {
            new_event(
                "fraud",
                "case-1",
                at(3),
                Payload::FraudResolved(FraudResolved {
                    case_id: "case-1".into(),
                    subject_type: subject as i32,
                    subject_id: "s-1".into(),
                    decision: FraudAction::Approve as i32,
                    ..Default::default()
                }),
            )
        };
        assert!(
            matches!(work_for(&resolved(SubjectType::Signup)), Work::Decision(d) if d.resolution && d.at == at(3))
        );
        assert_eq!(work_for(&resolved(SubjectType::Invitation)), Work::Nothing);
    }
}
