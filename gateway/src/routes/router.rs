//! The router built from the route table: requests grouped by axum path, dispatched to the
//! route of their method and `:action`, the RPC's JSON input assembled from body, query,
//! path and connection, and the edge's middlewares around every request.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Extension, Router,
    body::Body as HttpBody,
    extract::{FromRequestParts, Path, Query, Request},
    http::{Method, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use referral_common::auth::Role;
use serde_json::{Map, Value};

use super::{
    ops::OpenApiDocument,
    route::{Auth, Body, Handler, RawRequest, Route, Rpc, read_body},
    table::table,
};
use crate::{
    edge::{
        auth::{self, Authenticator},
        caller::Caller,
        client_ip,
        context::CallContext,
        cookies, cors,
        metrics::{self, RouteLabel},
        ratelimit, request_id,
    },
    mapping::{
        errors::{HttpError, HttpResult},
        input_rules, json, query,
    },
    routes::openapi,
    state::AppState,
};

/// The router for every route of the table, with the middlewares every request passes.
pub fn router(state: AppState) -> Router {
    // Group by axum path: `:action` routes share their path with the plain ones.
    let mut by_path: BTreeMap<String, Vec<&'static Route>> = BTreeMap::new();
    for route in table() {
        by_path.entry(route.router_path().0).or_default().push(route);
    }
    let mut router = Router::new();
    for (path, routes) in by_path {
        let mut methods: Vec<Method> = Vec::new();
        for r in &routes {
            if !methods.contains(&r.method) {
                methods.push(r.method.clone());
            }
        }
        let mut method_router = axum::routing::MethodRouter::new();
        for method in methods {
            let Ok(filter) = MethodFilter::try_from(method.clone()) else {
                continue;
            };
            let group: Arc<Vec<&'static Route>> =
                Arc::new(routes.iter().copied().filter(|r| r.method == method).collect());
            let all: Arc<Vec<&'static Route>> = Arc::new(routes.clone());
            method_router = method_router.merge(on(
                filter,
                move |axum::extract::State(state): axum::extract::State<AppState>, req: Request| {
                    let (group, all) = (group.clone(), all.clone());
                    async move {
                        // `PUT …/{id}:simulate` names an action only POST has: 405, not the
                        // plain PUT route with `id:simulate` as its id.
                        if let Some(allow) = other_methods_action(&all, &group, req.uri().path()) {
                            return method_not_allowed(&allow);
                        }
                        dispatch(state, &group, req).await
                    }
                },
            ));
        }
        let routes = Arc::new(routes);
        let method_router = method_router.fallback(move |req: Request| {
            let allow = allowed_methods(&routes, req.uri().path());
            async move { method_not_allowed(&allow) }
        });
        router = router.route(&path, method_router);
    }
    // `/openapi.json` (`ops::openapi`) answers the document of this very table.
    let document = OpenApiDocument::new(&openapi::document(&state.settings.public_url));
    // Each middleware gets only what it reads: the edge knows nothing of the shared state.
    let limits = Arc::new(state.limits.clone());
    let authenticator = Arc::new(Authenticator {
        keys: state.keys.clone(),
        api_keys: state.clients.api_keys.clone(),
        timeout: state.settings.upstream_timeout,
    });
    let trusted_proxies: Arc<[ipnet::IpNet]> = state.settings.trusted_proxies.clone().into();
    let router = router
        .fallback(|req: Request| async move {
            HttpError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
                .into_response()
        })
        .layer(Extension(document))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            ratelimit::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            trusted_proxies,
            client_ip::middleware,
        ))
        .layer(axum::middleware::from_fn(metrics::middleware))
        .layer(axum::middleware::from_fn(request_id::middleware));
    // Outside auth and limits: a preflight carries no token, and a 401 or 429 must reach the
    // page's script readable.
    let router = match cors::layer(&state.settings) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            HttpError::internal("internal error").into_response()
        }))
        .with_state(state)
}

