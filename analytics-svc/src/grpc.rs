//! The tonic AnalyticsService: decode, authorize, validate, read rollups, compute the
//! metric with `domain`, map errors. Global analytics are for admins (and services); a
//! member may read only its own funnel.

use std::sync::Arc;

use referral_proto::analytics::v1::analytics_service_server::AnalyticsService;

use crate::{settings::Settings, store::Store};

pub struct AnalyticsApi<S> {
    store: S,
    settings: Arc<Settings>,
}

impl<S: Store> AnalyticsApi<S> {
    pub fn new(store: S, settings: Settings) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

#[tonic::async_trait]
impl<S: Store> AnalyticsService for AnalyticsApi<S> {}
