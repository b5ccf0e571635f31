//! What every referral-mesh service needs and nothing domain-specific: configuration,
//! telemetry, the gRPC server bootstrap, auth, errors as `Status`, storage backends, the
//! outbox and event log, event consumers, idempotency keys and rate limits.

pub mod auth;
pub mod balance;
pub mod click_id;
pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod metrics;
pub mod outbox;
pub mod paging;
pub mod ratelimit;
pub mod server;
pub mod telemetry;

pub use error::{ApiError, ApiResult, Violations};