/// The methods of the routes at `path` (those of its `:action` when it names one of them),
/// with HEAD wherever GET is (axum answers HEAD with the GET route), for `Allow`.
fn allowed_methods(routes: &[&'static Route], path: &str) -> String {
    let action = path
        .rsplit('/')
        .next()
        .and_then(|last| last.rsplit_once(':'))
        .map(|(_, action)| action)
        .filter(|action| routes.iter().any(|r| r.router_path().1 == Some(*action)));
    let mut methods: Vec<&str> = Vec::new();
    for r in routes.iter().filter(|r| r.router_path().1 == action) {
        if !methods.contains(&r.method.as_str()) {
            methods.push(r.method.as_str());
        }
        if r.method == Method::GET && !methods.contains(&"HEAD") {
            methods.push("HEAD");
        }
    }
    methods.join(", ")
}

/// `Allow` when `path` names an `:action` that routes of other methods have but `group` (this
/// method's routes) does not; `None` otherwise (an unknown action is no route: 404).
fn other_methods_action(all: &[&'static Route], group: &[&'static Route], path: &str) -> Option<String> {
    let (_, action) = path.rsplit('/').next()?.rsplit_once(':')?;
    let known = |routes: &[&'static Route]| routes.iter().any(|r| r.router_path().1 == Some(action));
    (known(all) && !known(group)).then(|| allowed_methods(all, path))
}

/// 405 with `Allow` (RFC 9110 section 15.5.6: the server MUST send it).
fn method_not_allowed(allow: &str) -> Response {
    let mut resp = HttpError::method_not_allowed().into_response();
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        resp.headers_mut().insert(header::ALLOW, value);
    }
    resp
}

async fn dispatch(state: AppState, candidates: &[&'static Route], req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let params = match Path::<Vec<(String, String)>>::from_request_parts(&mut parts, &state).await {
        Ok(Path(p)) => p,
        Err(rejection) => {
            return HttpError::new(tonic::Code::InvalidArgument, rejection.body_text()).into_response();
        }
    };
    let Some((route, params)) = select(candidates, params) else {
        return HttpError::not_found(format!("no route for {} {}", parts.method, parts.uri.path()))
            .into_response();
    };
    let mut resp = match handle(state, route, parts, body, params).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(RouteLabel(route.path));
    resp
}

/// The route among those sharing an axum path: `…/{id}:cancel` by its action, else the
/// plain one. An unknown action is no route at all.
fn select(
    candidates: &[&'static Route],
    mut params: Vec<(String, String)>,
) -> Option<(&'static Route, Vec<(String, String)>)> {
    if let Some((_, last)) = params.last_mut()
        && let Some((value, action)) = last.rsplit_once(':')
        && let Some(route) = candidates.iter().find(|r| r.router_path().1 == Some(action))
    {
        *last = value.to_string();
        return Some((route, params));
    }
    candidates
        .iter()
        .find(|r| r.router_path().1.is_none())
        .map(|r| (*r, params))
}

async fn handle(
    state: AppState,
    route: &'static Route,
    parts: Parts,
    body: HttpBody,
    params: Vec<(String, String)>,
) -> HttpResult {
    if route.auth == Auth::Bearer {
        let caller = parts
            .extensions
            .get::<Caller>()
            .unwrap_or(&Caller::Anonymous)
            .require()?;
        check_key_scope(route, caller)?;
    }
    let ctx = CallContext::from_parts(&parts, state.settings.upstream_timeout)?;
    match &route.handler {
        Handler::Json { call, decodes, .. } => {
            let mut input = input(route, &parts, body, &params, &ctx, state.settings.max_body_bytes).await?;
            input_rules::whole_numbers(&mut input);
            json::refuse_nulls(&input)?;
            refuse_enum_numbers(route, &input)?;
            decodes(input.clone())?;
            call(state, ctx, input).await
        }
        Handler::Raw(f) => {
            let body_limit = state.settings.max_body_bytes;
            Ok(f(
                state,
                RawRequest {
                    parts,
                    body,
                    params,
                    ctx,
                    body_limit,
                },
            )
            .await)
        }
    }
}

/// An API key calls only routes that name a scope it holds (403 otherwise, before any
/// service is asked); every other caller passes on to the route's own rules.
fn check_key_scope(route: &Route, caller: &referral_common::auth::Principal) -> HttpResult<()> {
    if caller.role != Role::ApiKey {
        return Ok(());
    }
    match route.key_scope {
        Some(scope) if caller.scopes.contains(scope) => Ok(()),
        Some(scope) => Err(HttpError::new(
            tonic::Code::PermissionDenied,
            format!("this API key lacks the {scope} scope"),
        )),
        None => Err(HttpError::new(
            tonic::Code::PermissionDenied,
            format!("API keys cannot call {} {}", route.method, route.path),
        )),
    }
}

/// The RPC's request as JSON: the body (where the route binds it), then query parameters,
/// then path parameters and the connection's fields, which win.
async fn input(
    route: &'static Route,
    parts: &Parts,
    body: HttpBody,
    params: &[(String, String)],
    ctx: &CallContext,
    limit: usize,
) -> HttpResult<Value> {
    let Some(rpc) = &route.rpc else {
        return Err(HttpError::internal(format!("route {} has no RPC", route.path)));
    };
    let mut map = Map::new();
    if rpc.body != Body::None {
        let bytes = read_body(parts, body, limit).await?;
        // No body is `{}`; any body is JSON (white space alone is not: RFC 8259 wants a value).
        if !bytes.is_empty() {
            json::check_content_type(&parts.headers)?;
            let value = json::parse(&bytes)?;
            match (rpc.body, value) {
                (Body::Whole, Value::Object(m)) => map = m,
                (Body::Field(f), v @ Value::Object(_)) => {
                    map.insert(f.to_string(), v);
                }
                _ => {
                    return Err(HttpError::invalid_field(
                        "",
                        "the request body must be a JSON object",
                    ));
                }
            }
        }
    }
    let pairs: Vec<(String, String)> = Query::try_from_uri(&parts.uri).map(|q| q.0).map_err(|e| {
        HttpError::new(
            tonic::Code::InvalidArgument,
            format!("malformed query string: {e}"),
        )
    })?;
    query::apply(route.query_params(), pairs, &mut map)?;
    for (name, value) in params {
        let field = route
            .path_params()
            .into_iter()
            .find(|p| p == name)
            .map(|p| route.field_of(p))
            .unwrap_or(name.as_str());
        set_field(&mut map, field, Value::String(value.clone()));
    }
    for (field, value) in &rpc.fixed {
        set_field(&mut map, field, Value::String((*value).to_string()));
    }
    if let Some((cookie, field)) = rpc.cookie_field
        && field_is_empty(&map, field)
        && let Some(value) = cookies::get(&parts.headers, cookie)
        // A stale or foreign cookie must not turn a signup into a 400: out-of-shape values
        // are ignored here, and a well-shaped bad one is refused by invite-svc with a reason.
        && value.len() <= referral_common::click_id::MAX_LEN
        && value.bytes().all(|b| b.is_ascii_graphic())
    {
        set_field(&mut map, field, Value::String(value));
    }
    if rpc.client_fields {
        match ctx.client_ip.0 {
            Some(ip) => set_field(&mut map, "ip", Value::String(ip.to_string())),
            None => set_field(&mut map, "ip", Value::String(String::new())),
        }
        if let Some(device) = &ctx.device_id {
            set_field(&mut map, "deviceId", Value::String(device.clone()));
        }
    }
    Ok(Value::Object(map))
}

/// Enum fields given as numbers: a 400 naming each (see `input_rules::enum_numbers`).
fn refuse_enum_numbers(route: &Route, input: &Value) -> HttpResult<()> {
    let Some((message, _, _)) = route.rpc.as_ref().and_then(Rpc::messages) else {
        return Ok(());
    };
    let violations = input_rules::enum_numbers(&message, input);
    if violations.is_empty() {
        return Ok(());
    }
    Err(HttpError::invalid_request(&violations))
}

/// Whether the body leaves a field out or empty (under either spelling).
fn field_is_empty(map: &Map<String, Value>, json_name: &str) -> bool {
    let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let target = norm(json_name);
    map.iter()
        .filter(|(k, _)| norm(k) == target)
        .all(|(_, v)| v.is_null() || v.as_str().is_some_and(str::is_empty))
}

/// Sets a field by JSON name, replacing it under either spelling (`referrerId` or
/// `referrer_id`) so the message never sees both.
fn set_field(map: &mut Map<String, Value>, json_name: &str, value: Value) {
    let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let target = norm(json_name);
    map.retain(|k, _| norm(k) != target);
    map.insert(json_name.to_string(), value);
}

#[cfg(test)]
mod tests {
    use referral_common::auth::{Principal, Role, Scope, Scopes};

    use super::*;

    fn route(method: &str, path: &str) -> &'static Route {
        table()
            .iter()
            .find(|r| r.method.as_str() == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is routed"))
    }

    #[test]
    fn keys_reach_only_the_routes_of_their_scopes() {
        use Scope::*;
        for (method, path, scope) in [
            ("POST", "/v1/conversions", ConversionsWrite),
            ("POST", "/v1/invitations", InvitationsWrite),
            ("POST", "/v1/invitations:batchCreate", InvitationsWrite),
            ("POST", "/v1/signups", SignupsWrite),
            ("GET", "/v1/metrics/viral", ReportsRead),
            ("GET", "/v1/metrics/funnel", ReportsRead),
            ("GET", "/v1/leaderboard", ReportsRead),
        ] {
            assert_eq!(route(method, path).key_scope, Some(scope), "{method} {path}");
        }
        // Admin routes name no scope: no key gets through, whatever it holds.
        for (method, path) in [
            ("POST", "/v1/api-keys"),
            ("GET", "/v1/api-keys"),
            ("POST", "/v1/api-keys/{id}:rotate"),
            ("DELETE", "/v1/api-keys/{id}"),
            ("GET", "/v1/suppressions"),
            ("DELETE", "/v1/suppressions/{id}"),
            ("GET", "/v1/audit"),
            ("GET", "/v1/fraud/cases"),
            ("PUT", "/v1/referrers/{id}/tier"),
            ("POST", "/v1/webhook-endpoints"),
            ("GET", "/v1/events"),
            ("PUT", "/v1/reward-programs/{id}"),
            ("DELETE", "/v1/people/{id}"),
        ] {
            assert_eq!(route(method, path).key_scope, None, "{method} {path}");
        }
        for r in table() {
            assert!(r.key_scope.is_none() || r.auth == Auth::Bearer, "{}", r.path);
        }
        let all: Scopes = Scope::ALL.into_iter().collect();
        let key = Principal::api_key("k", all);
        let e = check_key_scope(route("GET", "/v1/audit"), &key).unwrap_err();
        assert_eq!(e.status.as_u16(), 403);
        assert!(check_key_scope(route("POST", "/v1/conversions"), &key).is_ok());
        let reader = Principal::api_key("k", Scopes::NONE.with(ReportsRead));
        let e = check_key_scope(route("POST", "/v1/conversions"), &reader).unwrap_err();
        assert!(e.message.contains("conversions:write"), "{}", e.message);
        // People pass on to the services' own rules.
        let admin = Principal::new("ops", Role::Admin, None);
        assert!(check_key_scope(route("GET", "/v1/audit"), &admin).is_ok());
    }
}
