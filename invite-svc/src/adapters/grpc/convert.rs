//! Stored rows -> protobuf messages, for the gRPC answers. Enum-like columns hold the API
//! names, so conversion is by name (`store::names`). An absent optional column (no
//! invitation, code or referrer behind a click, signup or conversion) becomes proto3's
//! empty value (`""`, 0): these fields have no null, and docs/api.md reads empty as none.

use referral_common::ids::{to_ts, to_ts_opt};
use referral_proto::{
    common::v1::{Risk, Utm},
    invite::v1::{
        Attribution, Click, CodeCounts, ConversionResult, Invitation, Recipient, ReferralCode, Referrer,
    },
};

pub use crate::store::names::{channel, flow, party_kind, plan, status, tier, vendor_type};
use crate::{
    domain::codes::code_url,
    store::{ClickRow, CodeRow, ConversionRow, InvitationRow, ReferrerRow, SignupRow, StoreResult},
};

fn opt_vendor(v: &Option<String>) -> Option<i32> {
    v.as_deref().map(|v| vendor_type(v) as i32)
}

pub fn referral_code(row: &CodeRow, public_url: &str, qr_svg: String) -> ReferralCode {
    ReferralCode {
        code: row.code.clone(),
        url: code_url(public_url, &row.code),
        qr_svg,
        referrer_id: row.referrer_id.clone(),
        referrer_kind: party_kind(&row.referrer_kind) as i32,
        vendor_type: opt_vendor(&row.vendor_type),
        campaign_id: row.campaign_id.clone(),
        landing_url: row.landing_url.clone(),
        created_at: Some(to_ts(row.created_at)),
        counts: Some(CodeCounts {
            clicks: row.clicks,
            signups: row.signups,
            conversions: row.conversions,
        }),
    }
}

pub fn invitation(row: &InvitationRow, public_url: &str) -> Invitation {
    Invitation {
        id: row.id.clone(),
        code: row.code.clone(),
        referrer_id: row.referrer_id.clone(),
        referrer_kind: party_kind(&row.referrer_kind) as i32,
        referee_kind: party_kind(&row.referee_kind) as i32,
        flow: flow(&row.flow) as i32,
        channel: channel(&row.channel) as i32,
        recipient: Some(Recipient {
            email: row.recipient_email.clone(),
            phone: row.recipient_phone.clone(),
            name: row.recipient_name.clone(),
            timezone: row.recipient_timezone.clone(),
        }),
        status: status(&row.status) as i32,
        risk: serde_json::from_str::<Risk>(&row.risk_json).ok(),
        template_id: row.template_id.clone(),
        template_variant: row.template_variant.clone(),
        scheduled_for: to_ts_opt(row.scheduled_for),
        expires_at: to_ts_opt(row.expires_at),
        created_at: Some(to_ts(row.created_at)),
        updated_at: Some(to_ts(row.updated_at)),
        sent_at: to_ts_opt(row.sent_at),
        wedding_date: row.wedding_date.clone(),
        message: row.message.clone(),
        campaign_id: row.campaign_id.clone(),
        utm: Some(Utm {
            source: row.utm_source.clone(),
            medium: row.utm_medium.clone(),
            campaign: row.utm_campaign.clone(),
        }),
        vendor_type: opt_vendor(&row.vendor_type),
        status_reason: row.status_reason.clone(),
        url: code_url(public_url, &row.code),
    }
}

pub fn referrer(row: &ReferrerRow) -> Referrer {
    Referrer {
        id: row.id.clone(),
        tier: tier(&row.tier) as i32,
        queued: row.queued,
        updated_at: Some(to_ts(row.updated_at)),
    }
}

pub fn click(row: &ClickRow) -> Click {
    Click {
        click_id: row.click_id.clone(),
        code: row.code.clone(),
        expires_at: Some(to_ts(row.expires_at)),
        referrer_id: row.referrer_id.clone(),
        invitation_id: row.invitation_id.clone().unwrap_or_default(),
    }
}

/// A stored signup's attribution; its touchpoints must read.
pub fn attribution(row: &SignupRow) -> StoreResult<Attribution> {
    Ok(Attribution {
        attributed: row.attributed,
        invitation_id: row.invitation_id.clone().unwrap_or_default(),
        code: row.code.clone().unwrap_or_default(),
        referrer_id: row.referrer_id.clone().unwrap_or_default(),
        flow: row.flow.as_deref().map(|f| flow(f) as i32),
        model: referral_proto::common::v1::AttributionModel::LastTouch as i32,
        touchpoints: row.touchpoints()?,
        reason: row.reason.clone(),
        signup_id: row.id.clone(),
        user_id: row.user_id.clone(),
        risk: serde_json::from_str::<Risk>(&row.risk_json).ok(),
        signed_up_at: Some(to_ts(row.created_at)),
        rejected_click: row.rejected_click.clone(),
    })
}

pub fn conversion(row: &ConversionRow) -> ConversionResult {
    ConversionResult {
        conversion_id: row.id.clone(),
        attributed: row.attributed,
        referrer_id: row.referrer_id.clone().unwrap_or_default(),
        invitation_id: row.invitation_id.clone().unwrap_or_default(),
        first_paid: row.first_paid,
        flow: row.flow.as_deref().map(|f| flow(f) as i32),
        user_id: row.user_id.clone(),
        value: Some(referral_proto::common::v1::Money {
            amount_minor: row.amount_minor,
            currency: row.currency.clone(),
        }),
        occurred_at: Some(to_ts(row.occurred_at)),
    }
}
