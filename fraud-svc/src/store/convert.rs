//! Stored rows and domain values <-> the referral.fraud.v1 messages.

use referral_common::ids::to_ts;
use referral_proto::{
    common::v1::{FraudAction, RiskLevel, Rule, Signal},
    fraud::v1::{Assessment, Case, CaseState, Cluster, ClusterMember, Resolution, SubjectType},
};

use crate::{
    domain::{self, Action, Level, SubjectKind},
    store::{AssessmentRow, CaseRow, ClusterView, StoreError},
};

pub fn subject_type(kind: SubjectKind) -> SubjectType {
    match kind {
        SubjectKind::Invitation => SubjectType::Invitation,
        SubjectKind::Signup => SubjectType::Signup,
        SubjectKind::Conversion => SubjectType::Conversion,
    }
}

fn subject_type_of(name: &str) -> SubjectType {
    SubjectKind::parse(name)
        .map(subject_type)
        .unwrap_or(SubjectType::Unspecified)
}

pub fn level(level: Level) -> RiskLevel {
    match level {
        Level::Low => RiskLevel::Low,
        Level::Medium => RiskLevel::Medium,
        Level::High => RiskLevel::High,
    }
}

fn level_of(name: &str) -> RiskLevel {
    RiskLevel::from_str_name(name).unwrap_or(RiskLevel::Unspecified)
}

pub fn action(action: Action) -> FraudAction {
    match action {
        Action::Approve => FraudAction::Approve,
        Action::Review => FraudAction::Review,
        Action::Reject => FraudAction::Reject,
    }
}

fn action_of(name: &str) -> FraudAction {
    FraudAction::from_str_name(name).unwrap_or(FraudAction::Unspecified)
}

pub fn signal(s: &domain::Signal) -> Signal {
    Signal {
        name: s.name.to_string(),
        value: s.value,
        threshold: s.threshold,
        weight: s.weight,
        triggered: s.triggered,
        detail: s.detail.clone(),
    }
}

pub fn rule(r: &domain::RuleHit) -> Rule {
    Rule {
        name: r.name.to_string(),
        detail: r.detail.clone(),
    }
}

/// Signals and rules as stored (their proto3 JSON).
pub fn signals_json(signals: &[domain::Signal]) -> Result<String, StoreError> {
    let list: Vec<Signal> = signals.iter().map(signal).collect();
    serde_json::to_string(&list).map_err(|e| StoreError::Encoding(e.to_string()))
}

pub fn rules_json(rules: &[domain::RuleHit]) -> Result<String, StoreError> {
    let list: Vec<Rule> = rules.iter().map(rule).collect();
    serde_json::to_string(&list).map_err(|e| StoreError::Encoding(e.to_string()))
}

pub fn cluster(view: &ClusterView) -> Cluster {
    Cluster {
        id: view.id.clone(),
        size: i32::try_from(view.size).unwrap_or(i32::MAX),
        members: view
            .members
            .iter()
            .map(|(id, role)| ClusterMember {
                id: id.clone(),
                role: role.clone(),
            })
            .collect(),
        links: view.links.clone(),
    }
}

pub fn cluster_json(view: Option<&ClusterView>) -> Result<String, StoreError> {
    match view {
        None => Ok(String::new()),
        Some(v) => serde_json::to_string(&cluster(v)).map_err(|e| StoreError::Encoding(e.to_string())),
    }
}

/// The stored assessment as the API shows it. Its JSON is our own, written with the row; one
/// that does not read back is an error, not an answer without signals.
pub fn assessment(row: &AssessmentRow) -> Result<Assessment, StoreError> {
    let unreadable = |column: &str, e: serde_json::Error| {
        StoreError::Encoding(format!("assessment {}: {column}: {e}", row.id))
    };
    Ok(Assessment {
        id: row.id.clone(),
        subject_type: subject_type_of(&row.subject_type) as i32,
        subject_id: row.subject_id.clone(),
        score: row.score,
        level: level_of(&row.level) as i32,
        action: action_of(&row.action) as i32,
        signals: serde_json::from_str(&row.signals_json).map_err(|e| unreadable("signals_json", e))?,
        rules: serde_json::from_str(&row.rules_json).map_err(|e| unreadable("rules_json", e))?,
        // No case (APPROVE): proto3's empty string.
        case_id: row.case_id.clone().unwrap_or_default(),
        cluster: if row.cluster_json.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&row.cluster_json).map_err(|e| unreadable("cluster_json", e))?)
        },
        referrer_id: row.referrer_id.clone(),
        assessed_at: Some(to_ts(row.assessed_at)),
        referee_id: row.referee_id.clone(),
    })
}

pub fn case(
    row: &CaseRow,
    assessment: Option<&AssessmentRow>,
    cluster_now: Option<&ClusterView>,
) -> Result<Case, StoreError> {
    let resolution = (row.state == "RESOLVED").then(|| Resolution {
        decision: action_of(&row.decision) as i32,
        note: row.note.clone(),
        resolved_by: row.resolved_by.clone(),
        resolved_at: row.resolved_at.map(to_ts),
    });
    Ok(Case {
        id: row.id.clone(),
        state: CaseState::from_str_name(&row.state).unwrap_or(CaseState::Unspecified) as i32,
        subject_type: subject_type_of(&row.subject_type) as i32,
        subject_id: row.subject_id.clone(),
        referrer_id: row.referrer_id.clone(),
        referee_id: row.referee_id.clone(),
        assessment: assessment.map(self::assessment).transpose()?,
        cluster: cluster_now.map(cluster),
        resolution,
        created_at: Some(to_ts(row.created_at)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_by_name() {
        assert_eq!(level_of("MEDIUM"), RiskLevel::Medium);
        assert_eq!(action_of("REJECT"), FraudAction::Reject);
        assert_eq!(action_of("bogus"), FraudAction::Unspecified);
        assert_eq!(subject_type_of("CONVERSION"), SubjectType::Conversion);
    }

    #[test]
    fn an_assessment_whose_json_does_not_read_back_is_an_error() {
        let row = AssessmentRow {
            id: "a-1".into(),
            subject_type: "SIGNUP".into(),
            subject_id: "s-1".into(),
            dedupe_key: None,
            referrer_id: "r".into(),
            referee_id: "u".into(),
            score: 0.0,
            level: "LOW".into(),
            action: "APPROVE".into(),
            signals_json: "[]".into(),
            rules_json: "[]".into(),
            cluster_json: String::new(),
            case_id: None,
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            assessed_at: chrono::DateTime::UNIX_EPOCH,
        };
        assert!(assessment(&row).is_ok());
        let broken = AssessmentRow {
            signals_json: "{not json".into(),
            ..row
        };
        let e = assessment(&broken).unwrap_err().to_string();
        assert!(e.contains("a-1") && e.contains("signals_json"), "{e}");
    }

    #[test]
    fn signals_round_trip_through_json() {
        let s = domain::signals::velocity(domain::Count::exact(11), 10, 0.3);
        let json = signals_json(std::slice::from_ref(&s)).unwrap();
        let back: Vec<Signal> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![signal(&s)]);
    }
}
