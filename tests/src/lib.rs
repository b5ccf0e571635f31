//! `spawn_app` for the integration tests: the whole mesh in-process on free ports, on
//! SQLite in a temp dir, or on Postgres + Redis when TEST_DATABASE_URL / TEST_REDIS_URL are
//! set (each app in fresh schemas, so tests never see each other).

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use referral_common::{auth::Role, config::Secret};
use referral_mesh::{GrpcPorts, Mesh, MeshOptions, Part, Storage};
use serde_json::{Value, json};

pub mod smtp;
pub mod tls_backends;

pub struct TestApp {
    pub mesh: Mesh,
    pub http: reqwest::Client,
    pub base: String,
    pub data_dir: PathBuf,
    /// How this app was started, to start it again on the same data ([`TestApp::restart`]).
    pub options: MeshOptions,
}

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// Signs the services' own tokens (refused by the gateway).
pub const SERVICE_SECRET: &str = "integration-test-service-secret-9876543210";

pub async fn spawn_app() -> TestApp {
    spawn_app_with(vec![]).await
}

/// `gateway_args` tune the gateway (e.g. rate limits) for one test.
pub async fn spawn_app_with(gateway_args: Vec<String>) -> TestApp {
    spawn_app_with_args(gateway_args, vec![]).await
}

/// Extra flags for the gateway and for invite-svc (e.g. `--max-queued 5`).
pub async fn spawn_app_with_args(gateway_args: Vec<String>, invite_args: Vec<String>) -> TestApp {
    try_spawn_app(gateway_args, invite_args)
        .await
        .expect("the mesh starts")
}

/// Rate-limit counters in a shared Redis are keyed by client IP or subject, not by app, so
/// every app of a run (and every run within the minute) shares the 127.0.0.1 budget. Apps
/// that do not test limits get limits no test reaches, so they stay independent.
fn isolated_limits(gateway_args: Vec<String>) -> Vec<String> {
    let shared = std::env::var("TEST_REDIS_URL").is_ok_and(|u| !u.is_empty());
    if !shared || gateway_args.iter().any(|a| a.contains("rate-limit")) {
        return gateway_args;
    }
    let mut args: Vec<String> = [
        "--api-rate-limit-per-minute",
        "1000000",
        "--redirect-rate-limit-per-minute",
        "1000000",
    ]
    .map(String::from)
    .into();
    args.extend(gateway_args);
    args
}

/// Like [`spawn_app_with_args`], but a mesh that does not start is an error to look at.
pub async fn try_spawn_app(gateway_args: Vec<String>, invite_args: Vec<String>) -> anyhow::Result<TestApp> {
    try_spawn_app_redis(gateway_args, invite_args, true).await
}

/// `use_redis: false` keeps this app off TEST_REDIS_URL (limits and idempotency in memory):
/// for tests of exact rate-limit counts, which a Redis shared by the whole run would blur.
pub async fn try_spawn_app_redis(
    gateway_args: Vec<String>,
    invite_args: Vec<String>,
    use_redis: bool,
) -> anyhow::Result<TestApp> {
    start_with(test_options(gateway_args, invite_args, use_redis)).await
}

/// Extra flags for analytics-svc (e.g. quick webhook retries, a loopback receiver allowed).
pub async fn spawn_app_with_analytics(analytics_args: Vec<String>) -> TestApp {
    let mut options = test_options(vec![], vec![], true);
    options.analytics_args = analytics_args;
    start_with(options).await.expect("the mesh starts")
}

/// A fresh data dir and schemas, Postgres and Redis when the test environment names them.
pub fn test_options(gateway_args: Vec<String>, invite_args: Vec<String>, use_redis: bool) -> MeshOptions {
    referral_common::telemetry::init(referral_common::config::LogFormat::Pretty);
    let data_dir = std::env::temp_dir().join(format!("referral-mesh-test-{}", uuid::Uuid::now_v7()));
    let storage = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Storage::Postgres {
            url,
            schema_suffix: format!("_t{}", uuid::Uuid::now_v7().simple()),
        },
        _ => Storage::Sqlite,
    };
    let redis_url = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| use_redis && !u.is_empty());
    MeshOptions {
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse().expect("literal address"),
        grpc_ports: GrpcPorts::Auto,
        grpc_base_port: referral_mesh::DEFAULT_GRPC_BASE_PORT,
        storage,
        redis_url,
        redis_ca_file: None,
        jwt_secret: Secret::new(SECRET),
        service_jwt_secret: Secret::new(SERVICE_SECRET),
        invite_args: same_landing_hosts(&gateway_args, patient_fraud_checks(idle_scheduler(invite_args))),
        gateway_args: test_landing_hosts(isolated_limits(gateway_args)),
        analytics_args: vec![],
        parts: Part::ALL.to_vec(),
        invite_send_fault: Default::default(),
        consumer_fault: Default::default(),
    }
}

