//! Reporting a conversion: a paid plan, from billing only.

use referral_common::{
    ApiError, ApiResult, Violations,
    auth::{Principal, Scope},
    ids, input,
};
use referral_proto::invite::v1::{self as pb, RecordConversionRequest};

use super::{App, fields::instant};
use crate::store::{ConversionRow, NewConversion, Store};

impl<S: Store> App<S> {
    /// A paid conversion reported by billing: checked, then recorded (first-paid and its
    /// attribution are decided in the store's transaction).
    pub async fn report_conversion(
        &self,
        p: &Principal,
        req: RecordConversionRequest,
    ) -> ApiResult<ConversionRow> {
        // Conversions are facts from billing: no person reports one, not even an admin.
        p.authorize(Scope::ConversionsWrite, |_| {
            Err(ApiError::PermissionDenied(
                "conversions are reported by billing: a service or an API key with conversions:write".into(),
            ))
        })?;
        let mut v = Violations::default();
        input::id(&mut v, &req.user_id, "userId");
        // Absent, it is refused just below; the empty value is never recorded.
        let value = req.value.clone().unwrap_or_default();
        if req.value.is_none() {
            v.add("value", "is required: {amountMinor, currency}");
        } else {
            // Bounded so that any number of conversions sums without overflow downstream.
            input::money(
                &mut v,
                value.amount_minor,
                &value.currency,
                self.config.max_amount_minor,
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
                // Always set here: an absent plan was refused above.
                plan: plan.unwrap_or_default(),
                annual: req.annual,
                occurred_at: occurred_at.unwrap_or_else(ids::now),
            })
            .await?;
        Ok(row)
    }
}
