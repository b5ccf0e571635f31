//! The fraud-svc binary the way Kubernetes runs it (the manifests in k8s/ rely on each of
//! these): `migrate` as its own step, then `serve`, configured by the environment alone,
//! JSON logs, Prometheus /metrics on its own port, gRPC health with `readiness`, and on
//! SIGTERM a drain that ends long-lived event streams and exits cleanly, well inside the
//! 30 s the pods leave after their preStop.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use referral_common::auth::{ServiceCredentials, ServiceKeys};
use referral_common::config::Secret;
use referral_proto::{
    events::v1::{SubscribeRequest, event_log_client::EventLogClient},
    fraud::v1::{AssessInvitationRequest, fraud_service_client::FraudServiceClient},
};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, process::Command};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const SECRET: &str = "fraud-svc-binary-test-secret-0123456789";
const SERVICE_SECRET: &str = "fraud-svc-binary-test-service-secret-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fraud_svc(dir: &std::path::Path, grpc: u16, metrics: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fraud-svc"));
    cmd.env_clear()
        .env(
            "FRAUD_DATABASE_URL",
            format!("sqlite:{}", dir.join("fraud.db").display()),
        )
        .env("JWT_SECRET", SECRET)
        .env("SERVICE_JWT_SECRET", SERVICE_SECRET)
        // Every service seals and looks up personal data (privacy requests): keys required.
        .env("PII_KEYS", "t1:fraud-binary-test-pii-key-0123456789abcdef")
        .env("PII_LOOKUP_KEY", "fraud-binary-test-lookup-key-0123456789abcdef")
        .env("FRAUD_LISTEN", format!("127.0.0.1:{grpc}"))
        .env("FRAUD_METRICS_ADDR", format!("127.0.0.1:{metrics}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn ready(addr: &str) -> bool {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "readiness".into(),
        })
        .await;
    reply.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn migrate_then_serve_then_drain_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("fraud-svc-binary-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (grpc, metrics) = (free_port(), free_port());

    // The migration Job's command.
    let migrate = fraud_svc(&dir, grpc, metrics)
        .arg("migrate")
        .output()
        .await
        .unwrap();
    assert!(
        migrate.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(dir.join("fraud.db").exists(), "migrate created no database");

    let child = fraud_svc(&dir, grpc, metrics).arg("serve").spawn().unwrap();
    let pid = child.id().expect("running");
    let addr = format!("http://127.0.0.1:{grpc}");
    let started = Instant::now();
    while !ready(&addr).await {
        assert!(started.elapsed() < Duration::from_secs(30), "never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One assessment, as invite-svc asks for, and one refused call: /metrics counts both.
    let keys = ServiceKeys::new(&Secret::new(SERVICE_SECRET));
    let channel = tonic::transport::Endpoint::from_shared(addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    FraudServiceClient::with_interceptor(channel.clone(), ServiceCredentials::new(&keys, "invite-svc"))
        .assess_invitation(AssessInvitationRequest {
            invitation_id: "inv-1".into(),
            referrer_id: "photographer".into(),
            recipient_email: "sam@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = FraudServiceClient::new(channel.clone())
        .assess_invitation(AssessInvitationRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let scrape = http_get(metrics, "/metrics").await;
    assert!(scrape.starts_with("HTTP/1.0 200"), "{scrape}");
    assert!(scrape.contains("fraud_assessments_total{"), "{scrape}");
    assert!(
        scrape.contains(
            r#"grpc_server_handled_total{method="/referral.fraud.v1.FraudService/AssessInvitation",code="Ok"} 1"#
        ),
        "{scrape}"
    );
    assert!(scrape.contains(r#"code="Unauthenticated"} 1"#), "{scrape}");

    // A consumer's long-lived stream, as invite-svc, incentive-svc and analytics-svc hold.
    let mut log = EventLogClient::with_interceptor(channel, ServiceCredentials::new(&keys, "test"));
    let mut stream = log
        .subscribe(SubscribeRequest {
            after_offset: 0,
            consumer: "binary-test".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let term = Instant::now();
    // The signal straight from here, not through a `kill` program the machine may lack.
    let target = rustix::process::Pid::from_raw(pid as i32).expect("a child pid");
    rustix::process::kill_process(target, rustix::process::Signal::TERM).expect("SIGTERM sent");
    let output = tokio::time::timeout(Duration::from_secs(25), child.wait_with_output())
        .await
        .expect("fraud-svc did not stop within 25 s of SIGTERM")
        .unwrap();
    let drained_in = term.elapsed();
    assert!(output.status.success(), "exit after SIGTERM: {:?}", output.status);
    assert!(drained_in < Duration::from_secs(10), "drain took {drained_in:?}");
    // The stream was ended by the server, not left hanging.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the event stream was still open after the drain");

    // Every log line is one JSON object (what a collector parses), and the drain is logged.
    let logs =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no logs");
    for line in &lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(logs.contains("SIGTERM received"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}
