//! invite-svc's events, built from stored rows (what consumers may know: no names,
//! e-mails or phone numbers; recipients only as a keyed hash; IPs, device ids and visitor
//! ids sealed with `PiiKeys::seal`, since the outbox is a table of invite-svc's database —
//! consumers `PiiKeys::open` them, which also passes an unsealed value from an older event). The store stages them in the
//! transaction of the change they report. An absent optional column (no invitation, code or
//! referrer; no referrer kind) is proto3's empty value (`""`, 0, UNSPECIFIED): these fields
//! have no null, and consumers read empty as none.

use chrono::{DateTime, Utc};
use referral_common::pii::PiiKeys;
use referral_common::{events::new_event, ids::to_ts};
use referral_proto::{
    common::v1::{FraudAction, Risk, Utm},
    events::v1::{
        ClickRecorded, ConversionRecorded, Event, InvitationCreated, InvitationFacts, InvitationTransition,
        ReferralCodeCreated, ReferrerTierChanged, SignupRecorded, event::Payload,
    },
};

use crate::{
    domain::status::InvitationStatus,
    store::{
        ClickRow, CodeRow, ConversionRow, InvitationRow, ReferrerRow, SignupRow, StoreResult,
        names as convert,
    },
};

pub const SOURCE: &str = "invite";

pub fn facts(row: &InvitationRow) -> InvitationFacts {
    InvitationFacts {
        invitation_id: row.id.clone(),
        code: row.code.clone(),
        referrer_id: row.referrer_id.clone(),
        referrer_kind: convert::party_kind(&row.referrer_kind) as i32,
        referee_kind: convert::party_kind(&row.referee_kind) as i32,
        flow: convert::flow(&row.flow) as i32,
        channel: convert::channel(&row.channel) as i32,
        vendor_type: row.vendor_type.as_deref().map(|v| convert::vendor_type(v) as i32),
        template_id: row.template_id.clone(),
        template_variant: row.template_variant.clone(),
        campaign_id: row.campaign_id.clone(),
        created_at: Some(to_ts(row.created_at)),
    }
}

/// Created, and for invitations we do not send (LINK, QR, SOCIAL) sent at once.
pub fn invitation_created(row: &InvitationRow, pii: &PiiKeys) -> Vec<Event> {
    let created = Payload::InvitationCreated(InvitationCreated {
        invitation: Some(facts(row)),
        status: convert::status(&row.status) as i32,
        scheduled_for: row.scheduled_for.map(to_ts),
        // Already the keyed hash (PiiKeys::lookup): other services count one recipient
        // across referrers without holding the address, and cannot reverse it.
        recipient_key: row.recipient_key.clone(),
        ip: pii.seal(&row.ip),
        device_id: pii.seal(&row.device_id),
    });
    let mut out = vec![new_event(SOURCE, &row.id, row.created_at, created)];
    if row.status == "SENT" {
        let status = InvitationStatus::Sent;
        out.push(transition(row, status, status, "", row.created_at));
    }
    out
}

pub fn transition(
    row: &InvitationRow,
    from: InvitationStatus,
    to: InvitationStatus,
    reason: &str,
    at: DateTime<Utc>,
) -> Event {
    let t = InvitationTransition {
        invitation_id: row.id.clone(),
        referrer_id: row.referrer_id.clone(),
        flow: convert::flow(&row.flow) as i32,
        from: convert::status(from.as_str()) as i32,
        to: convert::status(to.as_str()) as i32,
        at: Some(to_ts(at)),
        reason: reason.to_string(),
        invitation_created_at: Some(to_ts(row.created_at)),
        template_id: row.template_id.clone(),
        template_variant: row.template_variant.clone(),
    };
    let payload = match to {
        InvitationStatus::PendingReview | InvitationStatus::Scheduled => Payload::InvitationScheduled(t),
        InvitationStatus::Sent => Payload::InvitationSent(t),
        InvitationStatus::Delivered => Payload::InvitationDelivered(t),
        InvitationStatus::Opened => Payload::InvitationOpened(t),
        InvitationStatus::Clicked => Payload::InvitationClicked(t),
        InvitationStatus::SignedUp => Payload::InvitationSignedUp(t),
        InvitationStatus::Converted => Payload::InvitationConverted(t),
        InvitationStatus::Expired => Payload::InvitationExpired(t),
        InvitationStatus::Bounced => Payload::InvitationBounced(t),
        InvitationStatus::Cancelled => Payload::InvitationCancelled(t),
        InvitationStatus::Blocked => Payload::InvitationBlocked(t),
    };
    new_event(SOURCE, &row.id, at, payload)
}

pub fn code_created(row: &CodeRow) -> Event {
    let payload = Payload::ReferralCodeCreated(ReferralCodeCreated {
        code: row.code.clone(),
        referrer_id: row.referrer_id.clone(),
        referrer_kind: convert::party_kind(&row.referrer_kind) as i32,
        vendor_type: row.vendor_type.as_deref().map(|v| convert::vendor_type(v) as i32),
        campaign_id: row.campaign_id.clone(),
    });
    new_event(SOURCE, &row.code, row.created_at, payload)
}

