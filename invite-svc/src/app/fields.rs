//! Checks of request fields shared by several use cases: each adds a violation naming the
//! field (docs/api.md: a 400 names every violated field) and yields the parsed value.

use chrono::{DateTime, Utc};
use referral_common::{
    Violations, click_id,
    ids::{self, from_ts},
    input,
};
use referral_proto::{
    common::v1::{PartyKind as PbPartyKind, VendorType},
    invite::v1::RecordClickRequest,
};

use crate::domain::party::PartyKind;

/// An optional timestamp field: `None` when absent, a violation when outside the storable
/// years (`ids::from_ts`).
pub(crate) fn instant(
    v: &mut Violations,
    ts: Option<&referral_proto::Timestamp>,
    field: &str,
) -> Option<DateTime<Utc>> {
    let ts = ts?;
    from_ts(ts).or_else(|| {
        v.add(field, "is not a valid timestamp (years 1970 to 9999)");
        None
    })
}

pub(crate) fn utm(v: &mut Violations, u: &referral_proto::common::v1::Utm, prefix: &str) {
    input::line(v, &u.source, input::UTM_MAX, &format!("{prefix}.source"));
    input::line(v, &u.medium, input::UTM_MAX, &format!("{prefix}.medium"));
    input::line(v, &u.campaign, input::UTM_MAX, &format!("{prefix}.campaign"));
}

/// A batched click made storable: every text clipped to its cap, printable only.
pub(crate) fn clean_click(c: &mut RecordClickRequest) {
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
pub(crate) fn check_click_id(v: &mut Violations, value: &str, field: &str) {
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
pub(crate) fn check_click(v: &mut Violations, c: &RecordClickRequest) {
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

pub(crate) fn party_kind(v: &mut Violations, value: i32, field: &str) -> Option<PartyKind> {
    match PbPartyKind::try_from(value) {
        Ok(PbPartyKind::Supplier) => Some(PartyKind::Supplier),
        Ok(PbPartyKind::Couple) => Some(PartyKind::Couple),
        _ => {
            v.add(field, "is required: SUPPLIER or COUPLE");
            None
        }
    }
}

pub(crate) fn vendor_type(
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use referral_common::{click_id::ClickKeys, config::Secret};

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
