//! What every referral-mesh service needs and nothing domain-specific: configuration,
//! telemetry, the gRPC server bootstrap, auth, errors as `Status`, storage backends, the
//! outbox and event log, event consumers, idempotency keys and rate limits.

pub mod audit;
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
pub mod input;
pub mod landing;
pub mod metrics;
pub mod outbox;
pub mod paging;
pub mod parked;
pub mod pii;
pub mod privacy;
pub mod ratelimit;
pub mod redis_client;
pub mod retention;
pub mod server;
pub mod service;
pub mod supervisor;
pub mod telemetry;
pub mod tls;

pub use error::{ApiError, ApiResult, Violations};
