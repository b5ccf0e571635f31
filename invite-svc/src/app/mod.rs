//! The use cases of invite-svc, one module each: the one place that orchestrates domain
//! rules, store calls and outgoing calls, shared by every adapter that triggers it. "What
//! happens when a signup arrives" is answered by [`attribute_signup`], "when an invitation
//! is due" by [`deliver_due_invitations`], and so on; the adapters only decode, call one
//! function here and encode its answer.

pub mod api_keys;
pub mod attribute_signup;
pub mod batch_create_invitations;
pub mod cancel_invitation;
pub mod clock;
pub mod consent;
pub mod create_invitation;
pub mod create_referral_code;
pub mod deliver_due_invitations;
pub mod fields;
pub mod fraud_decisions;
pub mod invitations;
pub mod parked_sends;
pub mod privacy;
pub mod privacy_requests;
pub mod provider_webhook_event;
pub mod record_clicks;
pub mod referral_codes;
pub mod referrers;
pub mod report_conversion;
pub mod sweep;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use referral_common::{ApiError, ApiResult, auth::Principal, ids, paging};

use crate::{adapters::fraud::FraudGate, config::RuntimeConfig, store::Store};

/// Tries at a free referral code before giving up (codes are random; a clash is rare).
const MAX_CODE_ATTEMPTS: usize = 5;

/// What the use cases work with: the store, the runtime configuration and fraud-svc.
pub struct App<S> {
    store: S,
    config: Arc<RuntimeConfig>,
    fraud: FraudGate,
}

impl<S: Store> App<S> {
    pub fn new(store: S, config: RuntimeConfig, fraud: FraudGate) -> Self {
        Self {
            store,
            config: Arc::new(config),
            fraud,
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }
}

/// Where a web call came from, as the gateway saw it.
#[derive(Default, Clone)]
pub struct ClientContext {
    pub ip: String,
    pub device_id: String,
}

/// Trims `rows` (fetched one past `size`) to one page and says where the next page starts:
/// after the page's last row, or nowhere ("") when this is the last page.
pub(crate) fn next_page<T>(rows: &mut Vec<T>, size: u32, id: impl Fn(&T) -> &str) -> String {
    if rows.len() <= size as usize {
        return String::new();
    }
    rows.truncate(size as usize);
    // No last row only for a page of 0, which `paging::page_size` never gives: no next page.
    rows.last()
        .map(|r| paging::encode_token(id(r)))
        .unwrap_or_default()
}

/// A backfilled instant: admins and services import history; it must be in the past.
pub(crate) fn backfill_instant(p: &Principal, at: Option<DateTime<Utc>>) -> ApiResult<Option<DateTime<Utc>>> {
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
