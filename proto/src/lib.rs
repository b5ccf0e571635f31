//! The v1 protobuf surface of referral-mesh, generated at build time, with proto3 JSON
//! mapping (pbjson) on every message and the descriptor set for reflection.

#![allow(clippy::all, clippy::pedantic)]

/// Encoded `FileDescriptorSet` of every referral proto (server reflection, OpenAPI).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub mod common {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/referral.common.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/referral.common.v1.serde.rs"));
    }
}
pub mod invite {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/referral.invite.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/referral.invite.v1.serde.rs"));
        pub mod events;
    }
}
pub mod fraud {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/referral.fraud.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/referral.fraud.v1.serde.rs"));
        pub mod events;
    }
}
pub mod incentive {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/referral.incentive.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/referral.incentive.v1.serde.rs"));
        pub mod events;
    }
}
pub mod analytics {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/referral.analytics.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/referral.analytics.v1.serde.rs"));
    }
}
pub mod events {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/referral.events.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/referral.events.v1.serde.rs"));
        mod names;
        pub use names::EVENT_TYPES;
    }
}

mod timestamp;

pub use timestamp::Timestamp;
