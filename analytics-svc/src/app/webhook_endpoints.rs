//! Webhook endpoint management (admin only), docs/api.md's four webhook operations as plain
//! functions over the store: validation (field violations named by their JSON names, the
//! URL through the SSRF guard), the secret shown once, paging of the delivery log.

use referral_common::{
    ApiError, ApiResult, Violations,
    audit::{Actor, AuditEntry, action},
    auth::Principal,
    ids::{self, to_ts, to_ts_opt},
    input, paging,
};
use referral_proto::{
    analytics::v1::{
        CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, GetWebhookEndpointRequest,
        ListWebhookDeliveriesRequest, ListWebhookDeliveriesResponse, WebhookDelivery, WebhookEndpoint,
    },
    events::v1::EVENT_TYPES,
};

use crate::{
    domain::webhooks::{signing, target::TargetPolicy},
    store::webhooks::{self, DeliveryRow, EndpointRow, NewEndpoint, WebhookStore},
};

const MAX_URL_CHARS: usize = 2048;
const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_EVENT_TYPES: usize = 64;

/// An endpoint's `eventTypes`: known types (or `*`), no duplicates, at most
/// [`MAX_EVENT_TYPES`]. Each problem names its item, briefly: hundreds of long messages once
/// made a grpc-message header too large for HTTP/2 (a 500 instead of this 400).
fn event_types(v: &mut Violations, requested: &[String]) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    if requested.is_empty() {
        v.add("eventTypes", "name at least one event type (or \"*\" for all)");
        return types;
    }
    if requested.len() > MAX_EVENT_TYPES {
        v.add("eventTypes", format!("at most {MAX_EVENT_TYPES} types"));
        return types;
    }
    let mut unknown = false;
    for (i, t) in requested.iter().enumerate() {
        let t = t.trim();
        let field = format!("eventTypes[{i}]");
        if t != "*" && !EVENT_TYPES.contains(&t) {
            unknown = true;
            v.add(&field, "is not a known event type");
        } else if types.iter().any(|x| x == t) {
            v.add(&field, "is listed twice");
        } else {
            types.push(t.to_string());
        }
    }
    if unknown {
        v.add(
            "eventTypes",
            format!("known types: * or {}", EVENT_TYPES.join(", ")),
        );
    }
    types
}

fn internal(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.into())
}

/// Registers an endpoint; the answer carries its signing secret, the one time it is shown.
pub async fn create<W: WebhookStore>(
    store: &W,
    targets: &TargetPolicy,
    p: &Principal,
    actor: &Actor,
    req: CreateWebhookEndpointRequest,
) -> ApiResult<WebhookEndpoint> {
    p.require_admin()?;
    let mut v = Violations::default();
    let url = req.url.trim();
    if url.is_empty() {
        v.add("url", "is required");
    } else if url.chars().count() > MAX_URL_CHARS {
        v.add("url", format!("must be at most {MAX_URL_CHARS} characters"));
    } else if input::has_control(url) {
        // The URL parser would silently drop tabs and line breaks; refuse them instead.
        v.add("url", "must not contain control characters");
    } else if let Err(e) = targets.check_url(url) {
        v.add("url", e.to_string());
    }
    let types = event_types(&mut v, &req.event_types);
    input::text(&mut v, &req.description, MAX_DESCRIPTION_CHARS, "description");
    v.into_result()?;
    let secret = signing::new_secret();
    let id = ids::new_id();
    let row = store
        .create_endpoint(
            NewEndpoint {
                id: id.clone(),
                url: url.to_string(),
                event_types: types,
                description: req.description.trim().to_string(),
                secret: secret.clone(),
                created_at: ids::now(),
            },
            &AuditEntry::new(actor, action::WEBHOOK_ENDPOINT_CREATE, "webhook_endpoint", &id),
        )
        .await
        .map_err(internal)?;
    tracing::info!(endpoint = %row.id, url = %row.url, "webhook endpoint created");
    // The secret is shown here, once; reads never return it.
    endpoint_view(&row, Some(secret))
}

pub async fn get<W: WebhookStore>(
    store: &W,
    p: &Principal,
    req: GetWebhookEndpointRequest,
) -> ApiResult<WebhookEndpoint> {
    p.require_admin()?;
    let id = required_id(&req.id, "id")?;
    let row = store.get_endpoint(id).await.map_err(internal)?;
    let row = row.ok_or_else(|| ApiError::not_found("webhook endpoint", id))?;
    endpoint_view(&row, None)
}

/// Deletes an endpoint: its delivery log stays, unsent deliveries stop.
pub async fn delete<W: WebhookStore>(
    store: &W,
    p: &Principal,
    actor: &Actor,
    req: DeleteWebhookEndpointRequest,
) -> ApiResult<WebhookEndpoint> {
    p.require_admin()?;
    let id = required_id(&req.id, "id")?;
    let row = store
        .delete_endpoint(
            id,
            ids::now(),
            &AuditEntry::new(actor, action::WEBHOOK_ENDPOINT_DELETE, "webhook_endpoint", id),
        )
        .await
        .map_err(internal)?;
    let row = row.ok_or_else(|| ApiError::not_found("webhook endpoint", id))?;
    tracing::info!(endpoint = %row.id, "webhook endpoint deleted");
    let mut view = endpoint_view(&row, None)?;
    view.enabled = false;
    Ok(view)
}

/// An endpoint's delivery log, a page at a time in creation order.
pub async fn deliveries<W: WebhookStore>(
    store: &W,
    p: &Principal,
    req: ListWebhookDeliveriesRequest,
) -> ApiResult<ListWebhookDeliveriesResponse> {
    p.require_admin()?;
    let id = required_id(&req.endpoint_id, "endpointId")?;
    let size = paging::page_size(req.page_size)?;
    let after = paging::decode_token(&req.page_token)?;
    if store.get_endpoint(id).await.map_err(internal)?.is_none() {
        return Err(ApiError::not_found("webhook endpoint", id));
    }
    let mut rows = store
        .list_deliveries(id, after.as_deref(), size + 1)
        .await
        .map_err(internal)?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => paging::encode_token(&last.id),
        _ => String::new(),
    };
    Ok(ListWebhookDeliveriesResponse {
        deliveries: rows.iter().map(delivery_view).collect(),
        next_page_token,
    })
}

fn required_id<'a>(id: &'a str, field: &str) -> ApiResult<&'a str> {
    let id = id.trim();
    if id.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if id.len() > 64 {
        return Err(ApiError::invalid(field, "is not an id"));
    }
    Ok(id)
}

fn endpoint_view(row: &EndpointRow, secret: Option<String>) -> ApiResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: row.id.clone(),
        url: row.url.clone(),
        event_types: row.event_types().map_err(internal)?,
        description: row.description.clone(),
        // Shown only when created: every read answers an empty secret.
        secret: secret.unwrap_or_default(),
        enabled: row.enabled,
        consecutive_failures: row.consecutive_failures,
        created_at: Some(to_ts(row.created_at)),
        disabled_reason: row.disabled_reason.clone(),
    })
}

fn delivery_view(row: &DeliveryRow) -> WebhookDelivery {
    WebhookDelivery {
        id: row.id.clone(),
        endpoint_id: row.endpoint_id.clone(),
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        attempts: row.attempts,
        state: row.state.clone(),
        last_status: row.last_status,
        last_error: row.last_error.clone(),
        next_attempt_at: if row.state == webhooks::PENDING {
            to_ts_opt(row.next_attempt_at)
        } else {
            None
        },
        delivered_at: to_ts_opt(row.delivered_at),
        created_at: Some(to_ts(row.created_at)),
    }
}
