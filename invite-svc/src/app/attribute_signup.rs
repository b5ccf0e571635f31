//! Attributing a signup: what happens when a signup arrives, from its touches to the
//! stored attribution.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    auth::{Principal, Scope},
    ids, input,
};
use referral_proto::{
    fraud::v1::AssessSignupRequest,
    invite::v1::{self as pb, RecordSignupRequest},
};

use super::{
    App, ClientContext, backfill_instant,
    fields::{check_click_id, instant, party_kind, vendor_type},
};
use crate::{
    domain::{
        attribution::{self, Candidates, Decision, NotAttributedReason, SignupFacts, Touch, TouchKind},
        click_ids::{self, ClickEvidence, RejectedClick},
        codes, contact,
        party::{self, PartyKind},
        review, status,
    },
    store::{ClickRow, CodeRow, InvitationRow, SignupRow, Store, names},
};

impl<S: Store> App<S> {
    /// A signup arrives: checked and authorized; answered from the first recording when the
    /// user signed up before; else every touch it came by gathered (invitation id, typed
    /// code, click id, invited e-mail), the winner decided by `domain::attribution`,
    /// fraud-svc asked about the referral, and the signup stored with its touchpoints.
    pub async fn attribute_signup(
        &self,
        p: &Principal,
        req: RecordSignupRequest,
        client: &ClientContext,
    ) -> ApiResult<SignupRow> {
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
            return Ok(existing);
        }
        let now = backfill.unwrap_or_else(ids::now);
        let window = Duration::days(self.config.attribution_window_days);
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
        // The signup's e-mail as the store finds it: by keyed hash, never the address.
        let email_key = email.as_deref().map(|e| self.store.pii().lookup("email", e));
        if let Some(e) = &email_key
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
            // Compared with the referrers' stored keys (self-referral): both keyed hashes.
            email_normalized: email_key.clone(),
            at: now,
        };
        let decision = attribution::resolve_with_window(
            &facts,
            &candidates,
            |r: &str| referrer_emails.get(r).cloned(),
            self.config.attribution_window_days,
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
                    // A touch without an invitation or code: proto3's "" is none.
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
            risk_json = serde_json::to_string(&risk).map_err(|e| ApiError::Internal(e.into()))?;
        }
        let row = SignupRow {
            id: signup_id,
            user_id: req.user_id.clone(),
            user_kind: user_kind.as_str().into(),
            vendor_type: vendor,
            email: req.email.trim().to_string(),
            // No e-mail given: "" is how the column says none (never matched by the store).
            email_norm: email_key.unwrap_or_default(),
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
        Ok(stored)
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
            // No ids at all: no click was named, and there is nothing to reject.
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
            &self.config.click_keys,
            id,
            now,
            self.config.attribution_window_days,
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
        // Proto3 has no null: "" and CHANNEL_UNSPECIFIED say "no code, invitation or channel".
        code: t.code.clone().unwrap_or_default(),
        invitation_id: t.invitation_id.clone().unwrap_or_default(),
        referrer_id: t.referrer_id.clone(),
        channel: t
            .invitation_id
            .as_ref()
            .and_then(|id| channels.get(id))
            .map(|c| names::channel(c) as i32)
            .unwrap_or_default(),
        at: Some(ids::to_ts(t.at)),
    }
}
