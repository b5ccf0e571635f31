//! Outbound webhooks (API.md, analytics-svc): admins register endpoints; every event of the
//! three logs (invite, fraud, incentive) that an endpoint subscribes to becomes a delivery
//! row, written in the same transaction as the consumer's offset (nothing lost); a
//! dispatcher leases due deliveries (two replicas never send the same one at once), signs
//! them per Standard Webhooks, POSTs them through the SSRF guard, and records each attempt.

pub mod api;
pub mod consumer;
pub mod dispatcher;
pub mod retry;
pub mod service;
pub mod settings;
pub mod signing;
pub mod store;
pub mod target;
