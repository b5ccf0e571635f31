//! The route table and the router built from it. Each route says its method and documented
//! path, whether it needs a bearer token, which RPC it maps to (request message, body
//! binding, path parameters) and its handler; `/openapi.json` is generated from the same
//! table, so the two cannot drift.

mod api_keys;
mod audit;
mod dashboard;
mod ops;
mod parked;
mod privacy;
mod sdk;
mod table;
mod webhook;

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use axum::{
    Router,
    body::{Body as HttpBody, Bytes},
    extract::{FromRequestParts, Path, Query, Request},
    http::{Method, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use referral_common::auth::{Role, Scope};
use serde_json::{Map, Value};

pub use self::table::table;
use crate::{
    auth::Caller,
    context::CallContext,
    cookies, descriptor,
    errors::{HttpError, HttpResult},
    json,
    metrics::RouteLabel,
    query::{self, QueryParam},
    state::AppState,
};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A handler that takes the request as the RPC's JSON (body, query and path merged).
pub type JsonFn = fn(AppState, CallContext, Value) -> BoxFuture<HttpResult>;
/// A handler that reads the request itself (redirect, webhooks, operations).
pub type RawFn = fn(AppState, RawRequest) -> BoxFuture<Response>;

pub enum Handler {
    Json {
        call: JsonFn,
        /// Whether the request decodes (unknown fields, wrong types): its 400s come before
        /// the rules', as the decoder names them best.
        decodes: fn(Value) -> HttpResult<()>,
        /// The Rust request type, checked against the RPC's input in tests.
        request_type: fn() -> &'static str,
    },
    Raw(RawFn),
}

/// Where the HTTP body goes in the request message (grpc-gateway's `body:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body; every unbound field is a query parameter.
    None,
    /// The body is the request message (`body: "*"`); an empty body is `{}`.
    Whole,
    /// The body is one field of the request (`body: "program"`).
    Field(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Bearer,
    Open,
}

/// The gRPC method a route maps to and how the HTTP request fills its input.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// Full service name, e.g. `referral.invite.v1.InviteService`.
    pub service: &'static str,
    pub method: &'static str,
    pub body: Body,
    /// Path parameter -> request field (JSON name) where the names differ.
    pub params: Vec<(&'static str, &'static str)>,
    /// The request's `ip` and `deviceId` come from the connection, not the caller.
    pub client_fields: bool,
    /// (cookie, field): a field the body leaves empty is taken from this cookie, as the
    /// browser posting a signup straight to the gateway carries its click id.
    pub cookie_field: Option<(&'static str, &'static str)>,
}

impl Rpc {
    pub fn new(service: &'static str, method: &'static str, body: Body) -> Self {
        Self {
            service,
            method,
            body,
            params: Vec::new(),
            client_fields: false,
            cookie_field: None,
        }
    }

    pub fn cookie_field(mut self, cookie: &'static str, field: &'static str) -> Self {
        self.cookie_field = Some((cookie, field));
        self
    }

    pub fn param(mut self, path_param: &'static str, field: &'static str) -> Self {
        self.params.push((path_param, field));
        self
    }

    pub fn client_fields(mut self) -> Self {
        self.client_fields = true;
        self
    }

    /// Input message, output message, server streaming.
    pub fn messages(&self) -> Option<(String, String, bool)> {
        descriptor::get().method(self.service, self.method)
    }
}

/// What a route answers, for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// The RPC's output message as JSON.
    Rpc,
    /// This message as JSON.
    Message(&'static str),
    /// A JSON schema of its own.
    Schema(fn() -> Value),
    /// Server-sent events, each data line this message.
    EventStream(&'static str),
    Html,
    /// Text of this media type (`text/plain`, `text/css`, `text/javascript`).
    Text(&'static str),
    Redirect,
}

pub struct Route {
    pub method: Method,
    /// As documented (API.md), e.g. `/v1/invitations/{id}:cancel`.
    pub path: &'static str,
    pub operation: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub auth: Auth,
    pub rpc: Option<Rpc>,
    pub handler: Handler,
    pub answer: Answer,
    /// Set for routes that take an opaque body (provider webhooks): its description.
    pub raw_body: Option<&'static str>,
    /// The scope an API key needs here; without one, no API key passes (admin routes above
    /// all). The service checks again with the same scope.
    pub key_scope: Option<Scope>,
    /// A strict JSON schema of the body, where the proto message alone cannot say enough
    /// (required fields, bounds, enums of strings).
    pub body_schema: Option<fn() -> Value>,
    query: OnceLock<Vec<QueryParam>>,
}

impl Route {
    pub fn new(method: Method, path: &'static str, operation: &'static str, summary: &'static str) -> Self {
        Self {
            method,
            path,
            operation,
            summary,
            tag: "Operations",
            auth: Auth::Open,
            rpc: None,
            handler: Handler::Raw(|_, _| {
                Box::pin(async { HttpError::internal("route without a handler").into_response() })
            }),
            answer: Answer::Rpc,
            raw_body: None,
            key_scope: None,
            body_schema: None,
            query: OnceLock::new(),
        }
    }

    /// API keys holding `scope` may call this route.
    pub fn key_scope(mut self, scope: Scope) -> Self {
        self.key_scope = Some(scope);
        self
    }

    pub fn body_schema(mut self, schema: fn() -> Value) -> Self {
        self.body_schema = Some(schema);
        self
    }

    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    pub fn bearer(mut self) -> Self {
        self.auth = Auth::Bearer;
        self
    }

    pub fn rpc(mut self, rpc: Rpc) -> Self {
        self.rpc = Some(rpc);
        self
    }

    pub fn handler(mut self, handler: Handler) -> Self {
        self.handler = handler;
        self
    }

    pub fn raw(mut self, f: RawFn) -> Self {
        self.handler = Handler::Raw(f);
        self
    }

    pub fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }

    pub fn raw_body(mut self, description: &'static str) -> Self {
        self.raw_body = Some(description);
        self
    }

    /// The axum path (`{id}:action` cannot share a segment in matchit) and the action.
    pub fn router_path(&self) -> (String, Option<&'static str>) {
        let (head, last) = self.path.rsplit_once('/').unwrap_or(("", self.path));
        if last.starts_with('{')
            && let Some((param, action)) = last.split_once("}:")
        {
            return (format!("{head}/{param}}}"), Some(action));
        }
        (self.path.to_string(), None)
    }

    /// Path parameter names, in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{'))
            .filter_map(|seg| seg.split_once('}').map(|(name, _)| name))
            .collect()
    }

    /// The request field a path parameter fills.
    pub fn field_of(&self, path_param: &'static str) -> &'static str {
        self.rpc
            .as_ref()
            .and_then(|r| r.params.iter().find(|(p, _)| *p == path_param).map(|(_, f)| *f))
            .unwrap_or(path_param)
    }

    /// Query parameters: the request fields bound neither by the path nor by the body.
    pub fn query_params(&self) -> &[QueryParam] {
        self.query.get_or_init(|| {
            let Some(rpc) = &self.rpc else {
                return Vec::new();
            };
            let Some((input, _, _)) = rpc.messages() else {
                return Vec::new();
            };
            let mut bound: Vec<&str> = self.path_params().into_iter().map(|p| self.field_of(p)).collect();
            match rpc.body {
                Body::None => {}
                Body::Whole => return Vec::new(),
                Body::Field(f) => bound.push(f),
            }
            query::params_of(&input, &bound)
        })
    }
}

/// What a raw handler gets: the request, its path parameters and its call context.
pub struct RawRequest {
    pub parts: Parts,
    pub body: HttpBody,
    pub params: Vec<(String, String)>,
    pub ctx: CallContext,
    pub body_limit: usize,
}

impl RawRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub async fn bytes(self) -> HttpResult<(Parts, Vec<(String, String)>, Bytes)> {
        let bytes = read_body(&self.parts, self.body, self.body_limit).await?;
        Ok((self.parts, self.params, bytes))
    }
}

/// The body, at most `limit` bytes (413 past it, checked before reading when declared).
pub async fn read_body(parts: &Parts, body: HttpBody, limit: usize) -> HttpResult<Bytes> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(HttpError::payload_too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            HttpError::payload_too_large(limit)
        } else {
            HttpError::new(
                tonic::Code::InvalidArgument,
                format!("could not read the request body: {inner}"),
            )
        }
    })
}

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
    let router = router
        .fallback(|req: Request| async move {
            HttpError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
                .into_response()
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::client_ip::middleware,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::middleware))
        .layer(axum::middleware::from_fn(crate::request_id::middleware));
    // Outside auth and limits: a preflight carries no token, and a 401 or 429 must reach the
    // page's script readable.
    let router = match crate::cors::layer(&state.settings) {
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
            crate::input_rules::whole_numbers(&mut input);
            crate::json::refuse_nulls(&input)?;
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
    let violations = crate::input_rules::enum_numbers(&message, input);
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

/// Answers 200 with the message as JSON, or the service's error.
pub fn answer<T: serde::Serialize>(
    result: Result<tonic::Response<T>, tonic::Status>,
    service: &str,
) -> HttpResult {
    result
        .map(|r| json::respond(r.get_ref()))
        .map_err(|s| HttpError::from_upstream(service, &s))
}
