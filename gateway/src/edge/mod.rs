//! The edge: what every request passes before (and after) its route — who is on the other
//! end (client IP, bearer JWT or API key), its request id, rate limits, CORS, metrics — and
//! what the connection itself is allowed (connection caps). Nothing here knows a route, the
//! JSON mapping or the shared state: each middleware takes only what it needs.

pub mod api_keys;
pub mod auth;
pub mod caller;
pub mod client_ip;
pub mod conn_limit;
pub mod context;
pub mod cookies;
pub mod cors;
pub mod metrics;
pub mod ratelimit;
pub mod request_id;
