//! `GET /v1/events`: AnalyticsService.StreamEvents relayed as server-sent events. Each
//! LiveEvent is one SSE event named by its type; a `lagged` notice (events dropped for this
//! slow client) is `event: lagged`; a failure mid-stream is `event: error`, then the end.

use std::{convert::Infallible, time::Duration};

use axum::response::{
    IntoResponse,
    sse::{Event, KeepAlive, Sse},
};
use futures::{Stream, StreamExt};
use referral_proto::analytics::v1::{LiveEvent, StreamEventsRequest};

use super::route::{Handler, JsonFn};
use crate::mapping::{errors::HttpError, json};

pub fn handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let request: StreamEventsRequest = json::decode(input)?;
            let mut client = state.clients.analytics.clone();
            let stream = client
                .stream_events(ctx.stream_request(request))
                .await
                .map_err(|s| HttpError::from_upstream("analytics-svc", &s))?
                .into_inner();
            let stream = events(stream).take_until(state.closed());
            Ok(Sse::new(stream)
                .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
                .into_response())
        })
    };
    Handler::Json {
        call,
        decodes: |v| json::decode::<StreamEventsRequest>(v).map(|_| ()),
        request_type: std::any::type_name::<StreamEventsRequest>,
    }
}

/// The gRPC stream as SSE events; ends after the first error.
pub fn events<S>(stream: S) -> impl Stream<Item = Result<Event, Infallible>>
where
    S: Stream<Item = Result<LiveEvent, tonic::Status>> + Send + 'static,
{
    stream
        .scan(false, |failed, item| {
            if *failed {
                return futures::future::ready(None);
            }
            let event = match item {
                Ok(e) => to_event(&e),
                Err(status) => {
                    *failed = true;
                    let body = HttpError::from_upstream("analytics-svc", &status).body();
                    Event::default().event("error").data(body.to_string())
                }
            };
            futures::future::ready(Some(Ok(event)))
        })
        .boxed()
}

fn to_event(e: &LiveEvent) -> Event {
    let name = if e.lagged > 0 {
        "lagged"
    } else if e.r#type.is_empty() {
        "message"
    } else {
        e.r#type.as_str()
    };
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_string());
    let mut event = Event::default().event(sanitize(name)).data(data);
    if !e.id.is_empty() {
        event = event.id(sanitize(&e.id));
    }
    event
}

/// SSE field values cannot hold line breaks (axum panics on them).
fn sanitize(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    #[tokio::test]
    async fn events_lagged_notices_and_errors_render_as_sse() {
        let items = vec![
            Ok(LiveEvent {
                id: "e1".into(),
                r#type: "invitation.created".into(),
                source: "invite".into(),
                json: "{\"a\":1}".into(),
                ..Default::default()
            }),
            Ok(LiveEvent {
                lagged: 7,
                ..Default::default()
            }),
            Err(tonic::Status::unavailable("gone")),
            Ok(LiveEvent::default()),
        ];
        let resp = Sse::new(events(futures::stream::iter(items))).into_response();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("event: invitation.created\n"), "{text}");
        assert!(text.contains("id: e1\n"));
        assert!(text.contains("\"source\":\"invite\""));
        assert!(text.contains("event: lagged\n"));
        assert!(text.contains("\"lagged\":\"7\""));
        assert!(text.contains("event: error\n"));
        assert_eq!(
            text.matches("event:").count(),
            3,
            "nothing after the error: {text}"
        );
    }
}
