//! The tonic InviteService: decode, authorize, validate, call domain + store, map errors.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Datelike, Duration, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::{self, Principal, Scope},
    click_id::{self, ClickKeys},
    error::{error_info_of, violations_of},
    idempotency::Idempotency,
    ids::{self, from_ts},
    input, paging,
};
use referral_proto::{
    common::v1::{PartyKind as PbPartyKind, Risk, VendorType},
    fraud::v1::{AssessInvitationRequest, AssessSignupRequest},
    invite::v1::{
        self as pb, Attribution, BatchCreateInvitationsRequest, BatchCreateInvitationsResponse, BatchResult,
        CancelInvitationRequest, Click, ConversionResult, CreateInvitationRequest, CreateReferralCodeRequest,
        EmailWebhookRequest, EmailWebhookResponse, GetInvitationRequest, GetReferralCodeRequest,
        GetReferrerRequest, Invitation, ItemError, ListInvitationsRequest, ListInvitationsResponse,
        RecordClickRequest, RecordClicksRequest, RecordClicksResponse, RecordConversionRequest,
        RecordSignupRequest, ReferralCode, Referrer, ResolveReferralCodeRequest, ResolveReferralCodeResponse,
        SetReferrerTierRequest, invite_service_server::InviteService,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    clock::Clock,
    convert,
    domain::{
        attribution::{self, Candidates, Decision, NotAttributedReason, SignupFacts, Touch, TouchKind},
        click_ids::{self, ClickEvidence, RejectedClick},
        codes, contact,
        party::{self, PartyKind},
        quota::{self, QuotaConfig},
        review,
        status::{self, Channel, InvitationStatus},
        templates::Catalog,
        timing::{self, SendRules},
        webhooks::{self, WebhookError, WebhookSecrets},
    },
    fraud::{self, FraudGate},
    store::{
        ClickRow, CodeRow, CreateOutcome, InvitationRow, NewConversion, NewInvitation, SignupRow, Store,
        TransitionOutcome,
    },
};

/// Batch creates take at most this many items.
pub const MAX_BATCH: usize = 100;
/// The same referrer inviting the same recipient within this window is a duplicate.
const DUPLICATE_WINDOW_HOURS: i64 = 24;
const MAX_CODE_ATTEMPTS: usize = 5;

/// What the service needs besides its store.
pub struct Settings {
    pub public_url: String,
    pub default_landing_url: String,
    pub quotas: QuotaConfig,
    pub send_rules: SendRules,
    pub attribution_window_days: i64,
    /// Verify (and, for clicks recorded without an id, sign) click ids.
    pub click_keys: ClickKeys,
    pub default_timezone: chrono_tz::Tz,
    /// Where `optimize: true` aims (local weekday and hour).
    pub preferred_slot: (chrono::Weekday, u32),
    pub catalog: Arc<Catalog>,
    pub webhooks: WebhookSecrets,
    /// "Now" for scheduling (the system clock; tests move it).
    pub clock: Clock,
    /// Where a `landingUrl` may point (`LANDING_HOSTS`).
    pub landing_hosts: referral_common::landing::LandingHosts,
    /// The largest conversion value accepted (`MAX_AMOUNT_MINOR`).
    pub max_amount_minor: i64,
    /// How far ahead `sendAt` may be (`SEND_AT_HORIZON`).
    pub send_at_horizon: chrono::TimeDelta,
}

pub struct InviteApi<S> {
    store: S,
    settings: Arc<Settings>,
    fraud: FraudGate,
    idempotency: Idempotency,
}

impl<S: Store> InviteApi<S> {
    pub fn new(store: S, settings: Settings, fraud: FraudGate, idempotency: Idempotency) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
            fraud,
            idempotency,
        }
    }

    /// A create: authenticated, run at most once per Idempotency-Key, errors as `Status`.
    async fn create<Req, T, Fut>(
        &self,
        req: Request<Req>,
        method: &str,
        work: impl FnOnce(Principal, ClientContext, Req) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Req: prost::Message + Clone,
        T: prost::Message + Default,
        Fut: Future<Output = ApiResult<T>>,
    {
        let p = Principal::of(&req)?;
        let client = ClientContext::of(&req);
        let md = req.metadata().clone();
        let body = req.into_inner();
        let caller = p.sub.clone();
        let out = self
            .idempotency
            .run(&md, &caller, method, &body, async {
                Ok(work(p, client, body.clone()).await?)
            })
            .await?;
        Ok(Response::new(out))
    }

    fn qr_svg(&self, code: &str) -> String {
        let url = convert::code_url(&self.settings.public_url, code);
        match qrcode::QrCode::new(url.as_bytes()) {
            Ok(qr) => qr
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build(),
            Err(_) => String::new(),
        }
    }

    /// A landing URL: bounded, absolute http(s), and on an allowed host (no open redirect).
    fn check_landing_url(&self, v: &mut Violations, value: &str, field: &str) {
        if let Some(url) = input::url(v, value, field)
            && !self.settings.landing_hosts.allows(&url)
        {
            v.add(field, "must be on a host listed in LANDING_HOSTS");
        }
    }

    async fn code_response(&self, row: &CodeRow) -> ReferralCode {
        convert::referral_code(row, &self.settings.public_url, self.qr_svg(&row.code))
    }

    // ---- referral codes ------------------------------------------------------------

    async fn create_code(&self, p: &Principal, req: CreateReferralCodeRequest) -> ApiResult<ReferralCode> {
        let mut v = Violations::default();
        input::id(&mut v, &req.referrer_id, "referrerId");
        let kind = party_kind(&mut v, req.referrer_kind, "referrerKind");
        let vendor = vendor_type(&mut v, req.vendor_type, kind, "vendorType");
        if !req.landing_url.is_empty() {
            self.check_landing_url(&mut v, &req.landing_url, "landingUrl");
        }
        input::line(&mut v, &req.campaign_id, input::ID_MAX, "campaignId");
        v.into_result()?;
        p.require_self(&req.referrer_id, "referrerId")?;
        let kind = kind.ok_or_else(|| ApiError::invalid("referrerKind", "is required"))?;
        p.require_kind(kind.as_str(), "referrerKind")?;
        for _ in 0..MAX_CODE_ATTEMPTS {
            let row = CodeRow {
                code: codes::generate_code(kind, &mut rand::rng()),
                referrer_id: req.referrer_id.clone(),
                referrer_kind: kind.as_str().to_string(),
                vendor_type: vendor.clone(),
                campaign_id: req.campaign_id.clone(),
                landing_url: req.landing_url.clone(),
                invitation_id: None,
                clicks: 0,
                signups: 0,
                conversions: 0,
                created_at: ids::now(),
            };
            if self
                .store
                .insert_code(&row, &crate::events::code_created(&row))
                .await?
            {
                return Ok(self.code_response(&row).await);
            }
        }
        Err(ApiError::Unavailable(
            "could not find a free referral code; try again".into(),
        ))
    }

    async fn find_code(&self, raw: &str) -> ApiResult<CodeRow> {
        let code = codes::normalize_code(raw).map_err(|e| ApiError::invalid("code", e.to_string()))?;
        self.store
            .get_code(&code)
            .await?
            .ok_or_else(|| ApiError::not_found("referral code", &code))
    }

    // ---- invitations ---------------------------------------------------------------

    /// Creates one invitation, judged alone (the batch calls this per item).
    async fn create_one(
        &self,
        p: &Principal,
        req: CreateInvitationRequest,
        client: &ClientContext,
    ) -> ApiResult<Invitation> {
        let valid = self.validate_invitation(&req)?;
        // A key with invitations:write invites for any referrer (server to server).
        p.authorize(Scope::InvitationsWrite, |p| {
            p.require_self(&req.referrer_id, "referrerId")?;
            p.require_kind(valid.referrer_kind.as_str(), "referrerKind")
        })?;
        let backfill = backfill_instant(p, valid.occurred_at)?;
        let now = backfill.unwrap_or_else(|| self.settings.clock.now());
        let flow = party::flow(valid.referrer_kind, valid.referee_kind);
        let template = self
            .settings
            .catalog
            .choose(&req.template_id, flow, valid.vendor_type.as_deref())
            .map_err(|e| ApiError::invalid("templateId", e.to_string()))?;
        // The id exists before the assessment so the decision names its subject.
        let id = ids::new_id();
        let (screening, risk) = self
            .fraud
            .assess_invitation(AssessInvitationRequest {
                invitation_id: id.clone(),
                referrer_id: req.referrer_id.clone(),
                referrer_kind: req.referrer_kind,
                recipient_email: valid.email.clone(),
                recipient_phone: valid.phone.clone(),
                ip: client.ip.clone(),
                device_id: client.device_id.clone(),
                occurred_at: fraud::occurred_at(now),
            })
            .await;
        let mut initial = status::initial_status(screening, valid.channel);
        if backfill.is_some() && initial == InvitationStatus::Scheduled {
            // Imported invitations were already sent elsewhere.
            initial = InvitationStatus::Sent;
        }
        let tier = self.store.get_referrer(&req.referrer_id).await?.tier;
        let limits = self
            .settings
            .quotas
            .limits(quota::ReferrerTier::parse(&tier).unwrap_or(quota::ReferrerTier::Regular));
        let (tz, wedding, rules) = (valid.tz, valid.wedding, self.settings.send_rules.clone());
        let candidate = timing::send_candidate(
            now,
            valid.send_at,
            req.optimize.then_some(self.settings.preferred_slot),
            tz,
            wedding,
            &rules,
        );
        let place = move |usage: &crate::store::SlotUsage| {
            let allowed = |t: DateTime<Utc>| timing::first_allowed_instant(t, tz, wedding, &rules);
            quota::place(candidate, limits, usage, allowed)
        };
        let utm = req.utm.clone().unwrap_or_default();
        let recipient = req.recipient.clone().unwrap_or_default();
        for _ in 0..MAX_CODE_ATTEMPTS {
            let sent_now = initial == InvitationStatus::Sent;
            let row = InvitationRow {
                id: id.clone(),
                code: codes::generate_code(valid.referrer_kind, &mut rand::rng()),
                referrer_id: req.referrer_id.clone(),
                referrer_kind: valid.referrer_kind.as_str().into(),
                referee_kind: valid.referee_kind.as_str().into(),
                vendor_type: valid.vendor_type.clone(),
                flow: flow.as_str().into(),
                channel: valid.channel.as_str().into(),
                recipient_email: recipient.email.trim().to_string(),
                recipient_phone: recipient.phone.trim().to_string(),
                recipient_name: recipient.name.trim().to_string(),
                recipient_timezone: tz.name().to_string(),
                recipient_key: valid.recipient_key.clone(),
                status: initial.as_str().into(),
                status_reason: blocked_reason(initial, &risk),
                risk_json: serde_json::to_string(&risk).unwrap_or_default(),
                template_id: template.id.clone(),
                template_variant: template.assign(&id).name.clone(),
                message: req.message.clone(),
                campaign_id: req.campaign_id.clone(),
                utm_source: utm.source.clone(),
                utm_medium: utm.medium.clone(),
                utm_campaign: utm.campaign.clone(),
                wedding_date: valid.wedding.map(|d| d.to_string()).unwrap_or_default(),
                // Shared by the referrer: "sent" (and so scheduled) at creation.
                scheduled_for: sent_now.then_some(now),
                sent_at: sent_now.then_some(now),
                expires_at: sent_now.then(|| now + Duration::days(self.settings.attribution_window_days)),
                ip: client.ip.clone(),
                device_id: client.device_id.clone(),
                created_at: now,
                updated_at: now,
                referrer_name: req.referrer_name.trim().to_string(),
                business_name: req.business_name.trim().to_string(),
            };
            let new = NewInvitation {
                row,
                // Held invitations keep their slot too: approved, they go out as scheduled.
                paced: valid.channel.is_sent_by_us()
                    && backfill.is_none()
                    && matches!(
                        initial,
                        InvitationStatus::Scheduled | InvitationStatus::PendingReview
                    ),
                duplicate_since: now - Duration::hours(DUPLICATE_WINDOW_HOURS),
                max_queued: i64::from(self.settings.quotas.max_queued),
                landing_url: String::new(),
            };
            match self.store.create_invitation(new, &place).await? {
                CreateOutcome::Created(row) if initial == InvitationStatus::Blocked => {
                    return Err(refused(&row.id, &risk));
                }
                CreateOutcome::Created(row) => {
                    return Ok(convert::invitation(&row, &self.settings.public_url));
                }
                CreateOutcome::Duplicate { existing_id } => {
                    return Err(ApiError::AlreadyExists {
                        message: format!(
                            "this recipient was already invited by this referrer in the last 24 hours (invitation {existing_id})"
                        ),
                        reason: "DUPLICATE_INVITATION",
                        metadata: HashMap::from([("existingInvitationId".to_string(), existing_id)]),
                    });
                }
                CreateOutcome::QueueFull { queued } => {
                    return Err(ApiError::ResourceExhausted {
                        message: format!(
                            "referrer {} already has {queued} unsent invitations queued (limit {})",
                            req.referrer_id, self.settings.quotas.max_queued
                        ),
                        retry_after: std::time::Duration::from_secs(3600),
                    });
                }
                CreateOutcome::CodeTaken => continue,
            }
        }
        Err(ApiError::Unavailable(
            "could not find a free referral code; try again".into(),
        ))
    }

    fn validate_invitation(&self, req: &CreateInvitationRequest) -> ApiResult<ValidInvitation> {
        let mut v = Violations::default();
        input::id(&mut v, &req.referrer_id, "referrerId");
        let referrer_kind = party_kind(&mut v, req.referrer_kind, "referrerKind");
        let referee_kind = party_kind(&mut v, req.referee_kind, "refereeKind");
        let vendor = vendor_type(&mut v, req.vendor_type, referrer_kind, "vendorType");
        let channel = match pb::Channel::try_from(req.channel) {
            Ok(pb::Channel::Unspecified) | Err(_) => {
                v.add("channel", "is required: one of EMAIL, SMS, LINK, QR, SOCIAL");
                None
            }
            Ok(c) => Channel::parse(c.as_str_name()).ok(),
        };
        let recipient = req.recipient.clone().unwrap_or_default();
        input::line(&mut v, &recipient.email, input::EMAIL_MAX, "recipient.email");
        input::line(&mut v, &recipient.phone, input::PHONE_MAX, "recipient.phone");
        input::line(&mut v, &recipient.timezone, 64, "recipient.timezone");
        let email = if !v.is_empty() {
            String::new()
        } else if recipient.email.trim().is_empty() {
            if channel == Some(Channel::Email) {
                v.add("recipient.email", "is required for channel EMAIL");
            }
            String::new()
        } else {
            match contact::normalize_email(&recipient.email) {
                Ok(e) => e,
                Err(e) => {
                    v.add("recipient.email", e.to_string());
                    String::new()
                }
            }
        };
        let phone = if !v.is_empty() {
            String::new()
        } else if recipient.phone.trim().is_empty() {
            if channel == Some(Channel::Sms) {
                v.add("recipient.phone", "is required for channel SMS");
            }
            String::new()
        } else {
            match contact::normalize_phone(&recipient.phone) {
                Ok(p) => p,
                Err(e) => {
                    v.add("recipient.phone", e.to_string());
                    String::new()
                }
            }
        };
        // Names and the subject they fill reach mail headers: one line, no control characters.
        input::line(&mut v, &recipient.name, input::NAME_MAX, "recipient.name");
        let tz = if recipient.timezone.trim().is_empty() {
            Some(self.settings.default_timezone)
        } else {
            timing::parse_timezone(recipient.timezone.trim())
                .map_err(|e| v.add("recipient.timezone", e.to_string()))
                .ok()
        };
        input::line(&mut v, &req.wedding_date, 10, "weddingDate");
        let wedding = if v.0.iter().any(|(f, _)| f == "weddingDate") {
            None
        } else {
            timing::parse_wedding_date(req.wedding_date.trim())
                .map_err(|e| v.add("weddingDate", e.to_string()))
                .ok()
                .flatten()
        };
        if let Some(date) = wedding {
            v.check(
                !WEDDING_YEARS.contains(&date.year()),
                "weddingDate",
                format!(
                    "must be in the years {}..={}",
                    WEDDING_YEARS.start(),
                    WEDDING_YEARS.end()
                ),
            );
        }
        let now = self.settings.clock.now();
        // A past sendAt means "as soon as allowed" (it is treated as now); a future one must
        // be inside the horizon.
        let send_at = instant(&mut v, req.send_at.as_ref(), "sendAt");
        if let Some(at) = send_at {
            let latest = now + self.settings.send_at_horizon;
            v.check(
                at > latest,
                "sendAt",
                format!(
                    "must be at most {} days ahead",
                    self.settings.send_at_horizon.num_days()
                ),
            );
        }
        let occurred_at = instant(&mut v, req.occurred_at.as_ref(), "occurredAt");
        if let Some(at) = occurred_at {
            input::past_instant(&mut v, at, ids::now(), "occurredAt");
        }
        input::text(&mut v, &req.message, input::TEXT_MAX, "message");
        input::line(&mut v, &req.template_id, 100, "templateId");
        input::line(&mut v, &req.referrer_name, input::NAME_MAX, "referrerName");
        input::line(&mut v, &req.business_name, input::NAME_MAX, "businessName");
        input::line(&mut v, &req.campaign_id, input::ID_MAX, "campaignId");
        if let Some(u) = &req.utm {
            utm(&mut v, u, "utm");
        }
        v.into_result()?;
        let (Some(referrer_kind), Some(referee_kind), Some(channel), Some(tz)) =
            (referrer_kind, referee_kind, channel, tz)
        else {
            return Err(ApiError::invalid("channel", "is required"));
        };
        let recipient_key = if !email.is_empty() {
            email.clone()
        } else {
            phone.clone()
        };
        Ok(ValidInvitation {
            referrer_kind,
            referee_kind,
            vendor_type: vendor,
            channel,
            email,
            phone,
            recipient_key,
            tz,
            wedding,
            send_at,
            occurred_at,
        })
    }

    async fn get_owned_invitation(&self, p: &Principal, id: &str) -> ApiResult<InvitationRow> {
        let mut v = Violations::default();
        input::id(&mut v, id, "id");
        v.into_result()?;
        let row = self.store.get_invitation(id).await?;
        // Another member's invitation is "not found": existence is not revealed.
        row.filter(|r| p.may_act_as(&r.referrer_id))
            .ok_or_else(|| ApiError::not_found("invitation", id))
    }

    // ---- signups and conversions ---------------------------------------------------

    async fn signup(
        &self,
        p: &Principal,
        req: RecordSignupRequest,
        client: &ClientContext,
    ) -> ApiResult<Attribution> {
        let mut v = Violations::default();
        input::id(&mut v, &req.user_id, "userId");
        let user_kind = party_kind(&mut v, req.user_kind, "userKind");
        let vendor = vendor_type(&mut v, req.vendor_type, user_kind, "vendorType");
        input::line(&mut v, &req.email, input::EMAIL_MAX, "email");
        input::line(&mut v, &req.code, 64, "code");
        let email = if req.email.trim().is_empty() || !v.is_empty() {
            None
        } else {
            contact::normalize_email(&req.email)
                .map_err(|e| v.add("email", e.to_string()))
                .ok()
        };
        let code = if req.code.trim().is_empty() {
            None
        } else {
            codes::normalize_code(&req.code)
                .map_err(|e| v.add("code", e.to_string()))
                .ok()
        };
        check_click_id(&mut v, &req.click_id, "clickId");
        if req.click_ids.len() > attribution::MAX_EARLIER_CLICKS {
            v.add(
                "clickIds",
                format!("must hold at most {} click ids", attribution::MAX_EARLIER_CLICKS),
            );
        } else {
            for (i, id) in req.click_ids.iter().enumerate() {
                check_click_id(&mut v, id, &format!("clickIds[{i}]"));
            }
        }
        input::line(&mut v, &req.invitation_id, 64, "invitationId");
        input::line(&mut v, &req.name, input::NAME_MAX, "name");
        let occurred_at = instant(&mut v, req.occurred_at.as_ref(), "occurredAt");
        if let Some(at) = occurred_at {
            input::past_instant(&mut v, at, ids::now(), "occurredAt");
        }
        v.into_result()?;
        // A key with signups:write reports signups for any user (server to server).
        p.authorize(Scope::SignupsWrite, |p| p.require_self(&req.user_id, "userId"))?;
        let backfill = backfill_instant(p, occurred_at)?;
        let Some(user_kind) = user_kind else {
            return Err(ApiError::invalid("userKind", "is required"));
        };
        p.require_kind(user_kind.as_str(), "userKind")?;
        if let Some(existing) = self.store.find_signup(&req.user_id).await? {
            return Ok(convert::attribution(&existing));
        }
        let now = backfill.unwrap_or_else(ids::now);
        let window = Duration::days(self.settings.attribution_window_days);
        let mut candidates = Candidates::default();
        // Channels of the invitations behind the touches, for the touchpoints.
        let mut channels: HashMap<String, String> = HashMap::new();
        if !req.invitation_id.is_empty() {
            if let Some(inv) = self.store.get_invitation(&req.invitation_id).await? {
                candidates.invitation = Some(invitation_touch(&inv, TouchKind::Invitation));
                channels.insert(inv.id.clone(), inv.channel.clone());
            }
        } else if let Some(code) = &code
            && let Some(row) = self.store.get_code(code).await?
        {
            candidates.code = Some(match &row.invitation_id {
                Some(inv_id) => match self.store.get_invitation(inv_id).await? {
                    Some(inv) => {
                        channels.insert(inv.id.clone(), inv.channel.clone());
                        invitation_touch(&inv, TouchKind::Code)
                    }
                    None => code_touch(&row, now),
                },
                None => code_touch(&row, now),
            });
        }
        let (clicks, rejected_click) = self.visitor_clicks(&req.click_id, &req.click_ids, now).await?;
        for touch in &clicks {
            if let Some(inv) = &touch.invitation_id
                && !channels.contains_key(inv)
                && let Some(row) = self.store.get_invitation(inv).await?
            {
                channels.insert(row.id.clone(), row.channel.clone());
            }
        }
        (candidates.click, candidates.earlier_clicks) = attribution::newest_click(clicks);
        let click_at = candidates.click.as_ref().map(|t| t.at);
        if let Some(e) = &email
            && let Some(inv) = self.store.open_invitation_for(e, now - window).await?
        {
            channels.insert(inv.id.clone(), inv.channel.clone());
            candidates.email = Some(invitation_touch(&inv, TouchKind::Email));
        }
        let referrer_ids: Vec<String> = candidates
            .in_precedence_order()
            .map(|t| t.referrer_id.clone())
            .collect();
        let mut referrer_emails: HashMap<String, String> = HashMap::new();
        for r in referrer_ids {
            if let Some(e) = self.store.referrer_email(&r).await? {
                referrer_emails.insert(r, e);
            }
        }
        let facts = SignupFacts {
            user_id: req.user_id.clone(),
            email_normalized: email.clone(),
            at: now,
        };
        let decision = attribution::resolve_with_window(
            &facts,
            &candidates,
            |r: &str| referrer_emails.get(r).cloned(),
            self.settings.attribution_window_days,
        );
        let (winner, touchpoints, reason) = match decision {
            Decision::Attributed { winner, touchpoints } => (Some(winner), touchpoints, String::new()),
            Decision::NotAttributed { reason, touchpoints } => {
                (None, touchpoints, reason.as_str().to_string())
            }
        };
        // The winner's referrer kind comes from its code or invitation.
        let mut referrer_kind = None;
        if let Some(w) = &winner {
            if let Some(inv) = &w.invitation_id
                && let Some(row) = self.store.get_invitation(inv).await?
            {
                referrer_kind = PartyKind::parse(&row.referrer_kind).ok();
            } else if let Some(c) = &w.code
                && let Some(row) = self.store.get_code(c).await?
            {
                referrer_kind = PartyKind::parse(&row.referrer_kind).ok();
            }
        }
        let flow = referrer_kind.map(|rk| party::flow(rk, user_kind).as_str().to_string());
        let signup_id = ids::new_id();
        // The referral under assessment: the winner, or the touch a self-referral came by
        // (fraud-svc opens a case for it).
        let subject = winner.clone().or_else(|| {
            (reason == NotAttributedReason::SelfReferral.as_str())
                .then(|| candidates.in_precedence_order().next().cloned())
                .flatten()
        });
        let (mut attributed, mut reason) = (winner.is_some(), reason);
        let mut risk_json = String::new();
        if let Some(t) = &subject {
            let (screening, risk) = self
                .fraud
                .assess_signup(AssessSignupRequest {
                    signup_id: signup_id.clone(),
                    user_id: req.user_id.clone(),
                    user_kind: req.user_kind,
                    email: req.email.trim().to_string(),
                    name: req.name.trim().to_string(),
                    referrer_id: t.referrer_id.clone(),
                    invitation_id: t.invitation_id.clone().unwrap_or_default(),
                    code: t.code.clone().unwrap_or_default(),
                    ip: client.ip.clone(),
                    device_id: client.device_id.clone(),
                    occurred_at: Some(ids::to_ts(now)),
                    click_at: click_at.map(ids::to_ts),
                })
                .await;
            if screening == status::Screening::Rejected && attributed {
                attributed = false;
                reason = review::FRAUD_REJECTED.to_string();
            }
            risk_json = serde_json::to_string(&risk).unwrap_or_default();
        }
        let row = SignupRow {
            id: signup_id,
            user_id: req.user_id.clone(),
            user_kind: user_kind.as_str().into(),
            vendor_type: vendor,
            email: req.email.trim().to_string(),
            email_norm: email.unwrap_or_default(),
            name: req.name.trim().to_string(),
            attributed,
            invitation_id: winner
                .as_ref()
                .filter(|_| attributed)
                .and_then(|w| w.invitation_id.clone()),
            code: winner
                .as_ref()
                .filter(|_| attributed)
                .and_then(|w| w.code.clone()),
            referrer_id: winner
                .as_ref()
                .filter(|_| attributed)
                .map(|w| w.referrer_id.clone()),
            referrer_kind: referrer_kind
                .filter(|_| attributed)
                .map(|k| k.as_str().to_string()),
            flow: flow.filter(|_| attributed),
            reason,
            touchpoints_json: serde_json::to_string(
                &touchpoints
                    .iter()
                    .map(|t| touchpoint(t, &channels))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_else(|_| "[]".into()),
            risk_json,
            click_at,
            ip: client.ip.clone(),
            device_id: client.device_id.clone(),
            created_at: now,
            rejected_click,
        };
        let stored = self.store.insert_signup(&row).await?;
        Ok(convert::attribution(&stored))
    }

    async fn conversion(&self, p: &Principal, req: RecordConversionRequest) -> ApiResult<ConversionResult> {
        // Conversions are facts from billing: no person reports one, not even an admin.
        p.authorize(Scope::ConversionsWrite, |_| {
            Err(ApiError::PermissionDenied(
                "conversions are reported by billing: a service or an API key with conversions:write".into(),
            ))
        })?;
        let mut v = Violations::default();
        input::id(&mut v, &req.user_id, "userId");
        let value = req.value.clone().unwrap_or_default();
        if req.value.is_none() {
            v.add("value", "is required: {amountMinor, currency}");
        } else {
            // Bounded so that any number of conversions sums without overflow downstream.
            input::money(
                &mut v,
                value.amount_minor,
                &value.currency,
                self.settings.max_amount_minor,
                "value",
            );
        }
        let plan = match pb::Plan::try_from(req.plan) {
            Ok(pb::Plan::Unspecified) | Err(_) => {
                v.add(
                    "plan",
                    "is required: one of FREE, STARTER, PROFESSIONAL, SCALE, ENTERPRISE",
                );
                None
            }
            Ok(p) => Some(p.as_str_name().to_string()),
        };
        let occurred_at = instant(&mut v, req.occurred_at.as_ref(), "occurredAt");
        if let Some(at) = occurred_at {
            input::past_instant(&mut v, at, ids::now(), "occurredAt");
        }
        v.into_result()?;
        let row = self
            .store
            .record_conversion(NewConversion {
                id: ids::new_id(),
                user_id: req.user_id.clone(),
                amount_minor: value.amount_minor,
                currency: value.currency.clone(),
                plan: plan.unwrap_or_default(),
                annual: req.annual,
                occurred_at: occurred_at.unwrap_or_else(ids::now),
            })
            .await?;
        Ok(convert::conversion(&row))
    }

    /// The visitor's valid clicks for a signup, the named one first, and why the named one
    /// (`clickId`, else the last of `clickIds`) counts for nothing, if it does not. Besides
    /// the listed ids, each valid click's row links the same visitor's click before it (the
    /// redirect's earlier cookie); at most [`attribution::MAX_EARLIER_CLICKS`] earlier ones.
    async fn visitor_clicks(
        &self,
        named: &str,
        listed: &[String],
        now: DateTime<Utc>,
    ) -> ApiResult<(Vec<Touch>, String)> {
        let named = if named.is_empty() {
            listed.last().map(String::as_str).unwrap_or_default()
        } else {
            named
        };
        // Newest first: the named id, then the listed ones from the newest back.
        let mut queue: std::collections::VecDeque<&str> = std::iter::once(named)
            .chain(listed.iter().rev().map(String::as_str))
            .filter(|id| !id.is_empty())
            .collect();
        let mut links: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut touches = Vec::new();
        let mut rejected = String::new();
        // Each id costs a look-up or two: bounded however the chain was built.
        let mut budget = 2 * (attribution::MAX_EARLIER_CLICKS + 1);
        loop {
            let id = match queue.pop_front() {
                Some(id) => id.to_string(),
                None => match links.pop() {
                    Some(id) => id,
                    None => break,
                },
            };
            if budget == 0 || touches.len() > attribution::MAX_EARLIER_CLICKS {
                break;
            }
            budget -= 1;
            if !seen.insert(id.clone()) {
                continue;
            }
            match self.click_touch(&id, now).await? {
                Ok((touch, previous)) => {
                    touches.push(touch);
                    if let Some(previous) = previous {
                        links.push(previous);
                    }
                }
                Err(why) if id == named => rejected = why.as_str().to_string(),
                Err(why) => {
                    tracing::debug!(click_id = %id, reason = why.as_str(), "an earlier click counts for nothing")
                }
            }
        }
        Ok((touches, rejected))
    }

    /// The touch behind a click id, or why it counts for nothing. A signed id stands on its
    /// own (its row, if written yet, only adds the invitation a link named); a plain id is
    /// only as good as its row.
    async fn click_touch(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> ApiResult<Result<(Touch, Option<String>), RejectedClick>> {
        let evidence = match click_ids::judge(
            &self.settings.click_keys,
            id,
            now,
            self.settings.attribution_window_days,
        ) {
            Ok(evidence) => evidence,
            Err(why) => return Ok(Err(why)),
        };
        let row = self.store.get_click(id).await?;
        let (code, at) = match evidence {
            ClickEvidence::Signed { code, at } => (code, at),
            ClickEvidence::Plain => match row {
                Some(click) => {
                    let touch = Touch {
                        kind: TouchKind::Click,
                        id: click.click_id.clone(),
                        referrer_id: click.referrer_id.clone(),
                        invitation_id: click.invitation_id.clone(),
                        code: Some(click.code.clone()),
                        at: click.occurred_at,
                    };
                    return Ok(Ok((touch, earlier_click(&click))));
                }
                None => return Ok(Err(RejectedClick::UnknownClick)),
            },
        };
        let Some(code_row) = (match codes::normalize_code(&code) {
            Ok(normal) => self.store.get_code(&normal).await?,
            Err(_) => None,
        }) else {
            return Ok(Err(RejectedClick::UnknownCode));
        };
        // The row (from `/r/{code}?inv=`, and its link to the visitor's earlier click) is
        // detail; it must be the same click.
        let row = row.filter(|r| r.code == code_row.code);
        let previous = row.as_ref().and_then(earlier_click);
        let named = row.and_then(|r| r.invitation_id);
        let touch = Touch {
            kind: TouchKind::Click,
            id: id.to_string(),
            referrer_id: code_row.referrer_id.clone(),
            invitation_id: named.or_else(|| code_row.invitation_id.clone()),
            code: Some(code_row.code.clone()),
            at,
        };
        Ok(Ok((touch, previous)))
    }

    fn click_row(&self, req: &RecordClickRequest, code: String, client: &ClientContext) -> ClickRow {
        let now = ids::now();
        // An import's instant outside the backfill range is not believed: the click is now.
        let at = req
            .occurred_at
            .as_ref()
            .and_then(from_ts)
            .filter(|at| {
                let mut v = Violations::default();
                input::past_instant(&mut v, *at, now, "occurredAt");
                v.is_empty()
            })
            .unwrap_or(now);
        let utm = req.utm.clone().unwrap_or_default();
        ClickRow {
            // A click recorded without an id gets a signed one, good for attribution at once.
            click_id: if req.click_id.is_empty() {
                self.settings.click_keys.sign(&code, at)
            } else {
                req.click_id.clone()
            },
            code,
            referrer_id: String::new(),
            invitation_id: None,
            visitor_id: req.visitor_id.clone(),
            user_agent: input::printable(&req.user_agent, input::USER_AGENT_MAX),
            ip: if client.ip.is_empty() {
                req.ip.clone()
            } else {
                client.ip.clone()
            },
            device_id: if client.device_id.is_empty() {
                req.device_id.clone()
            } else {
                client.device_id.clone()
            },
            utm_source: utm.source,
            utm_medium: utm.medium,
            utm_campaign: utm.campaign,
            occurred_at: at,
            expires_at: at + Duration::days(self.settings.attribution_window_days),
            previous_click_id: req.previous_click_id.clone(),
        }
    }
}

struct ValidInvitation {
    referrer_kind: PartyKind,
    referee_kind: PartyKind,
    vendor_type: Option<String>,
    channel: Channel,
    email: String,
    phone: String,
    recipient_key: String,
    tz: chrono_tz::Tz,
    wedding: Option<chrono::NaiveDate>,
    send_at: Option<DateTime<Utc>>,
    occurred_at: Option<DateTime<Utc>>,
}

/// A backfilled instant: admins and services import history; it must be in the past.
fn backfill_instant(p: &Principal, at: Option<DateTime<Utc>>) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(at) = at else { return Ok(None) };
    if !p.is_privileged() {
        return Err(ApiError::PermissionDenied(
            "occurredAt (backfill) needs the admin or service role".into(),
        ));
    }
    if at > ids::now() {
        return Err(ApiError::invalid("occurredAt", "must not be in the future"));
    }
    Ok(Some(at))
}

/// Where a web call came from, as the gateway saw it.
#[derive(Default, Clone)]
struct ClientContext {
    ip: String,
    device_id: String,
}

impl ClientContext {
    fn of<T>(req: &Request<T>) -> Self {
        let md = req.metadata();
        ClientContext {
            ip: auth::metadata_text(md, auth::CLIENT_IP).unwrap_or_default(),
            device_id: auth::metadata_text(md, auth::DEVICE_ID)
                .unwrap_or_default()
                .chars()
                .take(128)
                .collect(),
        }
    }
}

/// The same visitor's click before this one, if the row links one.
fn earlier_click(row: &ClickRow) -> Option<String> {
    (!row.previous_click_id.is_empty() && row.previous_click_id != row.click_id)
        .then(|| row.previous_click_id.clone())
}

fn invitation_touch(inv: &InvitationRow, kind: TouchKind) -> Touch {
    Touch {
        kind,
        id: inv.id.clone(),
        referrer_id: inv.referrer_id.clone(),
        invitation_id: Some(inv.id.clone()),
        code: Some(inv.code.clone()),
        at: inv.sent_at.unwrap_or(inv.created_at),
    }
}

/// A referrer's own code typed at signup: the touch is now.
fn code_touch(row: &CodeRow, now: DateTime<Utc>) -> Touch {
    Touch {
        kind: TouchKind::Code,
        id: row.code.clone(),
        referrer_id: row.referrer_id.clone(),
        invitation_id: None,
        code: Some(row.code.clone()),
        at: now,
    }
}

fn touchpoint(t: &Touch, channels: &HashMap<String, String>) -> pb::Touchpoint {
    pb::Touchpoint {
        kind: t.kind.as_str().into(),
        id: t.id.clone(),
        code: t.code.clone().unwrap_or_default(),
        invitation_id: t.invitation_id.clone().unwrap_or_default(),
        referrer_id: t.referrer_id.clone(),
        channel: t
            .invitation_id
            .as_ref()
            .and_then(|id| channels.get(id))
            .map(|c| convert::channel(c) as i32)
            .unwrap_or_default(),
        at: Some(ids::to_ts(t.at)),
    }
}

fn blocked_reason(status: InvitationStatus, risk: &Risk) -> String {
    if status != InvitationStatus::Blocked {
        return String::new();
    }
    let names: Vec<&str> = risk.rules.iter().map(|r| r.name.as_str()).collect();
    format!("blocked by fraud rules: {}", names.join(", "))
}

fn refused(invitation_id: &str, risk: &Risk) -> ApiError {
    let rules: Vec<String> = risk
        .rules
        .iter()
        .map(|r| format!("{}: {}", r.name, r.detail))
        .collect();
    ApiError::Refused {
        message: format!("invitation refused: {}", rules.join("; ")),
        reason: "FRAUD_REJECTED",
        metadata: HashMap::from([
            ("invitationId".to_string(), invitation_id.to_string()),
            (
                "rules".to_string(),
                risk.rules
                    .iter()
                    .map(|r| r.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ]),
    }
}

/// Wedding dates outside these years are typos (or probes), not weddings.
const WEDDING_YEARS: std::ops::RangeInclusive<i32> = 1900..=2200;

/// Clicks one RecordClicks import may carry.
const MAX_CLICK_IMPORT: usize = 10_000;

/// An optional timestamp field: `None` when absent, a violation when outside the storable
/// years (`ids::from_ts`).
fn instant(v: &mut Violations, ts: Option<&referral_proto::Timestamp>, field: &str) -> Option<DateTime<Utc>> {
    let ts = ts?;
    from_ts(ts).or_else(|| {
        v.add(field, "is not a valid timestamp (years 1970 to 9999)");
        None
    })
}

fn utm(v: &mut Violations, u: &referral_proto::common::v1::Utm, prefix: &str) {
    input::line(v, &u.source, input::UTM_MAX, &format!("{prefix}.source"));
    input::line(v, &u.medium, input::UTM_MAX, &format!("{prefix}.medium"));
    input::line(v, &u.campaign, input::UTM_MAX, &format!("{prefix}.campaign"));
}

/// A batched click made storable: every text clipped to its cap, printable only.
fn clean_click(c: &mut RecordClickRequest) {
    let clip = |s: &mut String, max: usize| *s = input::printable(s, max);
    clip(&mut c.code, 64);
    // A signed id is longer than a code (kid, time, nonce, MAC): clipped to 64 its row was
    // stored under another id and never joined the signup that named it.
    clip(&mut c.click_id, click_id::MAX_LEN);
    // A link to an earlier click is only worth keeping whole (it came from a cookie).
    if !readable_click_id(&c.previous_click_id) {
        c.previous_click_id.clear();
    }
    clip(&mut c.visitor_id, input::ID_MAX);
    clip(&mut c.ip, 64);
    clip(&mut c.device_id, input::ID_MAX);
    clip(&mut c.invitation_id, 64);
    if let Some(u) = &mut c.utm {
        clip(&mut u.source, input::UTM_MAX);
        clip(&mut u.medium, input::UTM_MAX);
        clip(&mut u.campaign, input::UTM_MAX);
    }
}

/// A click id is a signed id or an older plain one: visible ASCII, bounded.
fn check_click_id(v: &mut Violations, value: &str, field: &str) {
    if value.len() > click_id::MAX_LEN {
        v.add(field, format!("must be at most {} characters", click_id::MAX_LEN));
    } else if !readable_click_id(value) {
        v.add(field, "must be visible ASCII (no spaces or control characters)");
    }
}

fn readable_click_id(value: &str) -> bool {
    value.len() <= click_id::MAX_LEN && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The caller-chosen fields of a click (its user agent is clipped, not refused).
fn check_click(v: &mut Violations, c: &RecordClickRequest) {
    input::line(v, &c.code, 64, "code");
    check_click_id(v, &c.click_id, "clickId");
    check_click_id(v, &c.previous_click_id, "previousClickId");
    input::line(v, &c.visitor_id, input::ID_MAX, "visitorId");
    input::line(v, &c.ip, 64, "ip");
    input::line(v, &c.device_id, input::ID_MAX, "deviceId");
    input::line(v, &c.invitation_id, 64, "invitationId");
    if let Some(u) = &c.utm {
        utm(v, u, "utm");
    }
    if let Some(at) = instant(v, c.occurred_at.as_ref(), "occurredAt") {
        input::past_instant(v, at, ids::now(), "occurredAt");
    }
}

fn party_kind(v: &mut Violations, value: i32, field: &str) -> Option<PartyKind> {
    match PbPartyKind::try_from(value) {
        Ok(PbPartyKind::Supplier) => Some(PartyKind::Supplier),
        Ok(PbPartyKind::Couple) => Some(PartyKind::Couple),
        _ => {
            v.add(field, "is required: SUPPLIER or COUPLE");
            None
        }
    }
}

fn vendor_type(
    v: &mut Violations,
    value: Option<i32>,
    kind: Option<PartyKind>,
    field: &str,
) -> Option<String> {
    let value = value?;
    match VendorType::try_from(value) {
        Ok(VendorType::Unspecified) | Err(_) => {
            v.add(
                field,
                "must be one of PHOTOGRAPHER, VENUE, FLORIST, PLANNER, CATERER, MUSIC, OTHER",
            );
            None
        }
        Ok(_) if kind == Some(PartyKind::Couple) => {
            v.add(field, "applies to suppliers only");
            None
        }
        Ok(t) => Some(t.as_str_name().to_string()),
    }
}

fn item_error(e: ApiError) -> ItemError {
    let status: Status = e.into();
    let (existing, rules) = match error_info_of(&status) {
        Some((_, md)) => (
            md.get("existingInvitationId").cloned().unwrap_or_default(),
            md.get("rules")
                .map(|r| {
                    r.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|n| referral_proto::common::v1::Rule {
                            name: n.into(),
                            detail: String::new(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        None => (String::new(), Vec::new()),
    };
    ItemError {
        code: status.code() as i32,
        message: status.message().to_string(),
        field_violations: violations_of(&status)
            .into_iter()
            .map(|(field, description)| pb::FieldViolation { field, description })
            .collect(),
        existing_invitation_id: existing,
        rules,
    }
}

#[tonic::async_trait]
impl<S: Store> InviteService for InviteApi<S> {
    async fn create_referral_code(
        &self,
        req: Request<CreateReferralCodeRequest>,
    ) -> Result<Response<ReferralCode>, Status> {
        self.create(req, "CreateReferralCode", |p, _, body| async move {
            self.create_code(&p, body).await
        })
        .await
    }

    async fn get_referral_code(
        &self,
        req: Request<GetReferralCodeRequest>,
    ) -> Result<Response<ReferralCode>, Status> {
        let p = Principal::of(&req)?;
        let row = self.find_code(&req.get_ref().code).await?;
        if !p.may_act_as(&row.referrer_id) {
            // Another member's code is "not found": existence is not revealed.
            return Err(ApiError::not_found("referral code", &row.code).into());
        }
        Ok(Response::new(self.code_response(&row).await))
    }

    async fn resolve_referral_code(
        &self,
        req: Request<ResolveReferralCodeRequest>,
    ) -> Result<Response<ResolveReferralCodeResponse>, Status> {
        Principal::of(&req)?.require_admin()?;
        let row = self.find_code(&req.get_ref().code).await?;
        let landing = if row.landing_url.is_empty() {
            self.settings.default_landing_url.clone()
        } else {
            row.landing_url
        };
        Ok(Response::new(ResolveReferralCodeResponse {
            code: row.code,
            landing_url: landing,
            referrer_id: row.referrer_id,
        }))
    }

    async fn create_invitation(
        &self,
        req: Request<CreateInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        self.create(req, "CreateInvitation", |p, client, body| async move {
            self.create_one(&p, body, &client).await
        })
        .await
    }

    async fn batch_create_invitations(
        &self,
        req: Request<BatchCreateInvitationsRequest>,
    ) -> Result<Response<BatchCreateInvitationsResponse>, Status> {
        let p = Principal::of(&req)?;
        let client = ClientContext::of(&req);
        let md = req.metadata().clone();
        let body = req.into_inner();
        let mut v = Violations::default();
        input::id(&mut v, &body.referrer_id, "referrerId");
        v.check(
            body.invitations.is_empty(),
            "invitations",
            "must hold at least one invitation",
        );
        v.check(
            body.invitations.len() > MAX_BATCH,
            "invitations",
            format!(
                "must hold at most {MAX_BATCH} invitations (got {})",
                body.invitations.len()
            ),
        );
        v.into_result()?;
        p.authorize(Scope::InvitationsWrite, |p| {
            p.require_self(&body.referrer_id, "referrerId")
        })?;
        let work = async {
            let mut results = Vec::with_capacity(body.invitations.len());
            let (mut accepted, mut rejected) = (0, 0);
            for (index, mut item) in body.invitations.clone().into_iter().enumerate() {
                let prefix = format!("invitations[{index}]");
                // Items inherit the batch's referrer; naming another one is an error.
                let result = if !item.referrer_id.is_empty() && item.referrer_id != body.referrer_id {
                    Err(ApiError::invalid(
                        &format!("{prefix}.referrerId"),
                        "must match the batch's referrerId",
                    ))
                } else {
                    item.referrer_id = body.referrer_id.clone();
                    if item.referrer_kind == 0 {
                        item.referrer_kind = body.referrer_kind;
                    }
                    if item.vendor_type.is_none() {
                        item.vendor_type = body.vendor_type;
                    }
                    self.create_one(&p, item, &client).await.map_err(|e| match e {
                        ApiError::Invalid(v) => ApiError::Invalid(v.prefixed(&prefix)),
                        other => other,
                    })
                };
                match result {
                    Ok(inv) => {
                        accepted += 1;
                        results.push(BatchResult {
                            index: index as i32,
                            invitation: Some(inv),
                            error: None,
                        });
                    }
                    Err(ApiError::Internal(e)) => return Err(Status::from(ApiError::Internal(e))),
                    Err(e) => {
                        rejected += 1;
                        results.push(BatchResult {
                            index: index as i32,
                            invitation: None,
                            error: Some(item_error(e)),
                        });
                    }
                }
            }
            Ok(BatchCreateInvitationsResponse {
                results,
                accepted,
                rejected,
            })
        };
        let out = self
            .idempotency
            .run(&md, &p.sub, "BatchCreateInvitations", &body, work)
            .await?;
        Ok(Response::new(out))
    }

    async fn get_invitation(
        &self,
        req: Request<GetInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        let p = Principal::of(&req)?;
        let row = self.get_owned_invitation(&p, &req.get_ref().id).await?;
        Ok(Response::new(convert::invitation(
            &row,
            &self.settings.public_url,
        )))
    }

    async fn list_invitations(
        &self,
        req: Request<ListInvitationsRequest>,
    ) -> Result<Response<ListInvitationsResponse>, Status> {
        let p = Principal::of(&req)?;
        let body = req.into_inner();
        let referrer = if body.referrer_id.is_empty() && !p.is_privileged() {
            p.sub.clone()
        } else {
            body.referrer_id.clone()
        };
        let mut v = Violations::default();
        input::id(&mut v, &referrer, "referrerId");
        let status = match body.status {
            None => None,
            Some(s) => match pb::InvitationStatus::try_from(s) {
                Ok(pb::InvitationStatus::Unspecified) | Err(_) => {
                    v.add("status", "is not an invitation status");
                    None
                }
                Ok(s) => Some(s.as_str_name().to_string()),
            },
        };
        v.into_result()?;
        p.require_self(&referrer, "referrerId")?;
        let size = paging::page_size(body.page_size)?;
        let after = paging::decode_token(&body.page_token)?;
        let mut rows = self
            .store
            .list_invitations(
                &referrer,
                status.as_deref(),
                after.as_deref(),
                i64::from(size) + 1,
            )
            .await
            .map_err(ApiError::from)?;
        let next = if rows.len() > size as usize {
            rows.truncate(size as usize);
            rows.last()
                .map(|r| paging::encode_token(&r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListInvitationsResponse {
            invitations: rows
                .iter()
                .map(|r| convert::invitation(r, &self.settings.public_url))
                .collect(),
            next_page_token: next,
        }))
    }

    async fn cancel_invitation(
        &self,
        req: Request<CancelInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        let p = Principal::of(&req)?;
        let row = self.get_owned_invitation(&p, &req.get_ref().id).await?;
        let reason = format!("cancelled by {}", p.sub);
        // A referrer cancelling its own invitation is ordinary use; anyone else doing it on
        // the referrer's behalf is an admin action, audited with the change.
        let audit = (p.sub != row.referrer_id)
            .then(|| {
                Actor::of(&req).map(|a| AuditEntry::new(&a, action::INVITATION_CANCEL, "invitation", &row.id))
            })
            .transpose()?;
        match self
            .store
            .cancel(&row.id, &reason, ids::now(), audit.as_ref())
            .await
            .map_err(ApiError::from)?
        {
            TransitionOutcome::Applied(r) | TransitionOutcome::Ignored(r) => {
                Ok(Response::new(convert::invitation(&r, &self.settings.public_url)))
            }
            TransitionOutcome::Rejected { reason, .. } => Err(ApiError::FailedPrecondition {
                message: reason,
                reason: "INVITATION_ALREADY_SENT",
            }
            .into()),
            TransitionOutcome::NotFound => Err(ApiError::not_found("invitation", &row.id).into()),
        }
    }

    async fn set_referrer_tier(
        &self,
        req: Request<SetReferrerTierRequest>,
    ) -> Result<Response<Referrer>, Status> {
        Principal::of(&req)?.require_admin()?;
        let actor = Actor::of(&req)?;
        let body = req.into_inner();
        let mut v = Violations::default();
        input::id(&mut v, &body.referrer_id, "referrerId");
        let tier = match pb::ReferrerTier::try_from(body.tier) {
            Ok(pb::ReferrerTier::Unspecified) | Err(_) => {
                v.add("tier", "is required: REGULAR, PREMIUM or SUPER_CONNECTOR");
                None
            }
            Ok(t) => Some(t.as_str_name()),
        };
        v.into_result()?;
        let row = self
            .store
            .set_tier(
                &body.referrer_id,
                tier.unwrap_or("REGULAR"),
                &AuditEntry::new(&actor, action::REFERRER_TIER_SET, "referrer", &body.referrer_id),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(convert::referrer(&row)))
    }

    async fn get_referrer(&self, req: Request<GetReferrerRequest>) -> Result<Response<Referrer>, Status> {
        let p = Principal::of(&req)?;
        let mut v = Violations::default();
        input::id(&mut v, &req.get_ref().referrer_id, "referrerId");
        v.into_result()?;
        p.require_self(&req.get_ref().referrer_id, "referrerId")?;
        let row = self
            .store
            .get_referrer(&req.get_ref().referrer_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(convert::referrer(&row)))
    }

    async fn record_click(&self, req: Request<RecordClickRequest>) -> Result<Response<Click>, Status> {
        let p = Principal::of(&req)?;
        let client = ClientContext::of(&req);
        let mut body = req.into_inner();
        if !p.is_privileged() {
            // Only imports (admin, service) may say when a click happened.
            body.occurred_at = None;
        }
        let mut v = Violations::default();
        v.require(&body.code, "code");
        check_click(&mut v, &body);
        v.into_result()?;
        let code = self.find_code(&body.code).await?;
        let row = self.click_row(&body, code.code.clone(), &client);
        self.store
            .record_clicks(std::slice::from_ref(&row))
            .await
            .map_err(ApiError::from)?;
        let stored = self
            .store
            .get_click(&row.click_id)
            .await
            .map_err(ApiError::from)?
            .unwrap_or(row);
        Ok(Response::new(convert::click(&stored)))
    }

    async fn record_clicks(
        &self,
        req: Request<RecordClicksRequest>,
    ) -> Result<Response<RecordClicksResponse>, Status> {
        Principal::of(&req)?.require_admin()?;
        let mut body = req.into_inner();
        let mut v = Violations::default();
        v.check(
            body.clicks.len() > MAX_CLICK_IMPORT,
            "clicks",
            format!("must hold at most {MAX_CLICK_IMPORT} clicks"),
        );
        v.into_result()?;
        // The redirect path batches visitors' clicks here: one visitor's junk query string
        // must not cost the batch, so each click is cleaned (clipped, printable) instead.
        body.clicks.iter_mut().for_each(clean_click);
        let none = ClientContext::default();
        let mut unknown = 0;
        let rows: Vec<ClickRow> = body
            .clicks
            .iter()
            .filter_map(|c| match codes::normalize_code(&c.code) {
                Ok(code) => Some(self.click_row(c, code, &none)),
                Err(_) => {
                    unknown += 1;
                    None
                }
            })
            .collect();
        let out = self.store.record_clicks(&rows).await.map_err(ApiError::from)?;
        Ok(Response::new(RecordClicksResponse {
            recorded: out.recorded as i32,
            unknown_codes: (out.unknown_codes + unknown) as i32,
        }))
    }

    async fn record_signup(
        &self,
        req: Request<RecordSignupRequest>,
    ) -> Result<Response<Attribution>, Status> {
        self.create(req, "RecordSignup", |p, client, body| async move {
            self.signup(&p, body, &client).await
        })
        .await
    }

    async fn record_conversion(
        &self,
        req: Request<RecordConversionRequest>,
    ) -> Result<Response<ConversionResult>, Status> {
        self.create(req, "RecordConversion", |p, _, body| async move {
            self.conversion(&p, body).await
        })
        .await
    }

    async fn handle_email_webhook(
        &self,
        req: Request<EmailWebhookRequest>,
    ) -> Result<Response<EmailWebhookResponse>, Status> {
        // Only the gateway forwards provider webhooks (with its service token).
        let p = Principal::of(&req)?;
        if !p.is_privileged() {
            return Err(
                ApiError::PermissionDenied("provider webhooks come through the gateway".into()).into(),
            );
        }
        let req = req.into_inner();
        // Provider signatures are checked against real time, whatever the scheduling clock.
        let events = match webhooks::verify_and_parse(
            &req.provider,
            &self.settings.webhooks,
            &req.headers,
            &req.body,
            ids::now().timestamp(),
        ) {
            Ok(events) => events,
            Err(WebhookError::NotConfigured(_)) => {
                return Err(ApiError::NotFound(format!(
                    "no webhook is configured for provider {:?}; set its secret to enable it",
                    req.provider
                ))
                .into());
            }
            Err(e @ WebhookError::Unauthenticated(_)) => return Err(Status::unauthenticated(e.to_string())),
            Err(WebhookError::Malformed(why)) => return Err(ApiError::invalid("body", why).into()),
        };
        let provider = req.provider.to_ascii_lowercase();
        let tally = self
            .store
            .apply_provider_events(&provider, &events, ids::now())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(EmailWebhookResponse {
            recorded: tally.recorded,
            ignored: tally.ignored,
            duplicates: tally.duplicates,
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use referral_common::config::Secret;

    use super::*;

    #[test]
    fn a_redirects_signed_click_id_is_kept_whole() {
        let keys = ClickKeys::parse(
            "CLICK_SIGNING_KEYS",
            &Secret::new("k1:0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
        for code in ["LOVE-7KQ2MX", &"C".repeat(64)] {
            let id = keys.sign(code, at);
            assert!(id.len() > 64, "{id}");
            let mut click = RecordClickRequest {
                code: code.into(),
                click_id: id.clone(),
                ..RecordClickRequest::default()
            };
            clean_click(&mut click);
            assert_eq!(click.click_id, id);
            assert!(keys.verify(&click.click_id).is_ok());
        }
        // Still bounded: junk beyond the longest id is clipped.
        let mut junk = RecordClickRequest {
            click_id: "x".repeat(10_000),
            ..RecordClickRequest::default()
        };
        clean_click(&mut junk);
        assert_eq!(junk.click_id.len(), click_id::MAX_LEN);
    }
}
