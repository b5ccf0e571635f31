//! Recording clicks: one from a caller (checked, its code known), or a batch the gateway's
//! redirect path collected (each click cleaned, unknown codes counted, never refused).

use chrono::Duration;
use referral_common::{
    ApiError, ApiResult, Violations,
    auth::Principal,
    ids::{self, from_ts},
    input,
};
use referral_proto::invite::v1::{RecordClickRequest, RecordClicksRequest};

use super::{
    App, ClientContext,
    fields::{check_click, clean_click},
};
use crate::{
    domain::codes,
    store::{ClickRow, ClicksOutcome, Store},
};

/// Clicks one RecordClicks import may carry.
const MAX_CLICK_IMPORT: usize = 10_000;

impl<S: Store> App<S> {
    /// One click, as stored (a replayed click id answers the first recording).
    pub async fn record_click(
        &self,
        p: &Principal,
        mut body: RecordClickRequest,
        client: &ClientContext,
    ) -> ApiResult<ClickRow> {
        if !p.is_privileged() {
            // Only imports (admin, service) may say when a click happened.
            body.occurred_at = None;
        }
        let mut v = Violations::default();
        v.require(&body.code, "code");
        check_click(&mut v, &body);
        v.into_result()?;
        let code = self.find_code(&body.code).await?;
        let row = self.click_row(&body, code.code.clone(), client);
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
        Ok(stored)
    }

    /// A batch of visitors' clicks (admin or service): how many were recorded and how many
    /// named no known code.
    pub async fn record_clicks(&self, mut body: RecordClicksRequest) -> ApiResult<ClicksOutcome> {
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
        Ok(ClicksOutcome {
            recorded: out.recorded,
            unknown_codes: out.unknown_codes + unknown,
        })
    }

    /// The stored row of a recorded click (the code already normalised).
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
        // No UTM tags are empty ones.
        let utm = req.utm.clone().unwrap_or_default();
        ClickRow {
            // A click recorded without an id gets a signed one, good for attribution at once.
            click_id: if req.click_id.is_empty() {
                self.config.click_keys.sign(&code, at)
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
            expires_at: at + Duration::days(self.config.attribution_window_days),
            previous_click_id: req.previous_click_id.clone(),
        }
    }
}
