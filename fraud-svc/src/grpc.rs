//! The tonic FraudService: decode, authorize, validate, call domain + store, map errors.
//!
//! Internal callers (the service role; admins too) assess. Cases are for admins: members
//! never read them (403), and only an admin resolves one.

use std::{sync::Arc, time::Instant};

use chrono::{DateTime, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids::{self, from_ts},
    input, paging,
};
use referral_proto::{
    common::v1::FraudAction,
    fraud::v1::{
        AssessConversionRequest, AssessInvitationRequest, AssessSignupRequest, Assessment, Case, CaseState,
        GetAssessmentRequest, GetCaseRequest, ListCasesRequest, ListCasesResponse, ResolveCaseRequest,
        SubjectType, fraud_service_server::FraudService,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    convert,
    domain::{Scoring, SubjectKind, identity},
    store::{AssessInput, CaseRow, ResolveOutcome, Store},
};

/// Members listed per case in a list; a single case lists more.
const LIST_MEMBERS: i64 = 20;
const CASE_MEMBERS: i64 = 100;
const MAX_ID_LEN: usize = 128;
const MAX_NOTE_LEN: usize = 2000;

pub struct FraudApi<S> {
    store: S,
    scoring: Arc<Scoring>,
}

impl<S: Store> FraudApi<S> {
    pub fn new(store: S, scoring: Scoring) -> Self {
        Self {
            store,
            scoring: Arc::new(scoring),
        }
    }

    async fn assess(&self, input: AssessInput) -> ApiResult<Assessment> {
        let started = Instant::now();
        let kind = input.kind;
        let assessed = self.store.assess(input, &self.scoring).await?;
        metrics::histogram!("fraud_assess_seconds", "subject" => kind.as_str())
            .record(started.elapsed().as_secs_f64());
        if assessed.fresh {
            metrics::counter!("fraud_assessments_total", "subject" => kind.as_str(), "action" => assessed.row.action.clone())
                .increment(1);
        }
        Ok(convert::assessment(&assessed.row))
    }

    // ---- assessments -----------------------------------------------------------------

    pub async fn assess_invitation_as(
        &self,
        p: &Principal,
        req: AssessInvitationRequest,
    ) -> ApiResult<Assessment> {
        require_internal(p)?;
        let mut v = Violations::default();
        check_id(&mut v, &req.referrer_id, "referrerId", true);
        check_id(&mut v, &req.invitation_id, "invitationId", false);
        let email = email_field(&mut v, &req.recipient_email, "recipientEmail");
        input::line(&mut v, &req.recipient_phone, 40, "recipientPhone");
        let (ip, device) = client_fields(&mut v, &req.ip, &req.device_id);
        let at = instant(&mut v, req.occurred_at.as_ref(), "occurredAt");
        v.into_result()?;
        let recipient_key = identity::recipient_key(&email, &req.recipient_phone);
        self.assess(AssessInput {
            assessment_id: ids::new_id(),
            kind: SubjectKind::Invitation,
            subject_id: req.invitation_id.clone(),
            dedupe_key: req.invitation_id.clone(),
            referrer_id: req.referrer_id.clone(),
            referee_id: String::new(),
            email,
            name: String::new(),
            ip,
            device_id: device,
            recipient_key,
            occurred_at: at,
            click_at: None,
        })
        .await
    }

    pub async fn assess_signup_as(&self, p: &Principal, req: AssessSignupRequest) -> ApiResult<Assessment> {
        require_internal(p)?;
        let mut v = Violations::default();
        check_id(&mut v, &req.user_id, "userId", true);
        check_id(&mut v, &req.referrer_id, "referrerId", false);
        check_id(&mut v, &req.signup_id, "signupId", false);
        check_id(&mut v, &req.invitation_id, "invitationId", false);
        input::line(&mut v, &req.code, 64, "code");
        input::line(&mut v, &req.name, input::NAME_MAX, "name");
        let email = email_field(&mut v, &req.email, "email");
        let (ip, device) = client_fields(&mut v, &req.ip, &req.device_id);
        let at = instant(&mut v, req.occurred_at.as_ref(), "occurredAt");
        let click_at = optional_instant(&mut v, req.click_at.as_ref(), "clickAt");
        v.into_result()?;
        self.assess(signup_input(SignupQuestion {
            signup_id: req.signup_id,
            user_id: req.user_id,
            referrer_id: req.referrer_id,
            email,
            name: identity::normalize_name(&req.name),
            ip,
            device_id: device,
            occurred_at: at,
            click_at,
        }))
        .await
    }

    pub async fn assess_conversion_as(
        &self,
        p: &Principal,
        req: AssessConversionRequest,
    ) -> ApiResult<Assessment> {
        require_internal(p)?;
        let mut v = Violations::default();
        check_id(&mut v, &req.user_id, "userId", true);
        check_id(&mut v, &req.conversion_id, "conversionId", false);
        check_id(&mut v, &req.referrer_id, "referrerId", false);
        check_id(&mut v, &req.invitation_id, "invitationId", false);
        let (ip, device) = client_fields(&mut v, &req.ip, &req.device_id);
        let at = instant(&mut v, req.occurred_at.as_ref(), "occurredAt");
        let click_at = optional_instant(&mut v, req.click_at.as_ref(), "clickAt");
        v.into_result()?;
        self.assess(conversion_input(ConversionQuestion {
            conversion_id: req.conversion_id,
            user_id: req.user_id,
            referrer_id: req.referrer_id,
            ip,
            device_id: device,
            occurred_at: at,
            click_at,
        }))
        .await
    }

    // ---- cases -----------------------------------------------------------------------

    async fn case_view(&self, row: &CaseRow, members: i64) -> ApiResult<Case> {
        let assessment = self.store.get_assessment(&row.assessment_id).await?;
        let cluster = self.store.cluster_of(&row.cluster_member, members).await?;
        Ok(convert::case(row, assessment.as_ref(), cluster.as_ref()))
    }

    pub async fn list_cases_as(&self, p: &Principal, req: ListCasesRequest) -> ApiResult<ListCasesResponse> {
        p.require_admin()?;
        let state = match req.state {
            None => None,
            Some(s) => match CaseState::try_from(s) {
                Ok(CaseState::Unspecified) => None,
                Ok(CaseState::Open) => Some("OPEN"),
                Ok(CaseState::Resolved) => Some("RESOLVED"),
                Err(_) => return Err(ApiError::invalid("state", "must be OPEN or RESOLVED")),
            },
        };
        let mut v = Violations::default();
        check_id(&mut v, &req.referrer_id, "referrerId", false);
        v.into_result()?;
        let size = paging::page_size(req.page_size)?;
        let after = paging::decode_token(&req.page_token)?;
        let referrer = (!req.referrer_id.is_empty()).then_some(req.referrer_id.as_str());
        let mut rows = self
            .store
            .list_cases(state, referrer, after.as_deref(), i64::from(size) + 1)
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => paging::encode_token(&last.id),
            _ => String::new(),
        };
        let mut cases = Vec::with_capacity(rows.len());
        for row in &rows {
            cases.push(self.case_view(row, LIST_MEMBERS).await?);
        }
        Ok(ListCasesResponse {
            cases,
            next_page_token,
        })
    }

    pub async fn get_case_as(&self, p: &Principal, req: GetCaseRequest) -> ApiResult<Case> {
        p.require_admin()?;
        let mut v = Violations::default();
        check_id(&mut v, &req.id, "id", true);
        v.into_result()?;
        let row = self
            .store
            .get_case(&req.id)
            .await?
            .ok_or_else(|| ApiError::not_found("case", &req.id))?;
        self.case_view(&row, CASE_MEMBERS).await
    }

    /// Subjects are found by the key their question was asked with: a signup by its user,
    /// an invitation or conversion by its id.
    pub async fn get_assessment_as(&self, p: &Principal, req: GetAssessmentRequest) -> ApiResult<Assessment> {
        p.require_admin()?;
        let kind = match SubjectType::try_from(req.subject_type) {
            Ok(SubjectType::Invitation) => SubjectKind::Invitation,
            Ok(SubjectType::Signup) => SubjectKind::Signup,
            Ok(SubjectType::Conversion) => SubjectKind::Conversion,
            _ => {
                return Err(ApiError::invalid(
                    "subjectType",
                    "must be INVITATION, SIGNUP or CONVERSION",
                ));
            }
        };
        let mut v = Violations::default();
        check_id(&mut v, &req.subject_id, "subjectId", true);
        v.into_result()?;
        let key = match kind {
            SubjectKind::Signup => signup_dedupe_key(&req.subject_id),
            _ => req.subject_id.clone(),
        };
        let row = self
            .store
            .find_assessment(kind, &key)
            .await?
            .ok_or_else(|| ApiError::not_found("assessment", &req.subject_id))?;
        Ok(convert::assessment(&row))
    }

    pub async fn resolve_case_as(
        &self,
        p: &Principal,
        actor: &Actor,
        req: ResolveCaseRequest,
    ) -> ApiResult<Case> {
        if !p.is_admin() {
            return Err(ApiError::PermissionDenied(
                "resolving a case needs the admin role".into(),
            ));
        }
        let mut v = Violations::default();
        check_id(&mut v, &req.id, "id", true);
        let decision = match FraudAction::try_from(req.decision) {
            Ok(FraudAction::Approve) => "APPROVE",
            Ok(FraudAction::Reject) => "REJECT",
            _ => {
                v.add("decision", "must be APPROVE or REJECT");
                ""
            }
        };
        // Shown to reviewers and kept in the audit trail: bounded text, no terminal escapes.
        input::text(&mut v, &req.note, MAX_NOTE_LEN, "note");
        v.into_result()?;
        match self
            .store
            .resolve_case(
                &req.id,
                decision,
                req.note.trim(),
                &AuditEntry::new(actor, action::FRAUD_CASE_RESOLVE, "fraud_case", &req.id),
                ids::now(),
            )
            .await?
        {
            ResolveOutcome::NotFound => Err(ApiError::not_found("case", &req.id)),
            ResolveOutcome::AlreadyResolved(row) => Err(ApiError::FailedPrecondition {
                message: format!("case {} was already resolved as {}", row.id, row.decision),
                reason: "CASE_ALREADY_RESOLVED",
            }),
            ResolveOutcome::Resolved(row) => {
                metrics::counter!("fraud_cases_resolved_total", "decision" => decision).increment(1);
                self.case_view(&row, CASE_MEMBERS).await
            }
        }
    }
}

