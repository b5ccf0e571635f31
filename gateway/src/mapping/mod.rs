//! JSON <-> proto: parsing and decoding request JSON into messages (the proto3 JSON
//! mapping), the proto descriptors, query parameters, the input rules every field is held
//! to, and gRPC status -> HTTP errors. (The OpenAPI document, built from the route table,
//! is `routes::openapi`: the mapping never looks up at the routes.)

pub mod descriptor;
pub mod errors;
pub mod input_rules;
pub mod json;
pub mod query;
