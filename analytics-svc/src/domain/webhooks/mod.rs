//! Outbound webhooks' rules (docs/api.md, analytics-svc): when a failed delivery is retried
//! or an endpoint disabled (`retry`), how a delivery is signed per Standard Webhooks
//! (`signing`), and which targets a delivery may reach (`target`, the SSRF guard).

pub mod retry;
pub mod signing;
pub mod target;
