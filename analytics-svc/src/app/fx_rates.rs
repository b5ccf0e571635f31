//! `PUT /v1/fx-rates`, `GET /v1/fx-rates` (admin): the dated exchange rates revenue reports
//! convert with. A rate is units of the reporting currency (ANALYTICS_CURRENCY) per unit of
//! another, effective for conversions from its day until that currency's next dated rate;
//! putting a rate for a day that has one replaces it. Every put is audited.

use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids::{self, to_ts},
    input, paging,
};
use referral_proto::analytics::v1::{FxRate, ListFxRatesRequest, ListFxRatesResponse, PutFxRateRequest};

use crate::{
    domain::fx::{self, Rate},
    store::{FxRateRow, Store},
};

fn to_api(r: FxRateRow) -> FxRate {
    FxRate {
        effective_from: fx::day_text(r.effective_day),
        updated_at: chrono::DateTime::from_timestamp(r.updated_at, 0).map(to_ts),
        currency: r.currency,
        rate: r.rate,
    }
}

/// A put checked, naming each bad field: an ISO 4217 currency other than the reporting
/// one, a positive decimal rate within bounds, a `YYYY-MM-DD` day.
pub fn check(req: &PutFxRateRequest, reporting: &str) -> ApiResult<FxRateRow> {
    let mut v = Violations::default();
    if !input::is_currency(&req.currency) {
        v.add("currency", "must be an ISO 4217 code like EUR");
    } else if req.currency == reporting {
        v.add(
            "currency",
            format!("is the reporting currency (ANALYTICS_CURRENCY {reporting}): its rate is always 1"),
        );
    }
    let rate = if req.rate.len() > fx::RATE_MAX_CHARS + 8 {
        v.add("rate", "is too long");
        None
    } else {
        Rate::parse(&req.rate).map_err(|e| v.add("rate", e)).ok()
    };
    let day = fx::parse_day(&req.effective_from)
        .map_err(|e| v.add("effectiveFrom", e))
        .ok();
    v.into_result()?;
    Ok(FxRateRow {
        currency: req.currency.clone(),
        // Both present here: a missing one was a violation returned above.
        effective_day: day.unwrap_or_default(),
        rate: rate.map(Rate::to_text).unwrap_or_default(),
        updated_at: ids::now().timestamp(),
    })
}

pub async fn put<S: Store>(
    store: &S,
    p: &Principal,
    actor: &Actor,
    req: &PutFxRateRequest,
    reporting: &str,
) -> ApiResult<FxRate> {
    p.require_admin()?;
    let row = check(req, reporting)?;
    let subject = format!("{}@{}", row.currency, fx::day_text(row.effective_day));
    let audit = AuditEntry::new(actor, action::FX_RATE_PUT, "fx_rate", &subject);
    Ok(to_api(store.put_fx_rate(&row, &audit).await?))
}

pub async fn list<S: Store>(
    store: &S,
    p: &Principal,
    req: &ListFxRatesRequest,
) -> ApiResult<ListFxRatesResponse> {
    p.require_admin()?;
    let mut v = Violations::default();
    v.check(
        !req.currency.is_empty() && !input::is_currency(&req.currency),
        "currency",
        "must be an ISO 4217 code like EUR",
    );
    v.into_result()?;
    let size = paging::page_size(req.page_size)?;
    let after = match paging::decode_token(&req.page_token)? {
        None => None,
        Some(cursor) => Some(
            cursor
                .split_once('|')
                .and_then(|(c, d)| d.parse::<i64>().ok().map(|d| (c.to_string(), d)))
                .ok_or_else(|| ApiError::invalid("pageToken", "is not a token this API issued"))?,
        ),
    };
    let currency = (!req.currency.is_empty()).then_some(req.currency.as_str());
    let mut rows = store.list_fx_rates(currency, after, i64::from(size) + 1).await?;
    let next = if rows.len() > size as usize {
        rows.truncate(size as usize);
        rows.last()
            .map(|r| paging::encode_token(&format!("{}|{}", r.currency, r.effective_day)))
            // Only reached with rows left (more than a page): never empty.
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(ListFxRatesResponse {
        rates: rows.into_iter().map(to_api).collect(),
        next_page_token: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::record_activity::violated_fields as fields;

    fn req(currency: &str, rate: &str, day: &str) -> PutFxRateRequest {
        PutFxRateRequest {
            currency: currency.into(),
            rate: rate.into(),
            effective_from: day.into(),
        }
    }

    #[test]
    fn puts_are_checked_field_by_field() {
        let ok = check(&req("EUR", "0.8500", "2026-12-01"), "GBP").unwrap();
        assert_eq!((ok.currency.as_str(), ok.rate.as_str()), ("EUR", "0.85"));
        assert_eq!(fx::day_text(ok.effective_day), "2026-12-01");
        assert_eq!(fields(check(&req("GBP", "1", "2026-12-01"), "GBP")), ["currency"]);
        assert_eq!(fields(check(&req("eur", "1", "2026-12-01"), "GBP")), ["currency"]);
        assert_eq!(fields(check(&req("EUR", "-1", "2026-12-01"), "GBP")), ["rate"]);
        assert_eq!(
            fields(check(&req("EUR", &"1".repeat(100), "2026-12-01"), "GBP")),
            ["rate"]
        );
        assert_eq!(
            fields(check(&req("EUR", "1", "yesterday"), "GBP")),
            ["effectiveFrom"]
        );
        assert_eq!(
            fields(check(&req("", "", ""), "GBP")),
            ["currency", "rate", "effectiveFrom"]
        );
    }
}