/// The landing pages the suites' codes name (the redirect re-checks LANDING_HOSTS), unless
/// a test sets its own.
pub const TEST_LANDING_HOSTS: &str = "example.org,example.com,www.example.com,wed.example";

fn test_landing_hosts(mut gateway_args: Vec<String>) -> Vec<String> {
    if !gateway_args.iter().any(|a| a == "--landing-hosts") {
        gateway_args.extend(["--landing-hosts".to_string(), TEST_LANDING_HOSTS.to_string()]);
    }
    gateway_args
}

/// invite-svc checks a code's landing URL against the same LANDING_HOSTS the gateway
/// re-checks at redirect: the gateway's list (a test's own, or the suites') goes to both.
fn same_landing_hosts(gateway_args: &[String], mut invite_args: Vec<String>) -> Vec<String> {
    if !invite_args.iter().any(|a| a == "--landing-hosts") {
        let hosts = gateway_args
            .iter()
            .position(|a| a == "--landing-hosts")
            .and_then(|i| gateway_args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| TEST_LANDING_HOSTS.to_string());
        invite_args.extend(["--landing-hosts".to_string(), hosts]);
    }
    invite_args
}

/// Tests of creating, listing and cancelling invitations look at them before they are sent;
/// a scheduler sending whatever is due (on a weekday afternoon, everything) would race them.
/// Its first look at start-up finds nothing due, and the next is an hour later. Delivery
/// tests pass their own `--scheduler-tick`.
fn idle_scheduler(mut invite_args: Vec<String>) -> Vec<String> {
    if !invite_args.iter().any(|a| a == "--scheduler-tick") {
        invite_args.extend(["--scheduler-tick".to_string(), "1h".to_string()]);
    }
    invite_args
}

/// A loaded CI machine must not turn fraud-svc's answers into time-outs (PENDING_REVIEW)
/// for tests that are not about that; the tests that are pass their own deadline.
fn patient_fraud_checks(mut invite_args: Vec<String>) -> Vec<String> {
    if !invite_args.iter().any(|a| a == "--fraud-deadline") {
        invite_args.extend(["--fraud-deadline".to_string(), "5s".to_string()]);
    }
    invite_args
}

pub async fn start_with(options: MeshOptions) -> anyhow::Result<TestApp> {
    let mesh = referral_mesh::start(options.clone()).await?;
    let base = mesh.gateway_url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    Ok(TestApp {
        mesh,
        http,
        base,
        data_dir: options.data_dir.clone(),
        options,
    })
}

impl TestApp {
    pub fn member(&self, sub: &str, kind: &str) -> String {
        self.mesh.token(sub, Role::Member, Some(kind))
    }

