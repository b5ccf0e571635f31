//! No personal data at rest or in the logs (issue #16): a whole referral (an e-mail and an
//! SMS invitation, a click from a distinctive browser, a signup with a distinctive e-mail
//! and name, a conversion) goes through the mesh, every consumer catches up, and then the
//! bytes of the database files (with their WAL and SHM) and of everything every service and
//! the gateway logged (at debug level) are searched for the e-mail (any case), the phone, the
//! names, the IP, the user agent and the device id. The dev `mailbox/` directory is the
//! recipients' inbox stand-in, not storage, and is not searched.
//!
//! Which databases are searched is explicit: every service's, with its WAL and shared memory.

use std::{
    io::Write,
    path::Path,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use referral_mesh::Storage;
use referral_tests::{TestApp, eventually, start_with, test_options, unique};
use serde_json::{Value, json};

const RECIPIENT_EMAIL: &str = "Zelda.Quillfeather+Wed@Example.org";
const RECIPIENT_NAME: &str = "Zelda Quillfeather";
const PHONE: &str = "+447700900461";
const SIGNUP_EMAIL: &str = "Marigold.Thistlewood@Example.net";
const SIGNUP_NAME: &str = "Marigold Thistlewood";
const IP: &str = "198.51.100.213";
const USER_AGENT: &str = "PiiProbe/7.3 (Quillfeather Browser)";
const DEVICE: &str = "device-quillfeather-77";
/// The supplier's own (another person's, so the referral is no self-referral).
const SUPPLIER_IP: &str = "203.0.113.154";
const SUPPLIER_AGENT: &str = "PiiProbe/7.3 (Supplier Thistlebrook)";
const SUPPLIER_DEVICE: &str = "device-thistlebrook-12";

/// What must never be found (compared without case).
const NEEDLES: [&str; 14] = [
    RECIPIENT_EMAIL,
    "zelda.quillfeather@example.org",
    "quillfeather+wed",
    RECIPIENT_NAME,
    PHONE,
    "7700900461",
    SIGNUP_EMAIL,
    SIGNUP_NAME,
    IP,
    USER_AGENT,
    DEVICE,
    SUPPLIER_IP,
    SUPPLIER_AGENT,
    SUPPLIER_DEVICE,
];

/// The database files searched now (in the data dir).
const CHECKED_FILES: [&str; 12] = [
    "invite.db",
    "invite.db-wal",
    "invite.db-shm",
    "fraud.db",
    "fraud.db-wal",
    "fraud.db-shm",
    "incentive.db",
    "incentive.db-wal",
    "incentive.db-shm",
    "analytics.db",
    "analytics.db-wal",
    "analytics.db-shm",
];

/// Everything logged in this test process (every service and the gateway run in it).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        // Installed before the mesh's own (which then finds one and leaves it).
        let installed = tracing_subscriber::fmt()
            .with_env_filter("debug,h2=info,hyper=info,hyper_util=info,tower=info,reqwest=info,rustls=info")
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        assert!(installed.is_ok(), "the capturing subscriber is the process's");
        logs
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The needles found in `bytes` (ASCII case folded).
fn found_in(bytes: &[u8]) -> Vec<&'static str> {
    let hay = bytes.to_ascii_lowercase();
    NEEDLES
        .iter()
        .filter(|n| {
            let n = n.to_ascii_lowercase().into_bytes();
            hay.windows(n.len()).any(|w| w == n.as_slice())
        })
        .copied()
        .collect()
}

type Headers = [(&'static str, &'static str); 3];

fn client_headers() -> Headers {
    [
        ("x-forwarded-for", IP),
        ("user-agent", USER_AGENT),
        ("x-device-id", DEVICE),
    ]
}

fn supplier_headers() -> Headers {
    [
        ("x-forwarded-for", SUPPLIER_IP),
        ("user-agent", SUPPLIER_AGENT),
        ("x-device-id", SUPPLIER_DEVICE),
    ]
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value, headers: &Headers) -> Value {
    let r = app
        .send(reqwest::Method::POST, Some(token), path, Some(&body), headers)
        .await;
    assert_eq!(r.status, 200, "POST {path} {body} -> {:?}", r.body);
    r.body
}

