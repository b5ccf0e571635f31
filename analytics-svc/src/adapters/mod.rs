//! analytics-svc's inbound adapters: they only translate (decode, call one `app` function,
//! encode the answer, map errors) and never call each other.
//!
//! - [`grpc`]: the tonic `AnalyticsService`.
//! - [`consumers`]: the invite, fraud and incentive event logs into the rollups.
//! - [`rebuild`]: one log replayed from offset 0 (`analytics-svc rebuild`).
//! - [`live`]: the live feed, tails of every log fanned in to `StreamEvents` clients.
//! - [`webhooks`]: the webhook consumers and the dispatcher (HTTP delivery, SSRF-guarded).

pub mod consumers;
pub mod grpc;
pub mod live;
pub mod rebuild;
pub mod webhooks;
