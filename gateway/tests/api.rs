//! The JSON API conventions, through the router: auth, errors, field paths, limits, ids,
//! client IPs and the mapping of requests onto RPCs (against a fake invite-svc).

mod support;

use std::net::SocketAddr;

use axum::{body::Body, extract::ConnectInfo, http::StatusCode};
use referral_common::auth::{Role, TokenError};
use serde_json::json;
use support::*;

const INVITATION: &str = r#"{"referrerId":"u1","referrerKind":"SUPPLIER","refereeKind":"COUPLE","channel":"EMAIL","recipient":{"email":"ann@example.com"}}"#;

fn invitation_for(email: &str) -> String {
    INVITATION.replace("ann@example.com", email)
}

#[tokio::test]
async fn protected_routes_need_a_valid_bearer_token() {
    let gw = gateway(config()).await;
    let missing = gw
        .send(get("/v1/invitations/i1").body(Body::empty()).unwrap())
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.header("www-authenticate"), "Bearer");
    assert_eq!(missing.json()["code"], 16);

    let garbage = gw
        .send(
            get("/v1/invitations/i1")
                .header("authorization", "Bearer not.a.jwt")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.json()["message"], "invalid bearer token");

    // Expired an hour ago (beyond the 30 s leeway).
    let claims = referral_common::auth::Claims {
        sub: "u1".into(),
        role: Role::Member,
        kind: Some("SUPPLIER".into()),
        exp: chrono::Utc::now().timestamp() - 3600,
        iat: None,
        nbf: None,
        iss: None,
        aud: None,
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(matches!(gw.keys.verify(&expired), Err(TokenError::Expired)));
    let reply = gw
        .send(
            get("/v1/invitations/i1")
                .header("authorization", format!("Bearer {expired}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["message"], "bearer token expired");

    // Authenticated, the call goes through (to an unreachable service here: 503).
    let ok = gw
        .send(
            get("/v1/invitations/i1")
                .header("authorization", gw.bearer("u1", Role::Member))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ok.json()["code"], 14);
    assert_eq!(ok.json()["message"], "invite-svc is unavailable");
}

#[tokio::test]
async fn open_routes_need_no_token() {
    let gw = gateway(config()).await;
    for path in [
        "/healthz",
        "/openapi.json",
        "/",
        "/dashboard.js",
        "/dashboard.css",
        "/metrics",
    ] {
        let reply = gw.send(get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    let index = gw.send(get("/").body(Body::empty()).unwrap()).await;
    assert!(index.text().contains("/openapi.json"));
    assert!(index.header("content-type").starts_with("text/html"));
    assert!(
        index
            .header("content-security-policy")
            .contains("script-src 'self'"),
        "the dashboard runs only its own script"
    );
    let script = gw.send(get("/dashboard.js").body(Body::empty()).unwrap()).await;
    assert!(script.header("content-type").starts_with("text/javascript"));
    let ready = gw.send(get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["notReady"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn readiness_follows_the_services_health() {
    let fake = FakeInvite::default();
    let addr = fake.serve().await.to_string();
    let mut c = config();
    c.invite_addr = addr.clone();
    c.fraud_addr = addr.clone();
    c.incentive_addr = addr.clone();
    c.analytics_addr = addr;
    let gw = gateway(c).await;
    let ready = gw.send(get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(ready.json()["services"]["fraud-svc"], "SERVING");
}

#[tokio::test]
async fn a_service_the_gateway_can_do_without_degrades_readiness_without_failing_it() {
    // invite-svc answers, analytics-svc is nowhere: the redirect and the invitation API still
    // work, so the pod stays in rotation (unless READY_REQUIRES says analytics-svc matters).
    let fake = FakeInvite::default();
    let addr = fake.serve().await.to_string();
    let mut c = config();
    c.invite_addr = addr.clone();
    c.fraud_addr = addr.clone();
    c.incentive_addr = addr;
    let gw = gateway(c.clone()).await;
    let ready = gw.send(get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["status"], "degraded");
    assert_eq!(ready.json()["notReady"], json!(["analytics-svc"]));

    c.ready_requires = "invite,analytics".into();
    let strict = gateway(c).await;
    let ready = strict.send(get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.text());
    assert_eq!(ready.json()["status"], "not ready");
}

#[tokio::test]
async fn bad_json_is_a_400_naming_the_field() {
    let gw = gateway(config()).await;
    let auth = gw.bearer("u1", Role::Member);
    let admin = gw.bearer("admin", Role::Admin);
    let post = |uri: &'static str, caller: &str, body: &'static str| {
        gw.send(
            post_json(uri, body)
                .header("authorization", caller)
                .body(Body::from(body))
                .unwrap(),
        )
    };
    let cases = [
        (r#"{"recipient": {"email": "#, "recipient.email", "malformed JSON"),
        (
            r#"{"recipient": {"emial": "a@b.c"}}"#,
            "recipient.emial",
            "unknown field",
        ),
        (
            r#"{"recipient": {"email": 42}}"#,
            "recipient.email",
            "invalid type",
        ),
        (r#"{"channel": "PIGEON"}"#, "channel", "PIGEON"),
        (r#"{"sendAt": "next tuesday"}"#, "sendAt", ""),
        (r#"[1, 2]"#, "", "JSON object"),
        // White space is no JSON text (RFC 8259): not an absent body.
        (" \n", "", "malformed JSON"),
    ];
    for (body, field, words) in cases {
        let reply = post("/v1/invitations", &auth, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.text());
        assert_eq!(reply.json()["code"], 3);
        let (f, d) = reply.violation();
        assert_eq!(f, field, "{body}");
        assert!(d.contains(words), "{body}: {d}");
    }
    let batch = r#"{"referrerId":"u1","invitations":[{},{},{},{"channel":"CARRIER_PIGEON"}]}"#;
    let reply = post("/v1/invitations:batchCreate", &auth, batch).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.violation().0, "invitations[3].channel");
    // No body at all is `{}`: a route whose body requires nothing passes on to its service
    // (unreachable here), whereas a body of white space is refused at the edge.
    for (body, status) in [
        ("", StatusCode::SERVICE_UNAVAILABLE),
        (" ", StatusCode::BAD_REQUEST),
    ] {
        let reply = post("/v1/reward-programs/p1:simulate", &admin, body).await;
        assert_eq!(reply.status, status, "{body:?}: {}", reply.text());
    }
}

#[tokio::test]
async fn content_type_size_and_query_are_checked() {
    let mut c = config();
    c.max_body_bytes = 64;
    let gw = gateway(c).await;
    let auth = gw.bearer("u1", Role::Member);

    let no_type = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/invitations")
        .header("authorization", &auth)
        .body(Body::from("{}"))
        .unwrap();
    let reply = gw.send(no_type).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );

    let big = format!(r#"{{"message": "{}"}}"#, "x".repeat(100));
    let declared = gw
        .send(
            post_json("/v1/invitations", &big)
                .header("authorization", &auth)
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.json()["code"], 3);
    // No Content-Length (chunked): cut off while reading.
    let chunked = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/invitations")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(Body::from_stream(futures::stream::iter(vec![Ok::<
            _,
            std::io::Error,
        >(
            big.clone()
        )])))
        .unwrap();
    assert_eq!(gw.send(chunked).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let webhook = post_json("/v1/webhooks/email/resend", &big)
        .body(Body::from(big))
        .unwrap();
    assert_eq!(gw.send(webhook).await.status, StatusCode::PAYLOAD_TOO_LARGE);

    let reply = gw
        .send(
            get("/v1/invitations?referrerId=u1&colour=red")
                .header("authorization", &auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.violation(),
        ("colour".into(), "unknown query parameter".into())
    );
    let reply = gw
        .send(
            get("/v1/campaigns?active=maybe")
                .header("authorization", &auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.violation().0, "active");
}

#[tokio::test]
async fn service_errors_map_to_http_with_details() {
    let (gw, _fake) = with_fake_invite(|_| {}).await;
    let auth = gw.bearer("u1", Role::Member);
    let create = |email: &str| {
        let body = invitation_for(email);
        post_json("/v1/invitations", &body)
            .header("authorization", &auth)
            .header("idempotency-key", "k1")
            .body(Body::from(body))
            .unwrap()
    };
    let reused = gw.send(create("reused@example.com")).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = reused.json();
    assert_eq!(body["code"], 9);
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    assert_eq!(body["details"][0]["reason"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(body["details"][0]["domain"], "referral-mesh");

    let in_use = gw.send(create("inuse@example.com")).await;
    assert_eq!(in_use.status, StatusCode::CONFLICT);
    assert_eq!(in_use.json()["code"], 10);

    let busy = gw.send(create("busy@example.com")).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.header("retry-after"), "42");
    assert_eq!(busy.json()["details"][0]["retryDelay"], "42s");

    let bad = gw.send(create("bad@example.com")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.violation(),
        ("recipient.email".into(), "is not deliverable".into())
    );

    let ok = gw.send(create("ann@example.com")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["id"], "inv-1");
    assert_eq!(ok.json()["status"], "SCHEDULED");
}

#[tokio::test]
async fn the_caller_and_request_travel_to_the_service() {
    let (gw, fake) = with_fake_invite(|_| {}).await;
    let body = INVITATION;
    let reply = gw
        .send(
            post_json("/v1/invitations", body)
                .header("authorization", gw.bearer("u1", Role::Member))
                .header("idempotency-key", "key-7")
                .header("x-device-id", "dev-9")
                .header("x-request-id", "req-abc")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-request-id"), "req-abc");
    let call = fake.calls("CreateInvitation").pop().unwrap();
    assert_eq!(call.md_bin("x-principal-sub-bin").as_deref(), Some("u1"));
    assert_eq!(call.md("x-principal-sub"), None);
    assert_eq!(call.md("x-principal-role").as_deref(), Some("member"));
    assert_eq!(call.md("x-principal-kind").as_deref(), Some("SUPPLIER"));
    assert_eq!(call.md("x-request-id").as_deref(), Some("req-abc"));
    assert_eq!(call.md("x-client-ip").as_deref(), Some("203.0.113.10"));
    assert_eq!(call.md("x-device-id").as_deref(), Some("dev-9"));
    assert_eq!(call.md("idempotency-key").as_deref(), Some("key-7"));
    let service_token = call.md("authorization").unwrap();
    // Signed with the service key, which the web key does not accept.
    let token = service_token.trim_start_matches("Bearer ");
    assert!(gw.keys.verify(token).is_err());
    let claims =
        referral_common::auth::ServiceKeys::new(&referral_common::config::Secret::new(SERVICE_SECRET))
            .verify(token)
            .unwrap();
    assert_eq!((claims.sub.as_str(), claims.role), ("gateway", Role::Service));
    assert_eq!(call.request["recipient"]["email"], "ann@example.com");

    // Without a caller id, one is made (UUIDv7) and returned.
    let reply = gw.send(get("/healthz").body(Body::empty()).unwrap()).await;
    let id = uuid::Uuid::parse_str(reply.header("x-request-id")).unwrap();
    assert_eq!(id.get_version_num(), 7);
}

#[tokio::test]
async fn path_query_and_actions_fill_the_request() {
    let (gw, fake) = with_fake_invite(|_| {}).await;
    let admin = gw.bearer("admin", Role::Admin);

    let reply = gw
        .send(
            get("/v1/invitations?referrerId=u1&status=SENT&pageSize=20&pageToken=t")
                .header("authorization", &admin)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["nextPageToken"], "");
    let list = fake.calls("ListInvitations").pop().unwrap().request;
    assert_eq!(
        list,
        json!({"referrerId": "u1", "status": "SENT", "pageSize": 20, "pageToken": "t"})
    );

    let cancel = gw
        .send(
            axum::http::Request::post("/v1/invitations/inv-42:cancel")
                .header("authorization", &admin)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.text());
    assert_eq!(cancel.json()["status"], "CANCELLED");
    assert_eq!(
        fake.calls("CancelInvitation").pop().unwrap().request["id"],
        "inv-42"
    );

    let unknown_action = gw
        .send(
            axum::http::Request::post("/v1/invitations/inv-42:frobnicate")
                .header("authorization", &admin)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(unknown_action.status, StatusCode::NOT_FOUND);
    let wrong_method = gw
        .send(
            axum::http::Request::patch("/v1/invitations/inv-42")
                .header("authorization", &admin)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    let nothing = gw
        .send(
            get("/v2/nothing")
                .header("authorization", &admin)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert_eq!(nothing.json()["code"], 5);

    let body = r#"{"tier": "PREMIUM", "referrer_id": "someone-else"}"#;
    let tier = gw
        .send(
            axum::http::Request::put("/v1/referrers/u9/tier")
                .header("authorization", &admin)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(tier.status, StatusCode::OK, "{}", tier.text());
    assert_eq!(
        tier.json(),
        json!({"id": "u9", "tier": "PREMIUM", "queued": "1234"})
    );
    assert_eq!(
        fake.calls("SetReferrerTier").pop().unwrap().request["referrerId"],
        "u9"
    );
}

#[tokio::test]
async fn client_ip_comes_from_the_socket_or_a_trusted_proxy() {
    let (gw, fake) = with_fake_invite(|c| c.trusted_proxies = "10.0.0.0/8".into()).await;
    let auth = gw.bearer("u1", Role::Member);
    let click = |peer: [u8; 4]| {
        let body = r#"{"code": "LOVE-ABC234", "ip": "1.1.1.1"}"#;
        let mut req = post_json("/v1/clicks", body)
            .header("authorization", &auth)
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.4")
            .header("x-device-id", "dev-1")
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 5000))));
        req
    };
    assert_eq!(gw.send(click([10, 1, 1, 1])).await.status, StatusCode::OK);
    let seen = fake.calls("RecordClick").pop().unwrap();
    assert_eq!(
        seen.request["ip"], "198.51.100.4",
        "the caller's own ip field is replaced"
    );
    assert_eq!(seen.request["deviceId"], "dev-1");
    assert_eq!(seen.md("x-client-ip").as_deref(), Some("198.51.100.4"));

    assert_eq!(gw.send(click([192, 0, 2, 1])).await.status, StatusCode::OK);
    let seen = fake.calls("RecordClick").pop().unwrap();
    assert_eq!(
        seen.request["ip"], "192.0.2.1",
        "an untrusted peer's X-Forwarded-For is ignored"
    );
}

#[tokio::test]
async fn provider_webhooks_pass_through_without_a_token() {
    let (gw, fake) = with_fake_invite(|_| {}).await;
    let raw = "{\"type\":\"email.delivered\",\"data\":{}}  ";
    let reply = gw
        .send(
            axum::http::Request::post("/v1/webhooks/email/Resend")
                .header("content-type", "application/json")
                .header("Svix-Id", "msg_1")
                .header("authorization", "Basic dXNlcjpwdw==")
                .body(Body::from(raw))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["recorded"], 1);
    let seen = fake.calls("HandleEmailWebhook").pop().unwrap();
    assert_eq!(seen.request["provider"], "resend");
    assert_eq!(seen.request["headers"]["svix-id"], "msg_1");
    assert_eq!(seen.request["headers"]["authorization"], "Basic dXNlcjpwdw==");
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD
        .decode(seen.request["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(body, raw.as_bytes(), "the body is forwarded byte for byte");
}

#[tokio::test]
async fn rate_limits_are_announced_and_enforced() {
    let mut c = config();
    c.api_rate_limit_per_minute = 2;
    let gw = gateway(c).await;
    let auth = gw.bearer("limited-user", Role::Member);
    let call = || {
        get("/v1/invitations/x")
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap()
    };
    let first = gw.send(call()).await;
    assert_eq!(first.header("ratelimit-policy"), "\"api\";q=2;w=60");
    assert!(first.header("ratelimit").starts_with("\"api\";r=1;t="));
    gw.send(call()).await;
    let refused = gw.send(call()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.header("retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(refused.json()["code"], 8);
    assert_eq!(
        refused.json()["details"][0]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    // Another caller has its own budget; anonymous callers are keyed by IP.
    let other = gw
        .send(
            get("/v1/invitations/x")
                .header("authorization", gw.bearer("other", Role::Member))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_ne!(other.status, StatusCode::TOO_MANY_REQUESTS);
    // Anonymous API callers are limited by IP and told so...
    assert!(
        gw.send(get("/openapi.json").body(Body::empty()).unwrap())
            .await
            .headers
            .contains_key("ratelimit")
    );
    // ...but probes and scrapes never are.
    for path in ["/healthz", "/metrics"] {
        let r = gw.send(get(path).body(Body::empty()).unwrap()).await;
        assert!(!r.headers.contains_key("ratelimit"), "{path}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let gw = gateway(config()).await;
    gw.send(get("/healthz").body(Body::empty()).unwrap()).await;
    gw.send(get("/v1/invitations/i1").body(Body::empty()).unwrap())
        .await;
    let text = gw.send(get("/metrics").body(Body::empty()).unwrap()).await.text();
    assert!(text.contains("gateway_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/invitations/{id}\""), "{text}");
    assert!(text.contains("status=\"401\""));
}
