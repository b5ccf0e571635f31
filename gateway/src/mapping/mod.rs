//! JSON <-> proto: parsing and decoding request JSON into messages (the proto3 JSON
//! mapping), the proto descriptors, query parameters, the input rules every field is held
//! to, gRPC status -> HTTP errors, and the OpenAPI document built from the route table.

pub mod descriptor;
pub mod errors;
pub mod input_rules;
pub mod json;
pub mod openapi;
pub mod query;