pub fn tier_changed(row: &ReferrerRow) -> Event {
    let payload = Payload::ReferrerTierChanged(ReferrerTierChanged {
        referrer_id: row.id.clone(),
        tier: convert::tier(&row.tier) as i32,
    });
    new_event(SOURCE, &row.id, row.updated_at, payload)
}

pub fn click(row: &ClickRow, pii: &PiiKeys) -> Event {
    let payload = Payload::ClickRecorded(ClickRecorded {
        click_id: row.click_id.clone(),
        code: row.code.clone(),
        referrer_id: row.referrer_id.clone(),
        invitation_id: row.invitation_id.clone().unwrap_or_default(),
        ip: pii.seal(&row.ip),
        device_id: pii.seal(&row.device_id),
        visitor_id: pii.seal(&row.visitor_id),
        utm: Some(Utm {
            source: row.utm_source.clone(),
            medium: row.utm_medium.clone(),
            campaign: row.utm_campaign.clone(),
        }),
        at: Some(to_ts(row.occurred_at)),
    });
    new_event(SOURCE, &row.click_id, row.occurred_at, payload)
}

pub fn signup(
    row: &SignupRow,
    invitation_created_at: Option<DateTime<Utc>>,
    channel: &str,
    pii: &PiiKeys,
) -> StoreResult<Event> {
    let touchpoints = row.touchpoints()?;
    let risk: Option<Risk> = serde_json::from_str(&row.risk_json).ok();
    let payload = Payload::SignupRecorded(SignupRecorded {
        signup_id: row.id.clone(),
        user_id: row.user_id.clone(),
        user_kind: convert::party_kind(&row.user_kind) as i32,
        attributed: row.attributed,
        referrer_id: row.referrer_id.clone().unwrap_or_default(),
        invitation_id: row.invitation_id.clone().unwrap_or_default(),
        code: row.code.clone().unwrap_or_default(),
        flow: row.flow.as_deref().map(|f| convert::flow(f) as i32),
        reason: row.reason.clone(),
        touchpoints,
        risk,
        at: Some(to_ts(row.created_at)),
        ip: pii.seal(&row.ip),
        device_id: pii.seal(&row.device_id),
        vendor_type: row.vendor_type.as_deref().map(|v| convert::vendor_type(v) as i32),
        referrer_kind: row
            .referrer_kind
            .as_deref()
            .map(|k| convert::party_kind(k) as i32)
            .unwrap_or_default(),
        invitation_created_at: invitation_created_at.map(to_ts),
        channel: if channel.is_empty() {
            0
        } else {
            convert::channel(channel) as i32
        },
    });
    Ok(new_event(SOURCE, &row.id, row.created_at, payload))
}

pub fn conversion(row: &ConversionRow, signup: Option<&SignupRow>) -> StoreResult<Event> {
    let risk: Option<Risk> = signup.and_then(|s| serde_json::from_str(&s.risk_json).ok());
    let payload = Payload::ConversionRecorded(ConversionRecorded {
        conversion_id: row.id.clone(),
        user_id: row.user_id.clone(),
        value: Some(referral_proto::common::v1::Money {
            amount_minor: row.amount_minor,
            currency: row.currency.clone(),
        }),
        plan: convert::plan(&row.plan) as i32,
        annual: row.annual,
        attributed: row.attributed,
        first_paid: row.first_paid,
        referrer_id: row.referrer_id.clone().unwrap_or_default(),
        invitation_id: row.invitation_id.clone().unwrap_or_default(),
        flow: row.flow.as_deref().map(|f| convert::flow(f) as i32),
        at: Some(to_ts(row.occurred_at)),
        click_at: signup.and_then(|s| s.click_at).map(to_ts),
        referrer_kind: signup
            .and_then(|s| s.referrer_kind.as_deref())
            .map(|k| convert::party_kind(k) as i32)
            .unwrap_or_default(),
        // No signup (not attributed): no touchpoints.
        touchpoints: signup
            .map(SignupRow::touchpoints)
            .transpose()?
            .unwrap_or_default(),
        signup_action: risk.map(|r| r.action).unwrap_or(FraudAction::Approve as i32),
    });
    Ok(new_event(SOURCE, &row.id, row.occurred_at, payload))
}

/// A privacy request every service must do its part of: the subject carries lookup hashes,
/// a pseudonym and ids, never plaintext.
pub fn privacy_requested(
    request_id: &str,
    kind: referral_proto::common::v1::PrivacyRequestKind,
    subject: &referral_proto::common::v1::PrivacySubject,
    at: DateTime<Utc>,
) -> Event {
    let payload = Payload::PrivacyRequested(referral_proto::events::v1::PrivacyRequested {
        request_id: request_id.to_string(),
        kind: kind as i32,
        subject: Some(subject.clone()),
        at: Some(to_ts(at)),
    });
    new_event(SOURCE, request_id, at, payload)
}