    pub fn admin(&self) -> String {
        self.mesh.token("admin", Role::Admin, None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST JSON with a token; returns status and parsed body.
    pub async fn post(&self, token: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        Self::read(r).await
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        Self::read(r).await
    }

    pub async fn read(r: reqwest::Response) -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// The keys the mesh seals personal data with (its data dir's), to open what events carry.
    pub fn pii_keys(&self) -> referral_common::pii::PiiKeys {
        let s = referral_mesh::secret::pii_keys_load_or_create(&self.data_dir).expect("pii keys");
        referral_common::pii::PiiKeys::parse(&Secret::new(s.keys), &Secret::new(s.lookup))
            .expect("pii keys parse")
    }

    /// Stops gracefully (as on SIGTERM) and starts again on the same data, on new ports.
    pub async fn restart(self) -> TestApp {
        let options = self.options.clone();
        self.mesh.stop(Duration::from_secs(10)).await;
        start_with(options).await.expect("the mesh starts again")
    }

    pub async fn stop(self) {
        self.mesh.stop(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
        drop_schemas(&self.options.storage).await;
    }
}

/// The Postgres schemas of a stopped app (`{service}{suffix}`), so runs leave nothing behind.
async fn drop_schemas(storage: &Storage) {
    let Storage::Postgres { url, schema_suffix } = storage else {
        return;
    };
    let Ok(pool) = sqlx::PgPool::connect(url).await else {
        return;
    };
    for service in ["invite", "fraud", "incentive", "analytics"] {
        let sql = format!("DROP SCHEMA IF EXISTS \"{service}{schema_suffix}\" CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
    }
    pool.close().await;
}

// ---- helpers shared by the integration tests ------------------------------------------

/// A fresh id, so tests (and runs against a shared Redis) never share a subject.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// The click id `/r/{code}` put in its `Location` (`rm_click`, the last one if repeated).
pub fn click_param(location: &str) -> Option<String> {
    let url = reqwest::Url::parse(location).ok()?;
    url.query_pairs()
        .filter(|(k, _)| k == "rm_click")
        .map(|(_, v)| v.into_owned())
        .last()
}

/// One HTTP answer with its headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// The mesh's click-id signing keys (generated into its data dir), to mint ids as a
    /// gateway replica would — ids whose click row is never written.
    pub fn click_keys(&self) -> referral_common::click_id::ClickKeys {
        let raw = std::fs::read_to_string(self.data_dir.join(referral_mesh::secret::CLICK_KEYS_FILE))
            .expect("the mesh wrote its click keys");
        referral_common::click_id::ClickKeys::parse("CLICK_SIGNING_KEYS", &Secret::new(raw.trim()))
            .expect("valid click keys")
    }

    /// A token for any subject and role.
    pub fn token(&self, sub: &str, role: Role, kind: Option<&str>) -> String {
        self.mesh.token(sub, role, kind)
    }

    /// An admin token with a subject of its own (rate limits are per subject).
    pub fn fresh_admin(&self) -> String {
        self.mesh.token(&unique("admin"), Role::Admin, None)
    }

    /// A new API key holding `scopes`, created through the gateway by a fresh admin; the
    /// secret (`rmk_...`) to send as a bearer token.
    pub async fn api_key(&self, scopes: &[&str]) -> String {
        let body = json!({"name": unique("test key"), "scopes": scopes});
        let (status, key) = self.post(&self.fresh_admin(), "/v1/api-keys", body).await;
        assert_eq!(status, 200, "POST /v1/api-keys {scopes:?} -> {key}");
        key["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {key}"))
            .to_string()
    }

    /// A key with `conversions:write`, as the marketplace's billing holds: conversions are
    /// reported with it (members and admins cannot).
    pub async fn billing_key(&self) -> String {
        self.api_key(&["conversions:write"]).await
    }

    /// A service token (service key): for calling the services over gRPC; the gateway
    /// refuses it.
    pub fn service_token(&self) -> String {
        self.mesh.token(&unique("svc"), Role::Service, None)
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        Self::read(r).await
    }

    /// Any request: optional token, optional JSON body, extra headers; keeps the headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Self::reply(rb.send().await.expect("request")).await
    }

    /// A raw body (for malformed JSON and oversized requests).
    pub async fn post_raw(&self, token: &str, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        Self::reply(r).await
    }

    pub async fn reply(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Creates one invitation and insists on 200.
    pub async fn invite_ok(&self, token: &str, body: Value) -> Value {
        let (status, inv) = self.post(token, "/v1/invitations", body.clone()).await;
        assert_eq!(status, 200, "POST /v1/invitations {body} -> {inv}");
        inv
    }

    /// `user` (a member of `kind`) signs up through `invitation`, and is attributed.
    pub async fn signup_attributed(&self, user: &str, kind: &str, invitation: &str) {
        let (status, body) = self
            .post(
                &self.member(user, kind),
                "/v1/signups",
                serde_json::json!({"userId": user, "userKind": kind, "invitationId": invitation}),
            )
            .await;
        assert_eq!(status, 200, "signup -> {body}");
        assert_eq!(body["attributed"], serde_json::json!(true), "{body}");
    }

    /// Creates a referral code and insists on 200.
    pub async fn code_ok(&self, token: &str, body: Value) -> Value {
        let (status, code) = self.post(token, "/v1/referral-codes", body.clone()).await;
        assert_eq!(status, 200, "POST /v1/referral-codes {body} -> {code}");
        code
    }

    /// `http://127.0.0.1:port` of a service, for tonic.
    pub fn grpc_uri(addr: std::net::SocketAddr) -> String {
        format!("http://{addr}")
    }
}

/// A create-invitation body from a supplier to a couple.
pub fn invitation(referrer: &str, channel: &str, email: &str) -> Value {
    json!({
        "referrerId": referrer,
        "referrerKind": "SUPPLIER",
        "refereeKind": "COUPLE",
        "channel": channel,
        "recipient": {"email": email, "name": "Guest"},
    })
}

/// The fields named by the `google.rpc.BadRequest` details of an error body.
pub fn violated_fields(body: &Value) -> Vec<String> {
    details_of(body, "BadRequest")
        .iter()
        .flat_map(|d| d["fieldViolations"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v["field"].as_str().map(str::to_string))
        .collect()
}

/// The `google.rpc.ErrorInfo` detail of an error body, if any.
pub fn error_info(body: &Value) -> Option<Value> {
    details_of(body, "ErrorInfo").into_iter().next()
}

fn details_of(body: &Value, kind: &str) -> Vec<Value> {
    body["details"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .filter(|d| {
                    d["@type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(&format!("google.rpc.{kind}")))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the error body shape of docs/api.md: `{code: <grpc code>, message, details: [...]}`.
pub fn assert_error(body: &Value, grpc_code: i64) {
    assert_eq!(body["code"].as_i64(), Some(grpc_code), "error code in {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message in {body}"
    );
    assert!(body["details"].is_array(), "error details in {body}");
}

/// An RFC 3339 timestamp field.
pub fn ts(v: &Value) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 timestamp, got {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// An int64 field (a string in proto3 JSON, a number accepted too).
pub fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("expected an integer, got {v}")),
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| panic!("expected an integer, got {v}")),
        Value::Null => 0,
        other => panic!("expected an integer, got {other}"),
    }
}

/// The sending rules of docs/api.md: not Saturday 09:00-18:00, not 22:00-08:00, not within
/// three days of the wedding — all on the recipient's local clock.
pub fn assert_outside_blackouts(at: DateTime<Utc>, tz: chrono_tz::Tz, wedding: Option<NaiveDate>) {
    let local = at.with_timezone(&tz);
    let h = local.hour();
    assert!(
        !(local.weekday() == Weekday::Sat && (9..18).contains(&h)),
        "{at} is {local} in {tz}: Saturday 09:00-18:00 is a blackout"
    );
    assert!(
        (8..22).contains(&h),
        "{at} is {local} in {tz}: quiet hours 22:00-08:00"
    );
    if let Some(w) = wedding {
        let days = (local.date_naive() - w).num_days().abs();
        assert!(
            days > 3,
            "{at} is {local} in {tz}: within 3 days of the wedding on {w}"
        );
    }
}

/// `PREFIX-XXXXXX` with the prefixes of `kind` and six characters without look-alikes.
pub fn assert_code_shape(code: &str, kind: &str) {
    let prefixes: &[&str] = match kind {
        "SUPPLIER" => &["LOVE", "WED", "DREAM", "BLISS", "CHARM"],
        _ => &["COUPLE", "UNITY", "FOREVER", "HEARTS", "VOWS"],
    };
    let (prefix, rest) = code
        .split_once('-')
        .unwrap_or_else(|| panic!("{code:?} has no PREFIX-"));
    assert!(
        prefixes.contains(&prefix),
        "{code:?}: prefix {prefix:?} is not one of {prefixes:?} ({kind})"
    );
    assert_eq!(
        rest.chars().count(),
        6,
        "{code:?}: six characters after the prefix"
    );
    for c in rest.chars() {
        let ok = matches!(c, 'A'..='H' | 'J'..='K' | 'M'..='N' | 'P'..='Z' | '2'..='9');
        assert!(
            ok,
            "{code:?}: {c:?} is not in the alphabet without look-alikes (no 0 O 1 I L)"
        );
    }
}

/// Polls `check` every 50 ms until it returns Some, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// gRPC metadata `authorization: Bearer <token>` on a request.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    // A service token acts for nobody but itself (a member token ignores this).
    referral_common::auth::forwarded::write_none(req.metadata_mut());
    req
}

/// Reads invite-svc's event log from offset 0 until every id in `ids` has had its
/// `invitation_created` and the log has been quiet for a second; returns every event read.
pub async fn read_event_log(
    addr: std::net::SocketAddr,
    token: &str,
    ids: &std::collections::HashSet<String>,
    limit: Duration,
) -> Vec<referral_proto::events::v1::Event> {
    use referral_proto::events::v1::{
        SubscribeRequest, event, event_log_client::EventLogClient, subscribe_response::Item,
    };
    let mut client = EventLogClient::connect(TestApp::grpc_uri(addr))
        .await
        .expect("connect to the event log");
    let req = authed(
        SubscribeRequest {
            after_offset: 0,
            consumer: "integration-test".into(),
        },
        token,
    );
    let mut stream = client.subscribe(req).await.expect("Subscribe").into_inner();
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let all_seen = ids.iter().all(|id| seen.contains(id));
        let wait = if all_seen {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(500)
        };
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout(wait, stream.message()).await {
            Ok(Ok(Some(resp))) => {
                if let Some(Item::Event(e)) = resp.item {
                    if let Some(event::Payload::InvitationCreated(c)) = &e.payload {
                        seen.insert(
                            c.invitation
                                .as_ref()
                                .map(|f| f.invitation_id.clone())
                                .unwrap_or_default(),
                        );
                    }
                    events.push(e);
                }
            }
            Ok(Ok(None)) => panic!("the event log stream ended"),
            Ok(Err(status)) => panic!("the event log failed: {status:?}"),
            Err(_) if all_seen => break,
            Err(_) => {}
        }
    }
    events
}

/// What a referrer's invitation and a couple's signup through its code came back as while
/// fraud-svc could not answer: held (PENDING_REVIEW / REVIEW, `risk.pending`), never lost.
pub struct HeldWhileFraudAway {
    pub referrer: String,
    pub referrer_token: String,
    pub invitation: Value,
    pub user: String,
}

pub async fn held_while_fraud_away(app: &TestApp, vendor: &str) -> HeldWhileFraudAway {
    let referrer = unique(vendor);
    let referrer_token = app.member(&referrer, "SUPPLIER");
    let invitation = app
        .invite_ok(
            &referrer_token,
            invitation(&referrer, "EMAIL", &format!("{}@example.com", unique("guest"))),
        )
        .await;
    assert_eq!(invitation["status"], "PENDING_REVIEW", "{invitation}");
    assert_eq!(invitation["risk"]["pending"], true, "{invitation}");
    let code = app
        .code_ok(
            &referrer_token,
            json!({"referrerId": referrer, "referrerKind": "SUPPLIER"}),
        )
        .await["code"]
        .clone();
    let user = unique("couple");
    let (_, a) = app
        .post(
            &app.member(&user, "COUPLE"),
            "/v1/signups",
            json!({"userId": user, "userKind": "COUPLE", "code": code}),
        )
        .await;
    assert_eq!(a["attributed"], true, "attributed while fraud-svc is away: {a}");
    assert_eq!(a["risk"]["pending"], true, "{a}");
    assert_eq!(a["risk"]["action"], "REVIEW", "{a}");
    HeldWhileFraudAway {
        referrer,
        referrer_token,
        invitation,
        user,
    }
}

/// A header of a raw RFC 5322 message (first occurrence, unfolded), e.g. a dev mailbox file.
pub fn mail_header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or(message);
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A base port whose next three are free too (the fixed ports of the four services).
pub async fn free_port_run() -> u16 {
    for _ in 0..50 {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = first.local_addr().expect("addr").port();
        if base > u16::MAX - 3 {
            continue;
        }
        let mut held = vec![first];
        for port in base + 1..=base + 3 {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => held.push(l),
                Err(_) => break,
            }
        }
        if held.len() == 4 {
            return base;
        }
    }
    panic!("no run of four free ports");
}
