//! Every route of the gateway, in docs/api.md's order: the router and `/openapi.json` are
//! both built from this list. Each service's resources are listed by their own module.

use std::sync::LazyLock;

use super::{
    analytics, api_keys, audit, dashboard, fraud, incentive, invite, ops, parked, privacy, route::Route,
    unsubscribe,
};

pub fn table() -> &'static [Route] {
    &TABLE
}

static TABLE: LazyLock<Vec<Route>> = LazyLock::new(routes);

fn routes() -> Vec<Route> {
    [
        invite::routes(),
        fraud::routes(),
        incentive::routes(),
        analytics::routes(),
        privacy::routes(),
        unsubscribe::routes(),
        audit::routes(),
        api_keys::routes(),
        parked::routes(),
        ops::routes(),
        dashboard::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
