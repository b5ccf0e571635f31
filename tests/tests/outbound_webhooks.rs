//! Outbound webhooks (docs/api.md, analytics-svc): a real HTTP receiver on loopback verifies every
//! delivery with an independent Standard Webhooks implementation (the `standardwebhooks`
//! crate); stopped, deliveries fail and are retried on the backoff schedule; started again,
//! they arrive. An endpoint that fails 20 times in a row is disabled. Admins only; bad URLs
//! (other schemes, internal addresses) are refused naming the field.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use referral_tests::{TestApp, eventually, invitation, spawn_app_with_analytics, unique, violated_fields};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Quick retries (base × 2ⁿ, at most `max`) so a test takes seconds; a receiver on this
/// machine is allowed.
fn quick_retries(base: &str, max: &str) -> Vec<String> {
    [
        "--webhook-allowed-networks",
        "127.0.0.0/8,::1/128",
        "--webhook-retry-base",
        base,
        "--webhook-retry-factor",
        "2",
        "--webhook-retry-max-delay",
        max,
    ]
    .map(String::from)
    .into()
}

/// What the receiver saw: verified deliveries (webhook-id, body) and refused ones.
#[derive(Clone, Default)]
struct Seen {
    verified: Arc<Mutex<Vec<(String, Value)>>>,
    refused: Arc<AtomicUsize>,
}

impl Seen {
    fn all(&self) -> Vec<(String, Value)> {
        self.verified.lock().expect("lock").clone()
    }

    fn about(&self, aggregate: &str) -> Vec<(String, Value)> {
        self.all()
            .into_iter()
            .filter(|(_, body)| body["data"]["aggregateId"] == aggregate)
            .collect()
    }
}

struct Receiver {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// An HTTP server on `addr` that accepts only deliveries the reference library verifies.
async fn start_receiver(addr: SocketAddr, secret: &str, seen: Seen) -> Receiver {
    let verifier = Arc::new(Webhook::new(secret).expect("a whsec_ secret"));
    let app =
        Router::new()
            .route(
                "/hook",
                post(
                    |State((verifier, seen)): State<(Arc<Webhook>, Seen)>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        match verifier.verify(&body, &headers) {
                            Ok(()) => {
                                let id = headers["webhook-id"].to_str().unwrap_or_default().to_string();
                                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                seen.verified.lock().expect("lock").push((id, json));
                                StatusCode::NO_CONTENT
                            }
                            Err(_) => {
                                seen.refused.fetch_add(1, Ordering::SeqCst);
                                StatusCode::UNAUTHORIZED
                            }
                        }
                    },
                ),
            )
            .with_state((verifier, seen));
    let listener = TcpListener::bind(addr)
        .await
        .expect("the receiver's port is free");
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .expect("receiver");
    });
    Receiver { stop, task }
}

impl Receiver {
    /// Stops accepting and closes every connection (idle keep-alives too).
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the receiver stops")
            .expect("receiver task");
    }
}

async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

