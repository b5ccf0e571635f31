//! Creating an invitation: the request checked, the caller authorized, fraud-svc asked
//! (away or slow: held for review), the template chosen, and the send time placed by the
//! recipient's humane hours and the referrer's tier quota (`domain::quota`: the regular,
//! free tier sends at most [`FREE_TIER_INVITATIONS_PER_DAY`](crate::domain::quota::FREE_TIER_INVITATIONS_PER_DAY)
//! a day); then stored unless it duplicates a recent one or the referrer's queue is full.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    auth::{Principal, Scope},
    ids, input,
};
use referral_proto::{
    common::v1::Risk,
    fraud::v1::AssessInvitationRequest,
    invite::v1::{self as pb, CreateInvitationRequest},
};

use super::{
    App, ClientContext, MAX_CODE_ATTEMPTS, backfill_instant,
    fields::{instant, party_kind, utm, vendor_type},
};
use crate::{
    adapters::fraud,
    domain::{
        codes, contact,
        party::{self, PartyKind},
        quota,
        status::{self, Channel, InvitationStatus},
        timing,
    },
    store::{CreateOutcome, InvitationRow, NewInvitation, Store},
};

/// The same referrer inviting the same recipient within this window is a duplicate.
const DUPLICATE_WINDOW_HOURS: i64 = 24;
/// Wedding dates outside these years are typos (or probes), not weddings.
const WEDDING_YEARS: std::ops::RangeInclusive<i32> = 1900..=2200;

impl<S: Store> App<S> {
    /// Creates one invitation, judged alone (the batch calls this per item).
    pub async fn create_invitation(
        &self,
        p: &Principal,
        req: CreateInvitationRequest,
        client: &ClientContext,
    ) -> ApiResult<InvitationRow> {
        let valid = self.validate_invitation(&req)?;
        // A key with invitations:write invites for any referrer (server to server).
        p.authorize(Scope::InvitationsWrite, |p| {
            p.require_self(&req.referrer_id, "referrerId")?;
            p.require_kind(valid.referrer_kind.as_str(), "referrerKind")
        })?;
        let backfill = backfill_instant(p, valid.occurred_at)?;
        // A suppressed address is refused before fraud-svc is asked (and again in the
        // creating transaction); the refusal never says why it is suppressed.
        let contact_lookup = self
            .config
            .consent
            .messaged(valid.channel, &valid.email, &valid.phone)
            .map(|m| m.key)
            .unwrap_or_default();
        if self.store.is_suppressed(&contact_lookup).await? {
            return Err(super::consent::refused());
        }
        let now = backfill.unwrap_or_else(|| self.config.clock.now());
        let flow = party::flow(valid.referrer_kind, valid.referee_kind);
        let template = self
            .config
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
            .config
            .quotas
            .limits(quota::ReferrerTier::parse(&tier).unwrap_or(quota::ReferrerTier::Regular));
        let (tz, wedding, rules) = (valid.tz, valid.wedding, self.config.send_rules.clone());
        let candidate = timing::send_candidate(
            now,
            valid.send_at,
            req.optimize.then_some(self.config.preferred_slot),
            tz,
            wedding,
            &rules,
        );
        let place = move |usage: &crate::store::SlotUsage| {
            let allowed = |t: DateTime<Utc>| timing::first_allowed_instant(t, tz, wedding, &rules);
            quota::place(candidate, limits, usage, allowed)
        };
        // No UTM tags and no recipient are empty ones (the recipient was checked above).
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
                // Duplicates and attribution by e-mail find the recipient by keyed hash.
                recipient_key: crate::store::sealed::recipient_key(
                    self.store.pii(),
                    &valid.email,
                    &valid.phone,
                ),
                status: initial.as_str().into(),
                status_reason: blocked_reason(initial, &risk),
                risk_json: serde_json::to_string(&risk).map_err(|e| ApiError::Internal(e.into()))?,
                template_id: template.id.clone(),
                template_variant: template.assign(&id).name.clone(),
                message: req.message.clone(),
                campaign_id: req.campaign_id.clone(),
                utm_source: utm.source.clone(),
                utm_medium: utm.medium.clone(),
                utm_campaign: utm.campaign.clone(),
                // No wedding date: "" is how the column says none.
                wedding_date: valid.wedding.map(|d| d.to_string()).unwrap_or_default(),
                // Shared by the referrer: "sent" (and so scheduled) at creation.
                scheduled_for: sent_now.then_some(now),
                sent_at: sent_now.then_some(now),
                expires_at: sent_now.then(|| now + Duration::days(self.config.attribution_window_days)),
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
                max_queued: i64::from(self.config.quotas.max_queued),
                landing_url: String::new(),
                contact_lookup: contact_lookup.clone(),
            };
            match self.store.create_invitation(new, &place).await? {
                CreateOutcome::Created(row) if initial == InvitationStatus::Blocked => {
                    return Err(refused(&row.id, &risk));
                }
                CreateOutcome::Created(row) => return Ok(*row),
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
                            req.referrer_id, self.config.quotas.max_queued
                        ),
                        retry_after: std::time::Duration::from_secs(3600),
                    });
                }
                CreateOutcome::CodeTaken => continue,
                CreateOutcome::Suppressed => return Err(super::consent::refused()),
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
        // No recipient is an empty one: each channel's required field is refused below.
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
            Some(self.config.default_timezone)
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
        let now = self.config.clock.now();
        // A past sendAt means "as soon as allowed" (it is treated as now); a future one must
        // be inside the horizon.
        let send_at = instant(&mut v, req.send_at.as_ref(), "sendAt");
        if let Some(at) = send_at {
            let latest = now + self.config.send_at_horizon;
            v.check(
                at > latest,
                "sendAt",
                format!(
                    "must be at most {} days ahead",
                    self.config.send_at_horizon.num_days()
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
        Ok(ValidInvitation {
            referrer_kind,
            referee_kind,
            vendor_type: vendor,
            channel,
            email,
            phone,
            tz,
            wedding,
            send_at,
            occurred_at,
        })
    }
}

struct ValidInvitation {
    referrer_kind: PartyKind,
    referee_kind: PartyKind,
    vendor_type: Option<String>,
    channel: Channel,
    email: String,
    phone: String,
    tz: chrono_tz::Tz,
    wedding: Option<chrono::NaiveDate>,
    send_at: Option<DateTime<Utc>>,
    occurred_at: Option<DateTime<Utc>>,
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
