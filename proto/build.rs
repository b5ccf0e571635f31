//! Compiles the v1 protos without protoc: protox parses them, tonic-prost-build writes the
//! messages and services, pbjson-build their proto3 JSON mapping, and the descriptor set is
//! kept for server reflection and the gateway's OpenAPI document.
use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "referral/common/v1/common.proto",
    "referral/invite/v1/invite.proto",
    "referral/fraud/v1/fraud.proto",
    "referral/incentive/v1/incentive.proto",
    "referral/analytics/v1/analytics.proto",
    "referral/events/v1/events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=referral");
    // Each file too: a directory's own mtime does not always move when a file in it is
    // edited, and a stale build then misses a new field.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    let descriptor_path = out.join("descriptor.bin");
    fs::write(&descriptor_path, fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .generate_default_stubs(true)
        // Timestamps get proto3 JSON's canonical "Z" form (see src/timestamp.rs); the other
        // well-known types are pbjson-types'.
        .extern_path(".google.protobuf.Timestamp", "crate::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&fs::read(&descriptor_path)?)?
        .emit_fields()
        .build(&[".referral"])?;
    Ok(())
}
