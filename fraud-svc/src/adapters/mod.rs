//! fraud-svc's inbound adapters: they only translate (decode and validate a request or an
//! event, call one `app` function, encode its answer, map errors) and never call each other.
//!
//! - [`grpc`]: the tonic `FraudService`;
//! - [`consumers`]: the consumer of invite-svc's event log.

pub mod consumers;
pub mod grpc;
