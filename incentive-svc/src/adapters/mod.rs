//! incentive-svc's inbound adapters: they only translate (decode, call one `app` function,
//! encode the answer, map errors) and never call each other.
//!
//! - [`grpc`]: the tonic `IncentiveService`.
//! - [`consumers`]: invite-svc's and fraud-svc's event logs, decoded into ledger work.
//! - [`scheduler`]: the periodic driver of `app::advance_rewards`.

pub mod consumers;
pub mod grpc;
pub mod scheduler;
