//! API keys through the gateway, as issue #13's walk-through: an admin creates a key for
//! billing, billing reports a conversion with it, the admin rotates it (the old secret is
//! refused at once, the new one works) and revokes it; the audit log shows each action with
//! the admin's name and request id; listings never show a secret. A key does only what its
//! scopes say and never reaches an admin route; people cannot report conversions; malformed
//! keys are 401, never a 500.

use referral_common::auth::Role;
use referral_tests::{TestApp, assert_error, eventually, spawn_app, ts, unique, violated_fields};
use reqwest::Method;
use serde_json::{Value, json};

fn payment(user: &str) -> Value {
    json!({"userId": user, "value": {"amountMinor": "4900", "currency": "GBP"}, "plan": "PROFESSIONAL"})
}

/// A conversion of a fresh user with `token`: its status and body.
async fn convert(app: &TestApp, token: &str) -> (u16, Value) {
    app.post(token, "/v1/conversions", payment(&unique("user"))).await
}

async fn create_key(app: &TestApp, admin: &str, request_id: &str, body: Value) -> Value {
    let r = app
        .send(
            Method::POST,
            Some(admin),
            "/v1/api-keys",
            Some(&body),
            &[("x-request-id", request_id)],
        )
        .await;
    assert_eq!(r.status, 200, "POST /v1/api-keys {body} -> {}", r.body);
    r.body
}

