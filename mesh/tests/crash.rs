//! Crash safety of the packaged binary: SIGKILL `referral-mesh serve` while invitations are
//! being created, start it again on the same data dir, and check that every invitation the
//! caller was told about survived and appears exactly once in invite-svc's event log.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use referral_common::{
    auth::{JwtKeys, Role},
    config::Secret,
};
use referral_proto::events::v1::{
    Event, SubscribeRequest, event, event_log_client::EventLogClient, subscribe_response::Item,
};
use serde_json::json;
use tokio::process::{Child, Command};

const SECRET: &str = "crash-test-secret-0123456789-abcdefghijkl";
const WORKERS: usize = 8;
const ACKS_BEFORE_KILL: usize = 40;

/// A running `referral-mesh serve`, killed when dropped.
struct Running {
    child: Child,
    gateway: String,
    invite: String,
}

async fn start(data_dir: &Path, run: usize) -> Running {
    let out = data_dir.join(format!("stdout-{run}.log"));
    let err = data_dir.join(format!("stderr-{run}.log"));
    std::fs::create_dir_all(data_dir).expect("data dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_referral-mesh"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--grpc-ports", "auto"])
        .env("JWT_SECRET", SECRET)
        .env(
            "SERVICE_JWT_SECRET",
            "crash-test-service-secret-0123456789-abcdefgh",
        )
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "pretty")
        .env_remove("REDIS_URL")
        .env_remove("MESH_DATA_DIR")
        .env_remove("MESH_LISTEN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("start referral-mesh");
    for _ in 0..600 {
        // Not written yet: empty until the mesh prints.
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let field = |name: &str, marker: &str| {
            text.lines()
                .map(str::trim)
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(marker).map(|(_, rest)| rest.trim().to_string()))
        };
        if let (Some(gateway), Some(invite)) = (field("gateway ", "http://"), field("invite-svc ", "grpc ")) {
            return Running {
                child,
                gateway: format!("http://{gateway}"),
                invite: format!("http://{invite}"),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "referral-mesh exited with {status} before printing its banner:\n{}\n{}",
                text,
                // Only for the failure message: whatever it wrote, if anything.
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.start_kill();
    panic!(
        "no banner within 30 s:\n{}",
        // Only for the failure message.
        std::fs::read_to_string(&out).unwrap_or_default()
    );
}

/// Creates invitations as fast as the mesh takes them; records every 2xx id.
async fn worker(
    client: reqwest::Client,
    gateway: String,
    token: String,
    referrer: String,
    acked: Arc<Mutex<Vec<String>>>,
) {
    for i in 0.. {
        let channel = if i % 2 == 0 { "LINK" } else { "EMAIL" };
        let body = json!({
            "referrerId": referrer, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE", "channel": channel,
            "recipient": {"email": format!("{referrer}-{i}@example.com")},
        });
        let sent = client
            .post(format!("{gateway}/v1/invitations"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        let Ok(resp) = sent else { return };
        if !resp.status().is_success() {
            // Anything but a clean success before the kill is a failure of its own.
            let status = resp.status();
            // Only for the failure message: a body that cannot be read is reported as none.
            let text = resp.text().await.unwrap_or_default();
            if !text.is_empty() {
                acked.lock().expect("lock").push(format!("!{status} {text}"));
            }
            return;
        }
        let Ok(inv) = resp.json::<serde_json::Value>().await else {
            return;
        };
        if let Some(id) = inv["id"].as_str() {
            acked.lock().expect("lock").push(id.to_string());
        }
    }
}

async fn read_log(invite: &str, token: &str, want: &HashSet<String>) -> Vec<Event> {
    let mut client = EventLogClient::connect(invite.to_string())
        .await
        .expect("connect to invite-svc");
    let mut req = tonic::Request::new(SubscribeRequest {
        after_offset: 0,
        consumer: "crash-test".into(),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let mut stream = client.subscribe(req).await.expect("Subscribe").into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut events, mut seen) = (Vec::new(), HashSet::new());
    while tokio::time::Instant::now() < deadline {
        let all = want.iter().all(|id| seen.contains(id));
        match tokio::time::timeout(
            Duration::from_millis(if all { 1500 } else { 500 }),
            stream.message(),
        )
        .await
        {
            Ok(Ok(Some(resp))) => {
                if let Some(Item::Event(e)) = resp.item {
                    if let Some(event::Payload::InvitationCreated(c)) = &e.payload {
                        seen.insert(
                            c.invitation
                                .as_ref()
                                .map(|f| f.invitation_id.clone())
                                .expect("invitation_created carries its facts"),
                        );
                    }
                    events.push(e);
                }
            }
            Ok(Ok(None)) => panic!("the event log ended"),
            Ok(Err(s)) => panic!("the event log failed: {s:?}"),
            Err(_) if all => break,
            Err(_) => {}
        }
    }
    events
}

/// Outbox rows the crash left unnumbered (for the log; the sqlite3 CLI may be missing).
fn unnumbered_outbox_rows(data_dir: &Path) -> Option<String> {
    let out = std::process::Command::new("sqlite3")
        .arg(data_dir.join("invite.db"))
        .arg("SELECT COUNT(*) FROM outbox WHERE log_offset IS NULL")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn crash_and_restart(data_dir: PathBuf) {
    let keys = JwtKeys::new(&Secret::new(SECRET));
    let admin = keys.mint("crash-admin", Role::Admin, None, Duration::from_secs(600));
    let client = reqwest::Client::new();

    let mut first = start(&data_dir, 1).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let referrer = format!("crash-{w}-{}", uuid::Uuid::now_v7().simple());
            let token = keys.mint(
                &referrer,
                Role::Member,
                Some("SUPPLIER"),
                Duration::from_secs(600),
            );
            tokio::spawn(worker(
                client.clone(),
                first.gateway.clone(),
                token,
                referrer,
                acked.clone(),
            ))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < ACKS_BEFORE_KILL && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL, with requests in flight.
    first.child.kill().await.expect("SIGKILL referral-mesh");
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let acked: Vec<String> = acked.lock().expect("lock").clone();
    let failures: Vec<&String> = acked.iter().filter(|a| a.starts_with('!')).collect();
    assert!(
        failures.is_empty(),
        "creates failed before the kill: {failures:?}"
    );
    let acked: HashSet<String> = acked.into_iter().collect();
    assert!(
        acked.len() >= 10,
        "only {} invitations acknowledged before the kill",
        acked.len()
    );

    let unnumbered = unnumbered_outbox_rows(&data_dir);
    eprintln!(
        "{} invitations acknowledged before SIGKILL; {unnumbered:?} outbox rows left without an offset",
        acked.len()
    );
    let second = start(&data_dir, 2).await;
    for id in &acked {
        let r = client
            .get(format!("{}/v1/invitations/{id}", second.gateway))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        // A body that is not JSON shows as null in the message; the status is asserted first.
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(
            status, 200,
            "acknowledged invitation {id} after the crash: {body}"
        );
        assert_eq!(body["id"].as_str(), Some(id.as_str()));
    }

    let events = read_log(&second.invite, &admin, &acked).await;
    let mut created: HashMap<String, usize> = HashMap::new();
    for e in &events {
        if let Some(event::Payload::InvitationCreated(c)) = &e.payload {
            *created
                .entry(
                    c.invitation
                        .as_ref()
                        .map(|f| f.invitation_id.clone())
                        .expect("invitation_created carries its facts"),
                )
                .or_default() += 1;
        }
    }
    for id in &acked {
        assert_eq!(
            created.get(id).copied(),
            Some(1),
            "one invitation_created for acknowledged {id}"
        );
    }
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "invitation_created more than once: {twice:?}");
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets.first(), Some(&1), "the log starts at 1");
    for w in offsets.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "offsets without gaps or repeats across the crash: {offsets:?}"
        );
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_invitations_survive_sigkill_with_one_event_each() {
    let data_dir =
        std::env::temp_dir().join(format!("referral-mesh-crash-{}", uuid::Uuid::now_v7().simple()));
    let outcome = tokio::time::timeout(Duration::from_secs(180), crash_and_restart(data_dir.clone())).await;
    // The children are killed on drop, whether the test passed, failed or timed out.
    // Only for the failure message: a child that never started wrote no log.
    let logs =
        |n: usize| std::fs::read_to_string(data_dir.join(format!("stderr-{n}.log"))).unwrap_or_default();
    if outcome.is_err() {
        panic!(
            "the crash test took more than 180 s\nstderr 1:\n{}\nstderr 2:\n{}",
            logs(1),
            logs(2)
        );
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
