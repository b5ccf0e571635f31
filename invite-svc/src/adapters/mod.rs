//! The edges of invite-svc. Inbound: the gRPC services (`grpc`), fraud-svc's log
//! (`consumers`), and the background drivers (`scheduler`, `sweeper`). Outbound: the mail
//! and SMS senders (`sender`) and the fraud-svc client (`fraud`). They only translate and
//! call `app`; none calls another.

pub mod consumers;
pub mod fraud;
pub mod grpc;
pub mod privacy_parts;
pub mod scheduler;
pub mod sender;
pub mod sweeper;
