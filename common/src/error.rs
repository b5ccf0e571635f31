//! Domain errors and the one place that turns them into `tonic::Status` with rich details
//! (google.rpc.BadRequest field violations naming the JSON field, ErrorInfo, RetryInfo).

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `ErrorInfo.domain` of every error we raise.
pub const ERROR_DOMAIN: &str = "referral-mesh";

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", .0.summary())]
    Invalid(Violations),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    AlreadyExists {
        message: String,
        reason: &'static str,
        metadata: HashMap<String, String>,
    },
    #[error("{0}")]
    PermissionDenied(String),
    /// Refused by a rule; the rules that fired travel as ErrorInfo metadata.
    #[error("{message}")]
    Refused {
        message: String,
        reason: &'static str,
        metadata: HashMap<String, String>,
    },
    #[error("{message}")]
    FailedPrecondition { message: String, reason: &'static str },
    #[error("{message}")]
    Aborted { message: String, reason: &'static str },
    #[error("{message}")]
    ResourceExhausted { message: String, retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::NotFound(format!("{what} {id} not found"))
    }

    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut v = Violations::default();
        v.add(field, description);
        ApiError::Invalid(v)
    }

    pub fn code(&self) -> Code {
        match self {
            ApiError::Invalid(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::PermissionDenied(_) | ApiError::Refused { .. } => Code::PermissionDenied,
            ApiError::FailedPrecondition { .. } => Code::FailedPrecondition,
            ApiError::Aborted { .. } => Code::Aborted,
            ApiError::ResourceExhausted { .. } => Code::ResourceExhausted,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = e.code();
        match e {
            ApiError::Invalid(v) => {
                let summary = v.summary();
                let violations: Vec<FieldViolation> =
                    v.0.into_iter().map(|(f, d)| FieldViolation::new(f, d)).collect();
                Status::with_error_details(code, summary, ErrorDetails::with_bad_request(violations))
            }
            ApiError::AlreadyExists {
                message,
                reason,
                metadata,
            }
            | ApiError::Refused {
                message,
                reason,
                metadata,
            } => Status::with_error_details(
                code,
                message,
                ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
            ),
            ApiError::FailedPrecondition { message, reason } | ApiError::Aborted { message, reason } => {
                Status::with_error_details(
                    code,
                    message,
                    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
                )
            }
            ApiError::ResourceExhausted { message, retry_after } => {
                Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(retry_after)))
            }
            ApiError::Internal(err) => {
                tracing::error!(error = %format!("{err:#}"), "internal error");
                Status::internal("internal error")
            }
            other => Status::new(code, other.to_string()),
        }
    }
}

/// Field-level problems of one request, each naming the JSON (lowerCamelCase) field path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<(String, String)>);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push((field.to_string(), description.into()));
    }

    /// Adds a violation when `bad` holds.
    pub fn check(&mut self, bad: bool, field: &str, description: impl Into<String>) {
        if bad {
            self.add(field, description);
        }
    }

    /// A required text field.
    pub fn require(&mut self, value: &str, field: &str) {
        self.check(value.trim().is_empty(), field, "is required");
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same violations under a parent path, e.g. `invitations[3]`.
    pub fn prefixed(self, prefix: &str) -> Violations {
        Violations(
            self.0
                .into_iter()
                .map(|(f, d)| (format!("{prefix}.{f}"), d))
                .collect(),
        )
    }

    pub fn summary(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(f, d)| format!("{f}: {d}")).collect();
        format!("invalid request: {}", parts.join("; "))
    }

    pub fn into_result(self) -> ApiResult<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self))
        }
    }
}

/// Field violations of a `Status`, for callers that want them back (batch items, tests).
pub fn violations_of(status: &Status) -> Vec<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        // No BadRequest detail: the status names no field.
        .unwrap_or_default()
}

/// `(reason, metadata)` of a `Status`'s ErrorInfo, if any.
pub fn error_info_of(status: &Status) -> Option<(String, HashMap<String, String>)> {
    status
        .get_error_details()
        .error_info()
        .map(|i| (i.reason.clone(), i.metadata.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_travel_in_the_status() {
        let mut v = Violations::default();
        v.require("", "referrerId");
        v.add("recipient.email", "is not an e-mail address");
        let status: Status = ApiError::Invalid(v.prefixed("invitations[2]")).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let back = violations_of(&status);
        assert_eq!(back[0].0, "invitations[2].referrerId");
        assert_eq!(back[1].1, "is not an e-mail address");
        assert!(status.message().contains("invitations[2].recipient.email"));
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status: Status = ApiError::Internal(anyhow::anyhow!("password=secret")).into();
        assert_eq!(status.message(), "internal error");
    }
}