/// A signup to assess, validated (from the RPC or from invite-svc's event log).
pub struct SignupQuestion {
    pub signup_id: String,
    pub user_id: String,
    pub referrer_id: String,
    /// Normalised.
    pub email: String,
    /// Normalised.
    pub name: String,
    pub ip: String,
    pub device_id: String,
    pub occurred_at: DateTime<Utc>,
    pub click_at: Option<DateTime<Utc>>,
}

/// A signup is asked about once per user: a second question returns the first answer, and
/// an assessment of a signup is found by its user.
fn signup_dedupe_key(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// A signup is asked about once per user: a second question returns the first answer.
pub fn signup_input(q: SignupQuestion) -> AssessInput {
    AssessInput {
        assessment_id: ids::new_id(),
        kind: SubjectKind::Signup,
        dedupe_key: signup_dedupe_key(&q.user_id),
        subject_id: q.signup_id,
        referrer_id: q.referrer_id,
        referee_id: q.user_id,
        email: q.email,
        name: q.name,
        ip: q.ip,
        device_id: q.device_id,
        recipient_key: String::new(),
        occurred_at: q.occurred_at,
        click_at: q.click_at,
    }
}

/// A conversion to assess, validated.
pub struct ConversionQuestion {
    pub conversion_id: String,
    pub user_id: String,
    pub referrer_id: String,
    pub ip: String,
    pub device_id: String,
    pub occurred_at: DateTime<Utc>,
    pub click_at: Option<DateTime<Utc>>,
}

pub fn conversion_input(q: ConversionQuestion) -> AssessInput {
    AssessInput {
        assessment_id: ids::new_id(),
        kind: SubjectKind::Conversion,
        dedupe_key: q.conversion_id.clone(),
        subject_id: q.conversion_id,
        referrer_id: q.referrer_id,
        referee_id: q.user_id,
        email: String::new(),
        name: String::new(),
        ip: q.ip,
        device_id: q.device_id,
        recipient_key: String::new(),
        occurred_at: q.occurred_at,
        click_at: q.click_at,
    }
}

fn require_internal(p: &Principal) -> ApiResult<()> {
    if p.is_privileged() {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(
            "assessments are for internal callers (service role)".into(),
        ))
    }
}

