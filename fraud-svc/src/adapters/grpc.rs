//! The tonic FraudService: decode, authorize, validate, call one `app` use case, encode its
//! answer, map errors.
//!
//! Internal callers (the service role; admins too) assess. Cases are for admins: members
//! never read them (403), and only an admin resolves one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    audit::Actor,
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
    app::{
        assess_subject::{
            self, AssessInput, ConversionQuestion, InvitationQuestion, SignupQuestion, conversion_input,
            invitation_input, signup_input,
        },
        get_assessment::get_assessment,
        resolve_case::resolve_case,
        review_cases::{self, CaseView},
    },
    domain::{Scoring, SubjectKind, identity},
    store::Store,
    store::convert,
};

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
        let row = assess_subject::assess(&self.store, &self.scoring, input).await?;
        Ok(convert::assessment(&row)?)
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
        let recipient_key = identity::recipient_contact(&email, &req.recipient_phone)
            .map(|(kind, value)| self.store.pii().lookup(kind, value))
            .unwrap_or_default();
        self.assess(invitation_input(InvitationQuestion {
            invitation_id: req.invitation_id,
            referrer_id: req.referrer_id,
            email,
            recipient_key,
            ip,
            device_id: device,
            occurred_at: at,
        }))
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
        let page = review_cases::list_cases(&self.store, state, referrer, after.as_deref(), size).await?;
        let next_page_token = match &page.next_after {
            Some(last) => paging::encode_token(last),
            // The last page: an empty token says no more.
            None => String::new(),
        };
        Ok(ListCasesResponse {
            cases: page.cases.iter().map(case).collect::<ApiResult<_>>()?,
            next_page_token,
        })
    }

    pub async fn get_case_as(&self, p: &Principal, req: GetCaseRequest) -> ApiResult<Case> {
        p.require_admin()?;
        let mut v = Violations::default();
        check_id(&mut v, &req.id, "id", true);
        v.into_result()?;
        case(&review_cases::get_case(&self.store, &req.id).await?)
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
        let row = get_assessment(&self.store, kind, &req.subject_id).await?;
        Ok(convert::assessment(&row)?)
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
        let view = resolve_case(&self.store, actor, &req.id, decision, req.note.trim()).await?;
        case(&view)
    }
}

/// A case as the API shows it.
fn case(v: &CaseView) -> ApiResult<Case> {
    Ok(convert::case(&v.case, v.assessment.as_ref(), v.cluster.as_ref())?)
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
