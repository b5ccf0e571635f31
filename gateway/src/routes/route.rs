//! What a route is: its method and documented path (docs/api.md), whether it needs a bearer
//! token, which RPC it maps to (request message, body binding, path parameters) and its
//! handler; plus what handlers share (the raw request, the bounded body, the answer of a
//! unary call) and [`unary!`], the handler of a plain unary RPC.

use std::{future::Future, pin::Pin, sync::OnceLock};

use axum::{
    body::{Body as HttpBody, Bytes},
    http::{Method, header, request::Parts},
    response::{IntoResponse, Response},
};
use referral_common::auth::Scope;
use serde_json::Value;

use crate::{
    edge::context::CallContext,
    mapping::{
        descriptor,
        errors::{HttpError, HttpResult},
        json,
        query::{self, QueryParam},
    },
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
    /// (field, value): fields the route itself sets (`kind` of `DELETE /v1/people/{id}`),
    /// neither query parameters nor the caller's to choose.
    pub fixed: Vec<(&'static str, &'static str)>,
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
            fixed: Vec::new(),
        }
    }

    /// The route sets `field` to `value` (a string: an enum's name); the caller cannot.
    pub fn fixed(mut self, field: &'static str, value: &'static str) -> Self {
        self.fixed.push((field, value));
        self
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
    /// The RPC's output message as JSON, answered 202 Accepted (work that completes later).
    Accepted,
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
    /// As documented (docs/api.md), e.g. `/v1/invitations/{id}:cancel`.
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
            bound.extend(rpc.fixed.iter().map(|(f, _)| *f));
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

/// Answers 200 with the message as JSON, or the service's error.
pub fn answer<T: serde::Serialize>(
    result: Result<tonic::Response<T>, tonic::Status>,
    service: &str,
) -> HttpResult {
    result
        .map(|r| json::respond(r.get_ref()))
        .map_err(|s| HttpError::from_upstream(service, &s))
}

/// A unary RPC as a JSON handler: decode the request message (400 naming the field on bad
/// input), call the service with the caller's context, answer its message as JSON.
macro_rules! unary {
    ($client:ident . $method:ident ( $req:ty )) => {
        $crate::routes::route::unary!($client in concat!(stringify!($client), "-svc"), $method($req))
    };
    // A client whose service is named otherwise (in transport failures).
    ($client:ident in $service:expr, $method:ident ( $req:ty )) => {
        $crate::routes::route::Handler::Json {
            call: |state, ctx, input| {
                Box::pin(async move {
                    let message: $req = $crate::mapping::json::decode(input)?;
                    let mut client = state.clients.$client.clone();
                    let resp = client
                        .$method(ctx.request(message))
                        .await
                        .map_err(|s| $crate::mapping::errors::HttpError::from_upstream($service, &s))?;
                    Ok($crate::mapping::json::respond(resp.get_ref()))
                })
            },
            decodes: |v| $crate::mapping::json::decode::<$req>(v).map(|_| ()),
            request_type: std::any::type_name::<$req>,
        }
    };
}
pub(crate) use unary;

/// An authenticated route mapped to `service/method`.
pub fn api(
    method: Method,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    rpc: Rpc,
    handler: Handler,
) -> Route {
    Route::new(method, path, rpc.method, summary)
        .tag(tag)
        .bearer()
        .rpc(rpc)
        .handler(handler)
}
