//! The routes: one module per service's resources, the route table they make up
//! ([`table`], in docs/api.md's order) and the router built from it ([`router`]). Each route
//! says its method and documented path, whether it needs a bearer token, which RPC it maps
//! to and its handler ([`route`]); `/openapi.json` is generated from the same table ([`openapi`]),
//! so the two cannot drift.

pub mod openapi;
pub mod route;
pub mod router;
pub mod table;

// One module per service's resources.
pub mod analytics;
pub mod api_keys;
pub mod audit;
pub mod events;
pub mod fraud;
pub mod incentive;
pub mod invite;
pub mod parked;
pub mod privacy;
pub mod unsubscribe;
pub mod webhook;

// Operations and the browser's assets.
pub mod dashboard;
pub mod ops;
pub mod sdk;

// `/r/{code}`: the redirect, its referral-code cache, its landing URLs and its click batcher.
pub mod clicks;
pub mod code_cache;
pub mod landing;
pub mod redirect;

// The paths other crates (and the gateway's tests) name.
pub use self::{
    route::{Answer, Auth, Body, Handler, RawRequest, Route, Rpc},
    router::router,
    table::table,
};