/// The referral of the module documentation; returns once every consumer has caught up.
async fn referral(app: &TestApp) {
    let supplier = unique("supplier");
    let token = app.member(&supplier, "SUPPLIER");
    let by_email = post(
        app,
        &token,
        "/v1/invitations",
        json!({"referrerId": supplier, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
               "vendorType": "PHOTOGRAPHER", "channel": "LINK",
               "recipient": {"email": RECIPIENT_EMAIL, "name": RECIPIENT_NAME},
               "message": format!("Dear {RECIPIENT_NAME}, come and see us")}),
        &supplier_headers(),
    )
    .await;
    post(
        app,
        &token,
        "/v1/invitations",
        json!({"referrerId": supplier, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
               "vendorType": "PHOTOGRAPHER", "channel": "SMS",
               "recipient": {"phone": PHONE, "name": RECIPIENT_NAME}}),
        &supplier_headers(),
    )
    .await;
    let code = by_email["code"].as_str().expect("code");
    let r = app
        .send(
            reqwest::Method::GET,
            None,
            &format!("/r/{code}"),
            None,
            &client_headers(),
        )
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    let click = referral_tests::click_param(r.header("location").unwrap_or_default()).expect("rm_click");
    let couple = unique("couple");
    let signup = post(
        app,
        &app.member(&couple, "COUPLE"),
        "/v1/signups",
        json!({"userId": couple, "userKind": "COUPLE", "email": SIGNUP_EMAIL,
               "name": SIGNUP_NAME, "clickId": click}),
        &client_headers(),
    )
    .await;
    assert_eq!(signup["attributed"], json!(true), "{signup}");
    post(
        app,
        &app.billing_key().await,
        "/v1/conversions",
        json!({"userId": couple, "value": {"amountMinor": "12900", "currency": "GBP"},
               "plan": "PROFESSIONAL", "annual": false}),
        &client_headers(),
    )
    .await;
    // invite-svc has recorded the conversion; the consumers (fraud, incentive, analytics)
    // follow its log live, within a relay tick or two.
    let id = by_email["id"].as_str().expect("id").to_string();
    let seen = eventually(Duration::from_secs(20), || async {
        let (status, body) = app.get(&token, &format!("/v1/invitations/{id}")).await;
        (status == 200 && body["status"] == "CONVERTED").then_some(())
    })
    .await;
    assert!(seen.is_some(), "the invitation converts");
    // The fraud consumer's and the outbox relay's last batches.
    tokio::time::sleep(Duration::from_secs(5)).await;
}

fn assert_files_clean(dir: &Path, when: &str) {
    let mut read = 0;
    for name in CHECKED_FILES {
        let path = dir.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        read += 1;
        let found = found_in(&bytes);
        assert!(found.is_empty(), "{when}: {name} holds {found:?}");
    }
    assert!(read >= 1, "{when}: no database file read in {}", dir.display());
}

fn assert_logs_clean() {
    let logs = captured_logs().lock().expect("log buffer").clone();
    assert!(
        logs.len() > 1_000,
        "the services logged ({} bytes): the capture works",
        logs.len()
    );
    let found = found_in(&logs);
    assert!(found.is_empty(), "the logs hold {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_personal_data_in_the_sqlite_files_or_the_logs() {
    captured_logs();
    let mut options = test_options(
        vec!["--trusted-proxies".into(), "127.0.0.1/32".into()],
        vec![],
        true,
    );
    options.storage = Storage::Sqlite;
    let app = start_with(options).await.expect("the mesh starts");
    referral(&app).await;
    let dir = app.data_dir.clone();
    assert_files_clean(&dir, "running");
    // Stopped: the WAL checkpointed into the database file.
    app.mesh.stop(Duration::from_secs(10)).await;
    assert_files_clean(&dir, "stopped");
    assert_logs_clean();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every text (and bytea, as escaped text) column of invite-svc's schema, searched for the
/// values: the Postgres form of the check above. Runs when TEST_DATABASE_URL is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_personal_data_in_invites_postgres_schema() {
    captured_logs();
    let options = test_options(
        vec!["--trusted-proxies".into(), "127.0.0.1/32".into()],
        vec![],
        true,
    );
    let Storage::Postgres { url, schema_suffix } = options.storage.clone() else {
        return;
    };
    let app = start_with(options).await.expect("the mesh starts");
    referral(&app).await;
    let schema = format!("invite{schema_suffix}");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = $1 AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea')",
    )
    .bind(&schema)
    .fetch_all(&pool)
    .await
    .expect("columns");
    assert!(
        columns
            .iter()
            .any(|(t, c, _)| t == "invitations" && c == "recipient_email")
    );
    let mut rows_read = 0;
    for (table, column, kind) in &columns {
        let value = if kind == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        let sql = format!("SELECT {value} FROM \"{schema}\".\"{table}\" WHERE \"{column}\" IS NOT NULL");
        let values: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .expect("values");
        for v in &values {
            rows_read += 1;
            let found = found_in(v.as_bytes());
            assert!(found.is_empty(), "{table}.{column} holds {found:?}");
        }
    }
    assert!(rows_read > 20, "{rows_read} values read");
    pool.close().await;
    assert_logs_clean();
    app.stop().await;
}
