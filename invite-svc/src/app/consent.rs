//! Consent and suppression: the unsubscribe link of every invitation email, what follows an
//! unsubscribe, a hard bounce, a complaint or an SMS STOP (the address suppressed, the queued
//! invitations to it cancelled), the refusal of new invitations to a suppressed address, and
//! the admins' list and lift. Addresses are handled only as keyed lookup hashes
//! (`PiiKeys::lookup`) and sealed copies (`PiiKeys::seal`); neither the store, the events nor
//! the logs ever see one in plain text.
//!
//! For the SMS issue: no inbound SMS endpoint exists yet; when one does, a STOP reply calls
//! [`suppress_phone`] with [`Reason::SmsStop`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    ids, input, paging,
    pii::PiiKeys,
};
use referral_proto::invite::v1::{ListSuppressionsRequest, SuppressionReason};

use crate::{
    app::next_page,
    domain::{
        contact,
        status::Channel,
        suppression::{self, ContactKind, Reason, UnsubscribeKey, UnsubscribeLinks},
        webhooks::{Outcome, ProviderEvent},
    },
    store::{
        InvitationRow, Store, StoreResult,
        consent::{ConsentHistoryRow, ConsentStore, LiftOutcome, NewSuppression, Suppressed, SuppressionRow},
    },
};

/// What the consent use cases need from the configuration (`config::consent_from`).
#[derive(Clone, Debug)]
pub struct ConsentSettings {
    pub pii: PiiKeys,
    pub key: UnsubscribeKey,
    /// The gateway's public base URL (`PUBLIC_URL`): the link is `{public_url}/u/{token}`.
    pub public_url: String,
    /// `mailto:unsubscribe@{mailto_domain}`.
    pub mailto_domain: String,
}

/// The address a message goes to, as suppressions know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Messaged {
    pub kind: ContactKind,
    /// The canonical address (normalised email, E.164 phone): sealed, never stored plain.
    pub canonical: String,
    /// Its lookup hash.
    pub key: String,
}

impl ConsentSettings {
    /// Fixed test keys, links to `http://127.0.0.1:8080`.
    pub fn for_tests() -> Self {
        Self {
            pii: PiiKeys::for_tests(),
            key: UnsubscribeKey::new("unsubscribe-key-for-tests-0123456789abcdef").expect("a long key"),
            public_url: "http://127.0.0.1:8080".into(),
            mailto_domain: "referral-mesh.localhost".into(),
        }
    }

    /// The unsubscribe links of an invitation's message.
    pub fn links(&self, invitation_id: &str) -> UnsubscribeLinks {
        UnsubscribeLinks::new(
            &self.public_url,
            &self.mailto_domain,
            &self.key.sign(invitation_id),
        )
    }

    /// The address an invitation of `channel` is sent to, if we send it.
    pub fn messaged(&self, channel: Channel, email: &str, phone: &str) -> Option<Messaged> {
        suppression::messaged_contact(channel, email, phone).map(|(kind, canonical)| Messaged {
            key: self.pii.lookup(kind.as_str(), &canonical),
            kind,
            canonical,
        })
    }

    /// The address of a stored invitation.
    pub fn messaged_by(&self, row: &InvitationRow) -> Option<Messaged> {
        let channel = Channel::parse(&row.channel).ok()?;
        self.messaged(channel, &row.recipient_email, &row.recipient_phone)
    }

    fn new_suppression(
        &self,
        to: &Messaged,
        reason: Reason,
        source_invitation_id: &str,
        at: DateTime<Utc>,
    ) -> NewSuppression {
        NewSuppression {
            id: ids::new_id(),
            contact_key: to.key.clone(),
            kind: to.kind.as_str().into(),
            address_sealed: self.pii.seal(&to.canonical),
            reason: reason.as_str().into(),
            source_invitation_id: source_invitation_id.into(),
            at,
        }
    }

