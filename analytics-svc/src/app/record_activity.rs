//! `POST /v1/activity`: the marketplace reports that a referred user ACTIVATED or CHURNED,
//! feeding the funnel's last two stages.
//!
//! analytics-svc owns it, written straight into its store rather than emitted as an
//! invite-svc event: activity is a reporting fact nothing but analytics reads, so an extra
//! hop and a second copy would buy nothing. The rows are source data (kept by `rebuild`),
//! and the rollups join them with conversions in whichever order the two arrive.

use chrono::{DateTime, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    auth::{Principal, Scope},
    ids::{from_ts, to_ts},
    input,
};
use referral_proto::analytics::v1::{Activity, ActivityKind as ApiKind, RecordActivityRequest};

use crate::store::{ActivityKind, Store};

/// Who may report activity — the one place that decides it: the marketplace's backend, a
/// service principal or an API key with the `activity:write` scope. Admins and members get
/// 403: activity is a fact from the product, not something a person asserts.
pub fn authorize(p: &Principal) -> ApiResult<()> {
    p.authorize(Scope::ActivityWrite, |_| {
        Err(ApiError::PermissionDenied(
            "activity is reported by the marketplace (a service, or an API key with activity:write)".into(),
        ))
    })
}

/// A report checked: its user, kind and instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub user_id: String,
    pub kind: ActivityKind,
    pub api_kind: ApiKind,
    pub at: DateTime<Utc>,
}

/// Every field checked, each problem naming its JSON field: `userId` an id, `kind`
/// ACTIVATED or CHURNED, `occurredAt` (default now) not before 1970 nor in the future.
pub fn check(req: &RecordActivityRequest, now: DateTime<Utc>) -> ApiResult<Checked> {
    let mut v = Violations::default();
    input::id(&mut v, &req.user_id, "userId");
    let api_kind = match ApiKind::try_from(req.kind) {
        Ok(k @ (ApiKind::Activated | ApiKind::Churned)) => k,
        _ => {
            v.add("kind", "must be ACTIVATED or CHURNED");
            ApiKind::Unspecified
        }
    };
    let at = match req.occurred_at.as_ref().map(from_ts) {
        None => now,
        Some(None) => {
            v.add("occurredAt", "is not a valid timestamp");
            now
        }
        Some(Some(at)) => {
            if at.timestamp() < 0 {
                v.add("occurredAt", "must not be before 1970-01-01");
            } else if at > now + input::FUTURE_SKEW {
                v.add("occurredAt", "must not be in the future");
            }
            at
        }
    };
    v.into_result()?;
    Ok(Checked {
        user_id: req.user_id.clone(),
        kind: if api_kind == ApiKind::Activated {
            ActivityKind::Activated
        } else {
            ActivityKind::Churned
        },
        api_kind,
        at,
    })
}

/// Authorizes, checks and records one report. Idempotent: a user's first report of each
/// kind counts, so the same report again (same user, kind and instant) changes nothing and
/// answers the same.
pub async fn record<S: Store>(
    store: &S,
    p: &Principal,
    req: &RecordActivityRequest,
    now: DateTime<Utc>,
) -> ApiResult<Activity> {
    authorize(p)?;
    let c = check(req, now)?;
    store
        .record_activity(&c.user_id, c.kind, c.at.timestamp())
        .await?;
    Ok(Activity {
        user_id: c.user_id,
        kind: c.api_kind as i32,
        occurred_at: Some(to_ts(c.at)),
    })
}

/// The fields a refused request names (tests of this crate's checks).
#[cfg(test)]
pub(crate) fn violated_fields<T: std::fmt::Debug>(r: ApiResult<T>) -> Vec<String> {
    match r {
        Err(ApiError::Invalid(v)) => v.0.into_iter().map(|(f, _)| f).collect(),
        other => panic!("expected field violations, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use referral_common::auth::{Role, Scopes};

    fn principal(role: Role) -> Principal {
        Principal::new("x", role, None)
    }

    #[test]
    fn only_a_service_or_a_scoped_key_reports_activity() {
        assert!(authorize(&principal(Role::Service)).is_ok());
        assert!(authorize(&Principal::api_key("k", Scopes::NONE.with(Scope::ActivityWrite))).is_ok());
        assert!(matches!(
            authorize(&Principal::api_key("k", Scopes::NONE.with(Scope::ReportsRead))),
            Err(ApiError::PermissionDenied(_))
        ));
        for role in [Role::Admin, Role::Member] {
            assert!(matches!(
                authorize(&principal(role)),
                Err(ApiError::PermissionDenied(_))
            ));
        }
    }

    #[test]
    fn bad_reports_name_their_field() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ok = RecordActivityRequest {
            user_id: "u-1".into(),
            kind: ApiKind::Activated as i32,
            occurred_at: None,
        };
        let c = check(&ok, now).unwrap();
        assert_eq!((c.kind, c.at), (ActivityKind::Activated, now));
        let ts = |secs: i64| {
            Some(referral_proto::Timestamp {
                seconds: secs,
                nanos: 0,
            })
        };
        for (req, field) in [
            (
                RecordActivityRequest {
                    user_id: String::new(),
                    ..ok.clone()
                },
                "userId",
            ),
            (
                RecordActivityRequest {
                    user_id: "a\u{0}b".into(),
                    ..ok.clone()
                },
                "userId",
            ),
            (
                RecordActivityRequest {
                    user_id: "u".repeat(1000),
                    ..ok.clone()
                },
                "userId",
            ),
            (
                RecordActivityRequest {
                    kind: 0,
                    ..ok.clone()
                },
                "kind",
            ),
            (
                RecordActivityRequest {
                    kind: 99,
                    ..ok.clone()
                },
                "kind",
            ),
            (
                RecordActivityRequest {
                    occurred_at: ts(-1),
                    ..ok.clone()
                },
                "occurredAt",
            ),
            (
                RecordActivityRequest {
                    occurred_at: ts(now.timestamp() + 3600),
                    ..ok.clone()
                },
                "occurredAt",
            ),
            (
                RecordActivityRequest {
                    occurred_at: ts(i64::MAX),
                    ..ok.clone()
                },
                "occurredAt",
            ),
        ] {
            assert_eq!(
                violated_fields(check(&req, now)),
                vec![field.to_string()],
                "{req:?}"
            );
        }
        let churn = RecordActivityRequest {
            kind: ApiKind::Churned as i32,
            occurred_at: ts(0),
            ..ok
        };
        assert_eq!(check(&churn, now).unwrap().kind, ActivityKind::Churned);
    }
}
