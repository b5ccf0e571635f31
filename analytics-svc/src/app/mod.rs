//! analytics-svc's use cases, one module each: the one place that orchestrates domain rules
//! and store calls, shared by every adapter that triggers it.
//!
//! - [`reports`]: one module per report (viral, funnel, timeseries, cohorts, attribution,
//!   leaderboard, super-connectors, experiment).
//! - [`apply_events`]: a consumed event applied to the rollups; [`rebuild`]: every rollup
//!   recomputed from the logs.
//! - [`record_activity`]: the marketplace's ACTIVATED / CHURNED reports.
//! - [`fx_rates`]: the dated exchange rates revenue is converted with.
//! - [`webhook_endpoints`]: endpoint management; [`webhook_fan_out`]: a consumed event
//!   turned into deliveries.

pub mod apply_events;
pub mod fx_rates;
pub mod privacy;
pub mod rebuild;
pub mod record_activity;
pub mod reports;
pub mod webhook_endpoints;
pub mod webhook_fan_out;