    /// The address of a suppression, masked; empty when its sealed copy cannot be opened
    /// (sealed under a retired key, or erased).
    pub fn masked(&self, row: &SuppressionRow) -> String {
        let kind = if row.kind == "phone" {
            ContactKind::Phone
        } else {
            ContactKind::Email
        };
        self.pii
            .open(&row.address_sealed)
            .map(|a| suppression::mask(kind, &a))
            .unwrap_or_default()
    }
}

/// The refusal of an invitation to a suppressed address: the same whatever the reason.
pub fn refused() -> ApiError {
    ApiError::FailedPrecondition {
        message: suppression::REFUSAL.into(),
        reason: "RECIPIENT_SUPPRESSED",
    }
}

/// What the unsubscribe page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeView {
    pub masked_address: String,
    pub suppressed: bool,
}

/// The invitation and address a token names: a bad token is INVALID_ARGUMENT (400), a
/// valid one for an invitation we no longer hold (or one we never message) NOT_FOUND.
async fn token_subject<S: Store>(
    store: &S,
    settings: &ConsentSettings,
    token: &str,
) -> ApiResult<(InvitationRow, Messaged)> {
    let id = settings
        .key
        .verify(token)
        .map_err(|e| ApiError::invalid("token", e.to_string()))?;
    let row = store
        .get_invitation(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no invitation is unsubscribed by this link".into()))?;
    let to = settings
        .messaged_by(&row)
        .ok_or_else(|| ApiError::NotFound("no invitation is unsubscribed by this link".into()))?;
    Ok((row, to))
}

/// The unsubscribe page (GET): the masked address and whether it is already suppressed.
/// Changes nothing: link scanners follow every link in a message.
pub async fn check_unsubscribe<S: Store>(
    store: &S,
    settings: &ConsentSettings,
    token: &str,
) -> ApiResult<UnsubscribeView> {
    let (_, to) = token_subject(store, settings, token).await?;
    Ok(UnsubscribeView {
        masked_address: suppression::mask(to.kind, &to.canonical),
        suppressed: store.is_suppressed(&to.key).await?,
    })
}

/// One-click (RFC 8058) or the page's form: the invitation's address is suppressed and the
/// queued invitations to it cancelled. Repeating it changes nothing more.
pub async fn unsubscribe<S: Store>(
    store: &S,
    settings: &ConsentSettings,
    token: &str,
) -> ApiResult<UnsubscribeView> {
    let (row, to) = token_subject(store, settings, token).await?;
    let new = settings.new_suppression(&to, Reason::Unsubscribed, &row.id, ids::now());
    store.suppress(&new, suppression::CANCEL_REASON).await?;
    Ok(UnsubscribeView {
        masked_address: suppression::mask(to.kind, &to.canonical),
        suppressed: true,
    })
}

/// Suppresses a phone number (E.164 or as typed; `reason` is normally [`Reason::SmsStop`]):
/// for the inbound SMS endpoint of the SMS issue.
pub async fn suppress_phone<S: Store>(
    store: &S,
    settings: &ConsentSettings,
    phone: &str,
    reason: Reason,
    source_invitation_id: &str,
) -> ApiResult<Suppressed> {
    let canonical = contact::normalize_phone(phone).map_err(|e| ApiError::invalid("phone", e.to_string()))?;
    let to = Messaged {
        kind: ContactKind::Phone,
        key: settings.pii.lookup(ContactKind::Phone.as_str(), &canonical),
        canonical,
    };
    let new = settings.new_suppression(&to, reason, source_invitation_id, ids::now());
    Ok(store.suppress(&new, suppression::CANCEL_REASON).await?)
}

/// The suppressions a provider webhook's bounces and complaints cause, by invitation id, to
/// be written in the webhook's own transaction.
pub async fn webhook_suppressions<S: Store>(
    store: &S,
    settings: &ConsentSettings,
    events: &[ProviderEvent],
    at: DateTime<Utc>,
) -> StoreResult<HashMap<String, NewSuppression>> {
    let mut out = HashMap::new();
    for event in events {
        let reason = match event.outcome {
            Outcome::Bounced => Reason::HardBounce,
            Outcome::Complained => Reason::Complaint,
            _ => continue,
        };
        let Some(id) = event.invitation_id.as_deref() else {
            continue;
        };
        if out.contains_key(id) {
            continue;
        }
        if let Some(row) = store.get_invitation(id).await?
            && let Some(to) = settings.messaged_by(&row)
        {
            out.insert(id.to_string(), settings.new_suppression(&to, reason, id, at));
        }
    }
    Ok(out)
}

/// Active suppressions, newest first, a page at a time (admin).
pub async fn list_suppressions<S: ConsentStore>(
    store: &S,
    settings: &ConsentSettings,
    req: &ListSuppressionsRequest,
) -> ApiResult<(Vec<SuppressionRow>, String)> {
    let mut v = Violations::default();
    input::line(&mut v, &req.email, input::EMAIL_MAX, "email");
    input::line(&mut v, &req.phone, input::PHONE_MAX, "phone");
    v.into_result()?;
    let email = (!req.email.trim().is_empty())
        .then(|| contact::normalize_email(&req.email).map_err(|e| ApiError::invalid("email", e.to_string())))
        .transpose()?;
    let phone = (!req.phone.trim().is_empty())
        .then(|| contact::normalize_phone(&req.phone).map_err(|e| ApiError::invalid("phone", e.to_string())))
        .transpose()?;
    if email.is_some() && phone.is_some() {
        return Err(ApiError::invalid(
            "phone",
            "search by email or by phone, not both",
        ));
    }
    let key = match (email, phone) {
        (Some(e), _) => Some(settings.pii.lookup(ContactKind::Email.as_str(), &e)),
        (_, Some(p)) => Some(settings.pii.lookup(ContactKind::Phone.as_str(), &p)),
        _ => None,
    };
    let reason = match SuppressionReason::try_from(req.reason) {
        Ok(SuppressionReason::Unspecified) => None,
        Ok(r) => Some(r.as_str_name()),
        Err(_) => {
            return Err(ApiError::invalid(
                "reason",
                "must be one of UNSUBSCRIBED, HARD_BOUNCE, COMPLAINT, SMS_STOP",
            ));
        }
    };
    let size = paging::page_size(req.page_size)?;
    let before = paging::decode_token(&req.page_token)?;
    let mut rows = store
        .list_suppressions(key.as_deref(), reason, before.as_deref(), i64::from(size) + 1)
        .await?;
    let next = next_page(&mut rows, size, |r| &r.id);
    Ok((rows, next))
}

/// Lifts a suppression (admin), audited with before and after; lifting twice answers the same.
pub async fn lift_suppression<S: ConsentStore>(
    store: &S,
    actor: &Actor,
    id: &str,
) -> ApiResult<SuppressionRow> {
    let mut v = Violations::default();
    input::id(&mut v, id, "id");
    v.into_result()?;
    let audit = AuditEntry::new(actor, action::SUPPRESSION_LIFT, "suppression", id);
    match store.lift_suppression(id, ids::now(), &audit).await? {
        LiftOutcome::Lifted(row) | LiftOutcome::AlreadyLifted(row) => Ok(row),
        LiftOutcome::NotFound => Err(ApiError::not_found("suppression", id)),
    }
}

/// The consent history of a person's addresses (`PrivacySubject.contact_keys`), for their
/// export: each change with its reason and time, no address.
pub async fn history<S: ConsentStore>(store: &S, contact_keys: &[String]) -> StoreResult<serde_json::Value> {
    let rows: Vec<ConsentHistoryRow> = store.consent_history(contact_keys).await?;
    let at = |micros: i64| {
        DateTime::<Utc>::from_timestamp_micros(micros)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default()
    };
    Ok(serde_json::json!({
        "consentHistory": rows
            .iter()
            .map(|r| serde_json::json!({
                "action": r.action,
                "reason": r.reason,
                "sourceInvitationId": r.source_invitation_id,
                "by": if r.action == "LIFTED" { "an administrator" } else { "you or your mail provider" },
                "at": at(r.at),
            }))
            .collect::<Vec<_>>(),
    }))
}