async fn deliveries(app: &TestApp, admin: &str, endpoint: &str) -> Vec<Value> {
    let (status, body) = app
        .get(
            admin,
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries?pageSize=500"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

/// The delivery of the event about `aggregate` (an invitation id), found via the receiver's
/// or the log's event id.
async fn delivery_of(app: &TestApp, admin: &str, endpoint: &str, event_id: &str) -> Option<Value> {
    deliveries(app, admin, endpoint)
        .await
        .into_iter()
        .find(|d| d["eventId"] == event_id)
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_validated_and_admin_only() {
    let app = spawn_app_with_analytics(quick_retries("200ms", "1s")).await;
    let admin = app.admin();
    let hook = |url: &str, types: Value| json!({"url": url, "eventTypes": types});
    for (body, field) in [
        (hook("ftp://example.com/x", json!(["*"])), "url"),
        (hook("not a url", json!(["*"])), "url"),
        (hook("https://user:pw@example.com/", json!(["*"])), "url"),
        // Loopback is allowed here; the other internal networks are not.
        (hook("http://10.0.0.1/hook", json!(["*"])), "url"),
        (hook("http://169.254.169.254/latest", json!(["*"])), "url"),
        (hook("http://[::ffff:192.168.1.1]/", json!(["*"])), "url"),
        (hook("http://[fe80::1]/", json!(["*"])), "url"),
        (hook("http://127.0.0.1:9/hook", json!([])), "eventTypes"),
        (
            hook("http://127.0.0.1:9/hook", json!(["invitation.created", "nope"])),
            "eventTypes[1]",
        ),
        (json!({"eventTypes": ["*"]}), "url"),
    ] {
        let (status, answer) = app.post(&admin, "/v1/webhook-endpoints", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            violated_fields(&answer).contains(&field.to_string()),
            "{body} should name {field}: {answer}"
        );
    }
    let member = app.member(&unique("sue"), "SUPPLIER");
    let (status, answer) = app
        .post(
            &member,
            "/v1/webhook-endpoints",
            hook("https://example.com/h", json!(["*"])),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, _) = app.get(&admin, "/v1/webhook-endpoints/no-such-endpoint").await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(&admin, "/v1/webhook-endpoints/no-such-endpoint/deliveries")
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_while_the_receiver_is_down_and_arrive_after() {
    let app = spawn_app_with_analytics(quick_retries("200ms", "1s")).await;
    let admin = app.admin();
    let addr = free_port().await;
    let (status, endpoint) = app
        .post(
            &admin,
            "/v1/webhook-endpoints",
            json!({"url": format!("http://{addr}/hook"), "eventTypes": ["invitation.created"], "description": "CRM"}),
        )
        .await;
    assert_eq!(status, 200, "{endpoint}");
    let id = endpoint["id"].as_str().expect("id").to_string();
    let secret = endpoint["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(endpoint["enabled"], true);
    let (status, fetched) = app.get(&admin, &format!("/v1/webhook-endpoints/{id}")).await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["secret"], "", "the secret is shown once, on creation");
    assert_eq!(fetched["eventTypes"], json!(["invitation.created"]));

    // Receiver up: a signed delivery per invitation, verified by the reference library.
    let seen = Seen::default();
    let receiver = start_receiver(addr, &secret, seen.clone()).await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let first = app
        .invite_ok(&token, invitation(&sue, "LINK", "w1@example.com"))
        .await;
    let first_id = first["id"].as_str().expect("id").to_string();
    let got = eventually(Duration::from_secs(20), || async {
        seen.about(&first_id).into_iter().next()
    })
    .await
    .expect("the first invitation's delivery arrives");
    let (webhook_id, body) = got;
    assert_eq!(body["type"], "invitation.created");
    assert_eq!(
        body["data"]["id"],
        webhook_id.as_str(),
        "webhook-id is the event id"
    );
    assert_eq!(body["data"]["source"], "invite");
    let delivered = eventually(Duration::from_secs(10), || async {
        delivery_of(&app, &admin, &id, &webhook_id)
            .await
            .filter(|d| d["state"] == "DELIVERED")
    })
    .await
    .expect("the log says DELIVERED");
    assert_eq!(int(&delivered["attempts"]), 1, "{delivered}");
    assert_eq!(int(&delivered["lastStatus"]), 204, "{delivered}");
    assert!(delivered["deliveredAt"].is_string(), "{delivered}");

    // Receiver down: attempts fail and are scheduled again.
    receiver.stop().await;
    let second = app
        .invite_ok(&token, invitation(&sue, "LINK", "w2@example.com"))
        .await;
    let second_id = second["id"].as_str().expect("id").to_string();
    let failing = eventually(Duration::from_secs(20), || async {
        deliveries(&app, &admin, &id).await.into_iter().find(|d| {
            d["state"] == "PENDING" && int(&d["attempts"]) >= 2 && d["eventId"] != webhook_id.as_str()
        })
    })
    .await
    .expect("the second delivery is retried while the receiver is down");
    assert!(
        !failing["lastError"].as_str().unwrap_or_default().is_empty(),
        "{failing}"
    );
    assert!(failing["nextAttemptAt"].is_string(), "{failing}");
    let (_, ep) = app.get(&admin, &format!("/v1/webhook-endpoints/{id}")).await;
    assert!(int(&ep["consecutiveFailures"]) >= 2, "{ep}");
    assert_eq!(ep["enabled"], true, "a few failures do not disable: {ep}");
    assert!(seen.about(&second_id).is_empty());

    // Receiver up again: the retried delivery arrives, signed as before.
    let receiver = start_receiver(addr, &secret, seen.clone()).await;
    let (webhook_id2, body2) = eventually(Duration::from_secs(20), || async {
        seen.about(&second_id).into_iter().next()
    })
    .await
    .expect("the retried delivery arrives once the receiver is back");
    assert_eq!(body2["type"], "invitation.created");
    let done = eventually(Duration::from_secs(10), || async {
        delivery_of(&app, &admin, &id, &webhook_id2)
            .await
            .filter(|d| d["state"] == "DELIVERED")
    })
    .await
    .expect("the log says DELIVERED after the retries");
    assert!(
        int(&done["attempts"]) >= 3,
        "two failures and the success: {done}"
    );
    let (_, ep) = app.get(&admin, &format!("/v1/webhook-endpoints/{id}")).await;
    assert_eq!(
        int(&ep["consecutiveFailures"]),
        0,
        "a success resets the run: {ep}"
    );

    // Only the subscribed type, each event once, nothing refused by the verifier.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = seen.all();
    assert!(
        all.iter().all(|(_, b)| b["type"] == "invitation.created"),
        "{all:?}"
    );
    let mut ids: Vec<&String> = all.iter().map(|(i, _)| i).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "each event delivered once: {all:?}");
    assert_eq!(seen.refused.load(Ordering::SeqCst), 0, "every signature verified");

    // Deleted: gone from the API, nothing more delivered.
    let resp = app
        .http
        .delete(app.url(&format!("/v1/webhook-endpoints/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    let (status, _) = app.get(&admin, &format!("/v1/webhook-endpoints/{id}")).await;
    assert_eq!(status, 404);
    receiver.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_failures_in_a_row_disable_the_endpoint() {
    let app = spawn_app_with_analytics(quick_retries("50ms", "200ms")).await;
    let admin = app.admin();
    // Nothing listens there: every attempt is refused.
    let dead = free_port().await;
    let (status, endpoint) = app
        .post(
            &admin,
            "/v1/webhook-endpoints",
            json!({"url": format!("http://{dead}/hook"), "eventTypes": ["*"]}),
        )
        .await;
    assert_eq!(status, 200, "{endpoint}");
    let id = endpoint["id"].as_str().expect("id").to_string();
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    for i in 0..4 {
        app.invite_ok(&token, invitation(&sue, "LINK", &format!("d{i}@example.com")))
            .await;
    }
    let disabled = eventually(Duration::from_secs(30), || async {
        let (_, ep) = app.get(&admin, &format!("/v1/webhook-endpoints/{id}")).await;
        (ep["enabled"] == false).then_some(ep)
    })
    .await
    .expect("the endpoint is disabled");
    assert_eq!(int(&disabled["consecutiveFailures"]), 20, "{disabled}");
    assert!(
        disabled["disabledReason"]
            .as_str()
            .unwrap_or_default()
            .contains("20 consecutive"),
        "{disabled}"
    );
    let attempts = |ds: &[Value]| ds.iter().map(|d| int(&d["attempts"])).sum::<i64>();
    // Attempts already under way when it was disabled finish first (refused connections
    // fail at once); after them, none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = deliveries(&app, &admin, &id).await;
    assert!(attempts(&before) >= 20, "{before:?}");
    assert!(before.iter().all(|d| d["state"] != "DELIVERED"));
    // Disabled means no more attempts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = deliveries(&app, &admin, &id).await;
    assert_eq!(attempts(&after), attempts(&before), "no attempts once disabled");
    app.stop().await;
}
