//! What happens when an event of the invite, fraud or incentive log arrives for the outbound
//! webhooks: it becomes one delivery row per subscribed, enabled endpoint created no later
//! than the event, written with the webhook consumer's offset in one transaction (a crash
//! replays the batch; `UNIQUE (endpoint_id, event_id)` drops repeats). Its offsets are its
//! own, apart from the rollups'.

use chrono::{DateTime, Utc};
use referral_common::{events, ids, pii::PiiKeys};
use referral_proto::events::v1::Event;
use serde_json::json;

use crate::store::webhooks::{Fanout, WebhookStore};

/// Fans one batch of `source`'s events out; the number of deliveries created.
pub async fn fan_out<S: WebhookStore>(
    store: &S,
    source: &str,
    events: Vec<Event>,
    pii: &PiiKeys,
) -> sqlx::Result<u64> {
    let Some(last) = events.iter().map(|e| e.offset).max() else {
        return Ok(0);
    };
    let fanouts = events.iter().filter_map(|e| fanout_of(e, pii)).collect();
    let created = store.fan_out(source, last, fanouts).await?;
    if created > 0 {
        metrics::counter!("webhook_deliveries_created_total").increment(created);
    }
    Ok(created)
}

/// Where the webhook consumer of `source` resumes.
pub async fn last_offset<S: WebhookStore>(store: &S, source: &str) -> sqlx::Result<i64> {
    store.webhook_offset(source).await
}

/// The delivery body of an event (Standard Webhooks' suggested shape): `{type, timestamp,
/// data}`, `data` being the event envelope as proto3 JSON with the people it names reduced
/// to what may leave analytics (`domain::privacy::scrub`). None for an empty event, one of a
/// type unknown to this build (no payload) and one never forwarded (`privacy.requested`).
pub fn fanout_of(event: &Event, pii: &PiiKeys) -> Option<Fanout> {
    event.payload.as_ref()?;
    let event_type = events::event_type(event);
    if !crate::domain::privacy::forwarded(event_type) {
        return None;
    }
    let occurred_at: DateTime<Utc> = event
        .occurred_at
        .as_ref()
        .and_then(ids::from_ts)
        .unwrap_or_else(ids::now);
    let mut data = serde_json::to_value(event).ok()?;
    crate::domain::privacy::scrub(pii, &mut data);
    let body = json!({
        "type": event_type,
        "timestamp": occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": data,
    });
    Some(Fanout {
        event_id: event.id.clone(),
        event_type: event_type.to_string(),
        occurred_at,
        payload: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use referral_proto::events::v1::{InvitationTransition, event::Payload};

    use super::*;

    #[test]
    fn bodies_carry_type_timestamp_and_the_event_as_json() {
        let at = ids::now();
        let event = events::new_event(
            "invite",
            "inv-1",
            at,
            Payload::InvitationSent(InvitationTransition::default()),
        );
        let f = fanout_of(&event, &PiiKeys::for_tests()).unwrap();
        assert_eq!(f.event_type, "invitation.sent");
        assert_eq!(f.event_id, event.id);
        let body: serde_json::Value = serde_json::from_str(&f.payload).unwrap();
        assert_eq!(body["type"], "invitation.sent");
        assert_eq!(body["data"]["id"], event.id.as_str());
        assert_eq!(body["data"]["aggregateId"], "inv-1");
        assert_eq!(body["data"]["source"], "invite");
        assert!(body["data"]["invitationSent"].is_object());
        assert_eq!(
            body["timestamp"],
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
    }

    #[test]
    fn an_empty_event_is_not_delivered() {
        assert!(fanout_of(&Event::default(), &PiiKeys::for_tests()).is_none());
    }
}