fn check_id(v: &mut Violations, value: &str, field: &str, required: bool) {
    if value.trim().is_empty() {
        if required {
            v.add(field, "is required");
        }
    } else {
        // Characters, not bytes: the cap every other service (and /openapi.json) states.
        input::line(v, value, MAX_ID_LEN, field);
    }
}

fn check_len(v: &mut Violations, value: &str, max: usize, field: &str) {
    if value.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

/// A normalised e-mail, or `""` when none was given.
fn email_field(v: &mut Violations, value: &str, field: &str) -> String {
    if value.trim().is_empty() {
        return String::new();
    }
    if value.len() > 254 {
        v.add(field, "must be at most 254 characters");
        return String::new();
    }
    match identity::normalize_email(value) {
        Some(e) => e,
        None => {
            v.add(field, "is not an e-mail address");
            String::new()
        }
    }
}

fn client_fields(v: &mut Violations, ip: &str, device: &str) -> (String, String) {
    check_len(v, ip, 64, "ip");
    check_len(v, device, 200, "deviceId");
    (ip.trim().to_string(), device.trim().to_string())
}

/// `occurredAt`, defaulting to now.
fn instant(v: &mut Violations, ts: Option<&referral_proto::Timestamp>, field: &str) -> DateTime<Utc> {
    optional_instant(v, ts, field).unwrap_or_else(ids::now)
}

fn optional_instant(
    v: &mut Violations,
    ts: Option<&referral_proto::Timestamp>,
    field: &str,
) -> Option<DateTime<Utc>> {
    let ts = ts?;
    let at = from_ts(ts);
    if at.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    at
}

#[tonic::async_trait]
impl<S: Store> FraudService for FraudApi<S> {
    async fn assess_invitation(
        &self,
        req: Request<AssessInvitationRequest>,
    ) -> Result<Response<Assessment>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(
            self.assess_invitation_as(&p, req.into_inner()).await?,
        ))
    }

    async fn assess_signup(&self, req: Request<AssessSignupRequest>) -> Result<Response<Assessment>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(self.assess_signup_as(&p, req.into_inner()).await?))
    }

    async fn assess_conversion(
        &self,
        req: Request<AssessConversionRequest>,
    ) -> Result<Response<Assessment>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(
            self.assess_conversion_as(&p, req.into_inner()).await?,
        ))
    }

    async fn list_cases(
        &self,
        req: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(self.list_cases_as(&p, req.into_inner()).await?))
    }

    async fn get_case(&self, req: Request<GetCaseRequest>) -> Result<Response<Case>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(self.get_case_as(&p, req.into_inner()).await?))
    }

    async fn resolve_case(&self, req: Request<ResolveCaseRequest>) -> Result<Response<Case>, Status> {
        let p = Principal::of(&req)?;
        let actor = Actor::of(&req)?;
        Ok(Response::new(
            self.resolve_case_as(&p, &actor, req.into_inner()).await?,
        ))
    }

    async fn get_assessment(
        &self,
        req: Request<GetAssessmentRequest>,
    ) -> Result<Response<Assessment>, Status> {
        let p = Principal::of(&req)?;
        Ok(Response::new(self.get_assessment_as(&p, req.into_inner()).await?))
    }
}