/// Every key in the listing, page by page.
async fn listed(app: &TestApp, admin: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = String::new();
    loop {
        let (status, body) = app.get(admin, &format!("/v1/api-keys?pageSize=2{page}")).await;
        assert_eq!(status, 200, "{body}");
        out.extend(body["apiKeys"].as_array().cloned().unwrap_or_default());
        match body["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
            Some(next) => page = format!("&pageToken={next}"),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_rotates_and_revokes_a_billing_key() {
    let app = spawn_app().await;
    let admin_sub = unique("ops-admin");
    let admin = app.token(&admin_sub, Role::Admin, None);
    let request_id = unique("req");

    // Created: the secret is shown once, with what the key is.
    let created = create_key(
        &app,
        &admin,
        &request_id,
        json!({"name": "billing", "scopes": ["conversions:write"]}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    let secret = created["key"].as_str().expect("key").to_string();
    assert!(secret.starts_with("rmk_") && secret.len() == 47, "{secret}");
    assert_eq!(created["name"], "billing");
    assert_eq!(created["scopes"], json!(["conversions:write"]));
    assert_eq!(created["createdBy"], admin_sub.as_str());
    let prefix = created["prefix"].as_str().expect("prefix");
    assert!(secret.starts_with(prefix) && prefix.len() == 12, "{prefix}");
    let created_at = ts(&created["createdAt"]);
    assert!((chrono::Utc::now() - created_at).num_seconds().abs() < 60);

    // Billing reports a conversion with it.
    let (status, conv) = convert(&app, &secret).await;
    assert_eq!(status, 200, "{conv}");
    assert!(
        conv["conversionId"].as_str().is_some_and(|c| !c.is_empty()),
        "{conv}"
    );

    // The listing shows the key and its last use, never a secret.
    let keys = listed(&app, &admin).await;
    let listed_key = keys
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} listed: {keys:?}"));
    // Every field is written; the secret's is empty outside create and rotate.
    assert!(
        listed_key["key"].as_str().is_none_or(str::is_empty),
        "{listed_key}"
    );
    assert_eq!(listed_key["prefix"], prefix);
    assert_eq!(listed_key["createdBy"], admin_sub.as_str());
    assert!(ts(&listed_key["lastUsedAt"]) >= created_at, "{listed_key}");
    assert!(listed_key.get("revokedAt").is_none(), "{listed_key}");
    let text = serde_json::to_string(&keys).unwrap();
    assert!(!text.contains(&secret[4..]), "a secret in the listing: {text}");

    // Rotated: the old secret is refused at once, the new one works.
    let r = app
        .send(
            Method::POST,
            Some(&admin),
            &format!("/v1/api-keys/{id}:rotate"),
            None,
            &[("x-request-id", &request_id)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rotated = r.body["key"].as_str().expect("new key").to_string();
    assert_ne!(rotated, secret);
    assert_eq!(r.body["id"], id.as_str());
    let (status, body) = convert(&app, &secret).await;
    assert_eq!(status, 401, "the old secret right after rotation -> {body}");
    assert_error(&body, 16);
    let (status, body) = convert(&app, &rotated).await;
    assert_eq!(status, 200, "the new secret -> {body}");

    // Revoked: refused at once; revoking again answers the same.
    let r = app
        .send(
            Method::DELETE,
            Some(&admin),
            &format!("/v1/api-keys/{id}"),
            None,
            &[("x-request-id", &request_id)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let revoked_at = r.body["revokedAt"].clone();
    assert!(ts(&revoked_at) >= created_at);
    let (status, _) = convert(&app, &rotated).await;
    assert_eq!(status, 401, "a revoked key");
    let again = app
        .send(
            Method::DELETE,
            Some(&admin),
            &format!("/v1/api-keys/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!((again.status, &again.body["revokedAt"]), (200, &revoked_at));
    let r = app
        .send(
            Method::POST,
            Some(&admin),
            &format!("/v1/api-keys/{id}:rotate"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "a revoked key is not rotated back: {}", r.body);
    let r = app
        .send(
            Method::DELETE,
            Some(&admin),
            "/v1/api-keys/no-such-key",
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The audit log: create, rotate, revoke (once), with the admin and the request id.
    let (status, log) = app.get(&admin, &format!("/v1/audit?subject={id}")).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["api_key.revoke", "api_key.rotate", "api_key.create"],
        "{log}"
    );
    for e in &entries {
        assert_eq!(e["actor"], admin_sub.as_str(), "{e}");
        assert_eq!(e["actorRole"], "admin", "{e}");
        assert_eq!(e["requestId"], request_id.as_str(), "{e}");
        assert_eq!(e["subjectKind"], "api_key", "{e}");
    }
    let log_text = log.to_string();
    for s in [&secret, &rotated] {
        assert!(!log_text.contains(&s[4..]), "a secret in the audit log");
    }
    assert_eq!(entries[2]["after"]["scopes"], json!(["conversions:write"]));
    assert_eq!(entries[1]["before"]["prefix"], prefix);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_do_what_their_scopes_say_and_never_admin_work() {
    let app = spawn_app().await;
    let reader = app.api_key(&["reports:read"]).await;
    let billing = app.billing_key().await;

    // Conversions: a key with conversions:write only; people never (admins neither).
    let (status, body) = convert(&app, &reader).await;
    assert_eq!(status, 403, "a key without conversions:write -> {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("conversions:write"),
        "{body}"
    );
    let (status, body) = convert(&app, &app.fresh_admin()).await;
    assert_eq!(status, 403, "an admin reports no conversion -> {body}");
    let user = unique("payer");
    let (status, body) = app
        .post(&app.member(&user, "COUPLE"), "/v1/conversions", payment(&user))
        .await;
    assert_eq!(
        status, 403,
        "a member reports no conversion, not even its own -> {body}"
    );

    // Reports: reports:read reads them; billing's key does not.
    for path in ["/v1/metrics/viral", "/v1/metrics/funnel", "/v1/leaderboard"] {
        let (status, body) = app.get(&reader, path).await;
        assert_eq!(status, 200, "{path} with reports:read -> {body}");
        let (status, body) = app.get(&billing, path).await;
        assert_eq!(status, 403, "{path} with conversions:write only -> {body}");
    }

    // Server-to-server invitations and signups, for anyone, with their scopes only.
    let writer = app.api_key(&["invitations:write", "signups:write"]).await;
    let referrer = unique("venue");
    let invitation =
        referral_tests::invitation(&referrer, "LINK", &format!("{}@example.com", unique("guest")));
    let (status, body) = app.post(&writer, "/v1/invitations", invitation.clone()).await;
    assert_eq!(status, 200, "invitations:write for any referrer -> {body}");
    assert_eq!(body["referrerId"], referrer.as_str());
    let (status, _) = app.post(&billing, "/v1/invitations", invitation).await;
    assert_eq!(status, 403, "no invitations:write");
    let signup = json!({"userId": unique("couple"), "userKind": "COUPLE"});
    let (status, body) = app.post(&writer, "/v1/signups", signup.clone()).await;
    assert_eq!(status, 200, "signups:write for any user -> {body}");
    let (status, _) = app.post(&reader, "/v1/signups", signup).await;
    assert_eq!(status, 403, "no signups:write");
    // Even with every scope, a key reads no one's invitations (it owns none).
    let (status, body) = app
        .get(&writer, &format!("/v1/invitations?referrerId={referrer}"))
        .await;
    assert_eq!(status, 403, "{body}");

    // Admin routes: refused to a key holding every scope.
    let all = app
        .api_key(&[
            "conversions:write",
            "invitations:write",
            "signups:write",
            "activity:write",
            "reports:read",
        ])
        .await;
    let hook = json!({"url": "https://hooks.example.com/x", "eventTypes": ["conversion.recorded"]});
    let name_and_scopes = json!({"name": "escalate", "scopes": ["reports:read"]});
    let admin_calls: [(Method, &str, Option<&Value>); 8] = [
        (Method::GET, "/v1/api-keys", None),
        (Method::POST, "/v1/api-keys", Some(&name_and_scopes)),
        (Method::GET, "/v1/audit", None),
        (Method::GET, "/v1/fraud/cases", None),
        (
            Method::PUT,
            "/v1/referrers/anyone/tier",
            Some(&json!({"tier": "PREMIUM"})),
        ),
        (Method::POST, "/v1/webhook-endpoints", Some(&hook)),
        (Method::GET, "/v1/reward-programs", None),
        (Method::DELETE, "/v1/people/anyone", None),
    ];
    for (method, path, body) in admin_calls {
        let r = app.send(method.clone(), Some(&all), path, body, &[]).await;
        assert_eq!(r.status, 403, "{method} {path} with an API key -> {}", r.body);
        assert_error(&r.body, 7);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_definitions_are_checked_and_only_admins_manage_keys() {
    let app = spawn_app().await;
    let admin = app.fresh_admin();
    for (body, field) in [
        (json!({"name": "x", "scopes": ["admin"]}), "scopes"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x"}), "scopes"),
        (
            json!({"name": "x", "scopes": ["reports:read", "reports:read"]}),
            "scopes",
        ),
        (json!({"name": "x", "scopes": ["REPORTS:READ"]}), "scopes"),
        (json!({"name": "", "scopes": ["reports:read"]}), "name"),
        (json!({"name": "bill\ning", "scopes": ["reports:read"]}), "name"),
        (
            json!({"name": "n".repeat(101), "scopes": ["reports:read"]}),
            "name",
        ),
    ] {
        let (status, answer) = app.post(&admin, "/v1/api-keys", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(violated_fields(&answer), [field], "{body} -> {answer}");
    }
    let (status, answer) = app
        .post(
            &admin,
            "/v1/api-keys",
            json!({"name": "x", "scopes": ["reports:read"], "admin": true}),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused: {answer}");
    let member = app.member(&unique("m"), "SUPPLIER");
    let (status, _) = app
        .post(
            &member,
            "/v1/api-keys",
            json!({"name": "x", "scopes": ["reports:read"]}),
        )
        .await;
    assert_eq!(status, 403, "a member creates no key");
    let (status, _) = app.get(&member, "/v1/api-keys").await;
    assert_eq!(status, 403, "a member lists no keys");
    // Nothing was created by any of this.
    let (status, list) = app.get(&admin, "/v1/api-keys").await;
    assert_eq!(status, 200);
    assert!(list["apiKeys"].as_array().is_none_or(Vec::is_empty), "{list}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_keys_are_401_never_500() {
    let app = spawn_app().await;
    let forged = format!("rmk_{}", "A".repeat(43));
    let values: Vec<Vec<u8>> = vec![
        b"Bearer rmk_".to_vec(),
        format!("Bearer rmk_{}", "A".repeat(10 * 1024)).into_bytes(),
        format!("Bearer rmk_{}\u{e9}", "A".repeat(41)).into_bytes(),
        b"Bearer rmk_\xff\xfe".to_vec(),
        format!("Bearer rmk_{}\t{}", "A".repeat(20), "B".repeat(22)).into_bytes(),
        format!("Bearer rmk_{}\x7f", "A".repeat(42)).into_bytes(),
        format!("Bearer {forged}").into_bytes(),
        format!("Bearer rmk_{}-", "A".repeat(42)).into_bytes(),
    ];
    for value in values {
        let Ok(header) = reqwest::header::HeaderValue::from_bytes(&value) else {
            continue; // not sendable at all (the client refuses it)
        };
        let r = app
            .http
            .post(app.url("/v1/conversions"))
            .header("authorization", header)
            .json(&payment(&unique("u")))
            .send()
            .await
            .expect("request");
        let reply = TestApp::reply(r).await;
        assert_eq!(
            reply.status,
            401,
            "{:.80?} -> {}",
            String::from_utf8_lossy(&value),
            reply.body
        );
        assert_error(&reply.body, 16);
    }
    // An open route does not care; the gateway stays healthy.
    let (status, _) = app.get(&forged, "/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_use_is_shown_after_use_and_not_before() {
    let app = spawn_app().await;
    let admin = app.fresh_admin();
    let key = create_key(
        &app,
        &admin,
        &unique("req"),
        json!({"name": unique("reports"), "scopes": ["reports:read"]}),
    )
    .await;
    let id = key["id"].as_str().unwrap().to_string();
    let find = |keys: Vec<Value>| keys.into_iter().find(|k| k["id"] == id.as_str());
    let before = find(listed(&app, &admin).await).expect("listed");
    assert!(before.get("lastUsedAt").is_none(), "unused: {before}");
    let (status, _) = app.get(key["key"].as_str().unwrap(), "/v1/leaderboard").await;
    assert_eq!(status, 200);
    let used = eventually(std::time::Duration::from_secs(5), || async {
        find(listed(&app, &admin).await).filter(|k| k.get("lastUsedAt").is_some())
    })
    .await;
    assert!(used.is_some(), "lastUsedAt after a use");
    app.stop().await;
}
