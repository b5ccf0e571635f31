//! What each consumed event changes in the rollups (pure): the event's facts, reduced to the
//! dimensions the rollups are keyed by. Enum values become their API names; missing ones ''.

use chrono::{DateTime, Utc};
use referral_common::ids::from_ts;
use referral_proto::{
    common::v1::{Flow, FraudAction, PartyKind, VendorType},
    events::v1::{Event, InvitationTransition, event::Payload},
    fraud::v1::SubjectType,
    invite::v1::{Channel, InvitationStatus},
};

/// Funnel stages in order; an invitation's stage is the furthest it reached (1 ..= 7).
/// RETAINED is not a stage an invitation holds: it is ACTIVATED less churn up to a day.
pub const STAGES: [&str; 8] = [
    "SENT",
    "DELIVERED",
    "OPENED",
    "CLICKED",
    "SIGNED_UP",
    "CONVERTED",
    "ACTIVATED",
    "RETAINED",
];
pub const STAGE_SIGNED_UP: i32 = 5;
pub const STAGE_CONVERTED: i32 = 6;
/// The referee of a converted invitation reported ACTIVATED (`POST /v1/activity`).
pub const STAGE_ACTIVATED: i32 = 7;

/// The funnel stage a status stands for (1 SENT .. 6 CONVERTED); 0 for the others.
pub fn stage_of(status: InvitationStatus) -> i32 {
    match status {
        InvitationStatus::Sent => 1,
        InvitationStatus::Delivered => 2,
        InvitationStatus::Opened => 3,
        InvitationStatus::Clicked => 4,
        InvitationStatus::SignedUp => STAGE_SIGNED_UP,
        InvitationStatus::Converted => STAGE_CONVERTED,
        _ => 0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationFact {
    pub invitation_id: String,
    /// Unix seconds of creation; its day is the invitation's cohort.
    pub created_at: i64,
    pub flow: String,
    pub referrer_id: String,
    pub referrer_kind: String,
    pub vendor_type: String,
    pub channel: String,
    pub template_id: String,
    pub template_variant: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupFact {
    pub user_id: String,
    pub signup_id: String,
    pub referrer_id: String,
    /// Empty for a signup through a code or click without an invitation.
    pub invitation_id: String,
    pub at: i64,
    pub invitation_created_at: Option<i64>,
    pub flow: String,
    pub referrer_kind: String,
    pub vendor_type: String,
    pub channel: String,
}

/// One touch a conversion's attribution credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub referrer_id: String,
    pub channel: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionFact {
    /// What a fraud rejection names it by; empty: it cannot be rejected later.
    pub conversion_id: String,
    pub user_id: String,
    pub referrer_id: String,
    pub invitation_id: String,
    pub at: i64,
    pub amount_minor: i64,
    pub currency: String,
    /// Only a user's first paid conversion counts as a conversion; every one is revenue.
    pub first_paid: bool,
    pub flow: String,
    pub referrer_kind: String,
    /// In time order; at least one (the attributed referrer's) when the event named none.
    pub touches: Vec<Touch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Invitation(InvitationFact),
    /// An invitation reached a funnel stage (1..=6).
    Stage {
        invitation_id: String,
        stage: i32,
    },
    Signup(SignupFact),
    Conversion(ConversionFact),
    /// A referrer earned a badge (incentive-svc's milestone rewards).
    Badge {
        referrer_id: String,
        badge: String,
    },
    /// Fraud review rejected an attributed signup: its referral no longer counts.
    RejectSignup {
        signup_id: String,
    },
    /// Fraud rejected a conversion (assessed REJECT, or its case resolved REJECT): it is not a
    /// conversion and its revenue is taken back.
    RejectConversion {
        conversion_id: String,
    },
    Nothing,
}

fn secs(ts: Option<&referral_proto::Timestamp>, fallback: i64) -> i64 {
    ts.and_then(from_ts)
        .map(|t: DateTime<Utc>| t.timestamp())
        .unwrap_or(fallback)
}

fn name_of<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> String {
    match E::try_from(value) {
        Ok(e) => {
            let n = name(e);
            if n.ends_with("_UNSPECIFIED") {
                String::new()
            } else {
                n.to_string()
            }
        }
        Err(_) => String::new(),
    }
}

pub fn flow_name(v: i32) -> String {
    name_of(v, |f: Flow| f.as_str_name())
}
pub fn kind_name(v: i32) -> String {
    name_of(v, |k: PartyKind| k.as_str_name())
}
pub fn vendor_name(v: Option<i32>) -> String {
    v.map(|v| name_of(v, |t: VendorType| t.as_str_name()))
        // No vendor type on the event: the rollups' empty dimension.
        .unwrap_or_default()
}
pub fn channel_name(v: i32) -> String {
    name_of(v, |c: Channel| c.as_str_name())
}

/// The referrer's side of a flow (`SUPPLIER_TO_COUPLE` -> `SUPPLIER`).
pub fn referrer_kind_of_flow(flow: &str) -> &'static str {
    if flow.starts_with("SUPPLIER_") {
        "SUPPLIER"
    } else if flow.starts_with("COUPLE_") {
        "COUPLE"
    } else {
        ""
    }
}

/// What one event changes (pure).
pub fn change_of(event: &Event) -> Change {
    let event_at = secs(event.occurred_at.as_ref(), 0);
    let Some(payload) = &event.payload else {
        return Change::Nothing;
    };
    match payload {
        Payload::InvitationCreated(created) => {
            let Some(f) = &created.invitation else {
                return Change::Nothing;
            };
            if f.invitation_id.is_empty() || f.referrer_id.is_empty() {
                return Change::Nothing;
            }
            let flow = flow_name(f.flow);
            let mut kind = kind_name(f.referrer_kind);
            if kind.is_empty() {
                kind = referrer_kind_of_flow(&flow).to_string();
            }
            Change::Invitation(InvitationFact {
                invitation_id: f.invitation_id.clone(),
                created_at: secs(f.created_at.as_ref(), event_at),
                flow,
                referrer_id: f.referrer_id.clone(),
                referrer_kind: kind,
                vendor_type: vendor_name(f.vendor_type),
                channel: channel_name(f.channel),
                template_id: f.template_id.clone(),
                template_variant: f.template_variant.clone(),
            })
        }
        Payload::InvitationSent(t)
        | Payload::InvitationDelivered(t)
        | Payload::InvitationOpened(t)
        | Payload::InvitationClicked(t)
        | Payload::InvitationSignedUp(t)
        | Payload::InvitationConverted(t) => transition(t),
        Payload::SignupRecorded(s) => {
            if !s.attributed || s.user_id.is_empty() || s.referrer_id.is_empty() {
                return Change::Nothing;
            }
            // No flow on the event: counted under the empty flow, as the rollups key it.
            let flow = s.flow.map(flow_name).unwrap_or_default();
            let mut kind = kind_name(s.referrer_kind);
            if kind.is_empty() {
                kind = referrer_kind_of_flow(&flow).to_string();
            }
            Change::Signup(SignupFact {
                user_id: s.user_id.clone(),
                signup_id: s.signup_id.clone(),
                referrer_id: s.referrer_id.clone(),
                invitation_id: s.invitation_id.clone(),
                at: secs(s.at.as_ref(), event_at),
                invitation_created_at: s
                    .invitation_created_at
                    .as_ref()
                    .and_then(from_ts)
                    .map(|t| t.timestamp()),
                flow,
                referrer_kind: kind,
                vendor_type: vendor_name(s.vendor_type),
                channel: channel_name(s.channel),
            })
        }
        Payload::ConversionRecorded(c) => {
            if !c.attributed || c.user_id.is_empty() || c.referrer_id.is_empty() {
                return Change::Nothing;
            }
            if c.signup_action == FraudAction::Reject as i32 {
                return Change::Nothing;
            }
            let at = secs(c.at.as_ref(), event_at);
            let (amount_minor, currency) = c
                .value
                .as_ref()
                .map(|m| (m.amount_minor, m.currency.to_ascii_uppercase()))
                .unwrap_or((0, String::new()));
            let mut touches: Vec<Touch> = c
                .touchpoints
                .iter()
                .filter(|t| !t.referrer_id.is_empty())
                .map(|t| Touch {
                    referrer_id: t.referrer_id.clone(),
                    channel: channel_name(t.channel),
                    at: secs(t.at.as_ref(), at),
                })
                .collect();
            touches.sort_by_key(|t| t.at);
            if touches.is_empty() {
                touches.push(Touch {
                    referrer_id: c.referrer_id.clone(),
                    channel: String::new(),
                    at,
                });
            }
            // No flow on the event: counted under the empty flow, as the rollups key it.
            let flow = c.flow.map(flow_name).unwrap_or_default();
            let mut kind = kind_name(c.referrer_kind);
            if kind.is_empty() {
                kind = referrer_kind_of_flow(&flow).to_string();
            }
            Change::Conversion(ConversionFact {
                conversion_id: c.conversion_id.clone(),
                user_id: c.user_id.clone(),
                referrer_id: c.referrer_id.clone(),
                invitation_id: c.invitation_id.clone(),
                at,
                amount_minor,
                currency,
                first_paid: c.first_paid,
                flow,
                referrer_kind: kind,
                touches,
            })
        }
        Payload::RewardGranted(g) => match g.entry.as_ref().and_then(|e| e.badge.map(|b| (e, b))) {
            Some((entry, badge)) if !entry.referrer_id.is_empty() => {
                let name = referral_proto::incentive::v1::Badge::try_from(badge)
                    .map(|b| b.as_str_name().to_string())
                    // An unknown badge number is no badge: dropped just below.
                    .unwrap_or_default();
                if name.is_empty() || name.ends_with("_UNSPECIFIED") {
                    Change::Nothing
                } else {
                    Change::Badge {
                        referrer_id: entry.referrer_id.clone(),
                        badge: name,
                    }
                }
            }
            _ => Change::Nothing,
        },
        Payload::FraudResolved(r) => rejection(r.subject_type, &r.subject_id, r.decision),
        Payload::FraudAssessed(a) => match &a.assessment {
            Some(a) => rejection(a.subject_type, &a.subject_id, a.action),
            None => Change::Nothing,
        },
        _ => Change::Nothing,
    }
}

/// A fraud decision (first assessment or case resolution): only a REJECT of a signup or a
/// conversion changes the rollups (a REJECTed one stays rejected, as its rewards stay voided).
fn rejection(subject_type: i32, subject_id: &str, action: i32) -> Change {
    if action != FraudAction::Reject as i32 || subject_id.is_empty() {
        return Change::Nothing;
    }
    match SubjectType::try_from(subject_type) {
        Ok(SubjectType::Signup) => Change::RejectSignup {
            signup_id: subject_id.into(),
        },
        Ok(SubjectType::Conversion) => Change::RejectConversion {
            conversion_id: subject_id.into(),
        },
        _ => Change::Nothing,
    }
}

fn transition(t: &InvitationTransition) -> Change {
    let stage = InvitationStatus::try_from(t.to).map(stage_of).unwrap_or(0);
    if stage == 0 || t.invitation_id.is_empty() {
        return Change::Nothing;
    }
    Change::Stage {
        invitation_id: t.invitation_id.clone(),
        stage,
    }
}

#[cfg(test)]
mod tests {
    use referral_common::events::new_event;
    use referral_proto::{
        events::v1::{FraudAssessed, FraudResolved},
        fraud::v1::Assessment,
    };

    use super::*;

    fn assessed(subject_type: SubjectType, action: FraudAction) -> Event {
        new_event(
            "fraud",
            "x",
            chrono::Utc::now(),
            Payload::FraudAssessed(FraudAssessed {
                assessment: Some(Assessment {
                    subject_type: subject_type as i32,
                    subject_id: "x-1".into(),
                    action: action as i32,
                    ..Default::default()
                }),
            }),
        )
    }

    fn resolved(subject_type: SubjectType, decision: FraudAction) -> Event {
        new_event(
            "fraud",
            "x",
            chrono::Utc::now(),
            Payload::FraudResolved(FraudResolved {
                subject_type: subject_type as i32,
                subject_id: "x-1".into(),
                decision: decision as i32,
                ..Default::default()
            }),
        )
    }

    #[test]
    fn only_a_reject_of_a_signup_or_a_conversion_changes_the_rollups() {
        let conversion = Change::RejectConversion {
            conversion_id: "x-1".into(),
        };
        let signup = Change::RejectSignup {
            signup_id: "x-1".into(),
        };
        for event in [
            assessed(SubjectType::Conversion, FraudAction::Reject),
            resolved(SubjectType::Conversion, FraudAction::Reject),
        ] {
            assert_eq!(change_of(&event), conversion);
        }
        for event in [
            assessed(SubjectType::Signup, FraudAction::Reject),
            resolved(SubjectType::Signup, FraudAction::Reject),
        ] {
            assert_eq!(change_of(&event), signup);
        }
        for event in [
            assessed(SubjectType::Conversion, FraudAction::Review),
            assessed(SubjectType::Conversion, FraudAction::Approve),
            resolved(SubjectType::Conversion, FraudAction::Approve),
            assessed(SubjectType::Invitation, FraudAction::Reject),
            resolved(SubjectType::Invitation, FraudAction::Reject),
        ] {
            assert_eq!(change_of(&event), Change::Nothing);
        }
    }
}
