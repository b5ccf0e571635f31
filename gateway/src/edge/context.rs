//! The web caller's context of one request, carried to the services as gRPC metadata:
//! who (`x-principal-*`, trusted by services only from a service token; "none" when no
//! web caller is behind the request, e.g. the redirect's code lookup), which request,
//! from where, which device, and the idempotency key.

use std::time::Duration;

use axum::http::{HeaderMap, request::Parts};
use referral_common::auth::{CLIENT_IP, DEVICE_ID, IDEMPOTENCY_KEY, Principal, REQUEST_ID, forwarded};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use super::{caller::Caller, client_ip::ClientIp, request_id::RequestId};
use crate::mapping::errors::{HttpError, HttpResult};

#[derive(Debug, Clone)]
pub struct CallContext {
    pub principal: Option<Principal>,
    pub request_id: String,
    pub client_ip: ClientIp,
    pub device_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub user_agent: Option<String>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl CallContext {
    /// From what the middlewares recorded and the caller's headers. A header that cannot
    /// travel as metadata is a 400 naming it. The principal always travels (any Unicode
    /// subject, as binary metadata); without one, the context says "none" explicitly.
    pub fn from_parts(parts: &Parts, timeout: Duration) -> HttpResult<Self> {
        let principal = parts
            .extensions
            .get::<Caller>()
            .and_then(Caller::principal)
            .cloned();
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let client_ip = parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(None));
        // A device id is an id: single-line (no tabs) and at most ID_MAX characters.
        let device_id = header_text(&parts.headers, "x-device-id", referral_common::input::ID_MAX)?;
        if device_id
            .as_deref()
            .is_some_and(|d| d.bytes().any(|b| !(0x20..0x7f).contains(&b)))
        {
            return Err(HttpError::invalid_field(
                "x-device-id",
                "must be printable ASCII without tabs, at most 128 characters",
            ));
        }
        let idempotency_key = header_text(&parts.headers, "idempotency-key", 255)?;
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);

        let mut md = MetadataMap::new();
        match &principal {
            Some(p) => forwarded::write(&mut md, p),
            None => forwarded::write_none(&mut md),
        }
        if let Some(v) = ascii(&request_id) {
            md.insert(REQUEST_ID, v);
        }
        if let Some(v) = client_ip.0.and_then(|ip| ascii(&ip.to_string())) {
            md.insert(CLIENT_IP, v);
        }
        if let Some(v) = device_id.as_deref().and_then(ascii) {
            md.insert(DEVICE_ID, v);
        }
        if let Some(v) = idempotency_key.as_deref().and_then(ascii) {
            md.insert(IDEMPOTENCY_KEY, v);
        }
        Ok(Self {
            principal,
            request_id,
            client_ip,
            device_id,
            idempotency_key,
            user_agent,
            metadata: md,
            timeout,
        })
    }

    /// A unary call's request: the context's metadata and the upstream deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = self.stream_request(message);
        req.set_timeout(self.timeout);
        req
    }

    /// A streaming call's request: no deadline (the stream lives as long as the client).
    pub fn stream_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        *req.metadata_mut() = self.metadata.clone();
        req
    }

    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }
}

fn ascii(s: &str) -> Option<AsciiMetadataValue> {
    s.parse().ok()
}

/// A header's text; present but not printable ASCII is a 400.
fn header_text(headers: &HeaderMap, name: &'static str, max: usize) -> HttpResult<Option<String>> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|s| ascii(s).is_some() && s.len() <= max)
        .ok_or_else(|| {
            HttpError::invalid_field(name, format!("must be printable ASCII, at most {max} characters"))
        })?;
    Ok((!text.is_empty()).then(|| text.to_string()))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use referral_common::auth::Role;

    use super::*;

    #[test]
    fn the_caller_travels_as_metadata() {
        let mut req = Request::builder()
            .header("x-device-id", "dev-1")
            .header("idempotency-key", "k-1")
            .body(())
            .unwrap();
        req.extensions_mut().insert(Caller::Authenticated(Principal::new(
            "josé",
            Role::Member,
            Some("SUPPLIER".into()),
        )));
        req.extensions_mut().insert(RequestId("rid".into()));
        req.extensions_mut()
            .insert(ClientIp(Some("203.0.113.7".parse().unwrap())));
        let (parts, ()) = req.into_parts();
        let ctx = CallContext::from_parts(&parts, Duration::from_secs(1)).unwrap();
        let grpc = ctx.request(());
        let md = grpc.metadata();
        let get = |k: &str| md.get(k).unwrap().to_str().unwrap().to_string();
        assert_eq!(
            forwarded::read(md).unwrap(),
            forwarded::Forwarded::Caller(Principal::new("josé", Role::Member, Some("SUPPLIER".into())))
        );
        assert_eq!(get(REQUEST_ID), "rid");
        assert_eq!(get(CLIENT_IP), "203.0.113.7");
        assert_eq!(get(DEVICE_ID), "dev-1");
        assert_eq!(get(IDEMPOTENCY_KEY), "k-1");
        assert_eq!(get("grpc-timeout"), "1000000u");
    }

    #[test]
    fn an_api_key_travels_with_its_scopes() {
        let key = Principal::api_key(
            "key-1",
            referral_common::auth::Scopes::parse_list(&["reports:read", "signups:write"]).unwrap(),
        );
        let mut req = Request::builder().body(()).unwrap();
        req.extensions_mut().insert(Caller::Authenticated(key.clone()));
        let (parts, ()) = req.into_parts();
        let ctx = CallContext::from_parts(&parts, Duration::from_secs(1)).unwrap();
        assert_eq!(
            ctx.metadata()
                .get(referral_common::auth::PRINCIPAL_SCOPES)
                .unwrap(),
            "signups:write,reports:read"
        );
        assert_eq!(
            forwarded::read(ctx.metadata()).unwrap(),
            forwarded::Forwarded::Caller(key)
        );
    }

    #[test]
    fn no_caller_travels_as_none() {
        let (parts, ()) = Request::builder().body(()).unwrap().into_parts();
        let ctx = CallContext::from_parts(&parts, Duration::from_secs(1)).unwrap();
        assert_eq!(
            forwarded::read(ctx.metadata()).unwrap(),
            forwarded::Forwarded::Nobody
        );
    }

    #[test]
    fn unusable_headers_are_400s() {
        let req = Request::builder()
            .header(
                "idempotency-key",
                axum::http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            )
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let e = CallContext::from_parts(&parts, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.contains("idempotency-key"));
    }
}
