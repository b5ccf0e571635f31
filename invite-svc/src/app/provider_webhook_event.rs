//! A mail provider's webhook (delivered, bounced, complained...): its signature checked
//! against real time, then each event applied once to the invitation it names.

use referral_common::{ApiError, ids};
use referral_proto::invite::v1::EmailWebhookRequest;

use super::App;
use crate::{
    domain::webhooks::{self, WebhookError},
    store::{Store, WebhookTally},
};

/// Why a provider's call is not applied.
pub enum WebhookRefused {
    /// The signature does not verify (or is too old): UNAUTHENTICATED.
    Unauthenticated(String),
    Api(ApiError),
}

impl From<ApiError> for WebhookRefused {
    fn from(e: ApiError) -> Self {
        WebhookRefused::Api(e)
    }
}

impl<S: Store> App<S> {
    /// What the provider's events changed (recorded, ignored, replayed).
    pub async fn provider_webhook_event(
        &self,
        req: &EmailWebhookRequest,
    ) -> Result<WebhookTally, WebhookRefused> {
        // Provider signatures are checked against real time, whatever the scheduling clock.
        let events = match webhooks::verify_and_parse(
            &req.provider,
            &self.config.webhooks,
            &req.headers,
            &req.body,
            ids::now().timestamp(),
        ) {
            Ok(events) => events,
            Err(WebhookError::NotConfigured(_)) => {
                return Err(ApiError::NotFound(format!(
                    "no webhook is configured for provider {:?}; set its secret to enable it",
                    req.provider
                ))
                .into());
            }
            Err(e @ WebhookError::Unauthenticated(_)) => {
                return Err(WebhookRefused::Unauthenticated(e.to_string()));
            }
            Err(WebhookError::Malformed(why)) => return Err(ApiError::invalid("body", why).into()),
        };
        let provider = req.provider.to_ascii_lowercase();
        let now = ids::now();
        // Hard bounces and complaints suppress their address with the status change.
        let suppressions =
            super::consent::webhook_suppressions(&self.store, &self.config.consent, &events, now)
                .await
                .map_err(ApiError::from)?;
        let tally = self
            .store
            .apply_provider_events(&provider, &events, &suppressions, now)
            .await
            .map_err(ApiError::from)?;
        Ok(tally)
    }
}
