//! The gateway binary the way Kubernetes runs it: settings from the environment alone, JSON
//! logs (every stdout line one object), `/healthz` for liveness, `/readyz` for readiness
//! (503 while its services are away), `/metrics`, and a clean exit on SIGTERM well inside
//! the grace period.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status line and body of `GET path`, or None while nothing listens.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

#[test]
fn serves_health_and_metrics_logs_json_and_stops_on_sigterm() {
    let port = free_port();
    // Every service address points where nothing listens: the gateway still starts.
    let dead = || format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", "gateway-binary-test-secret-0123456789abc")
        .env(
            "SERVICE_JWT_SECRET",
            "gateway-binary-test-service-secret-0123456789",
        )
        .env(
            "CLICK_SIGNING_KEYS",
            "k1:gateway-binary-test-click-key-0123456789",
        )
        .env("INVITE_ADDR", dead())
        .env("FRAUD_ADDR", dead())
        .env("INCENTIVE_ADDR", dead())
        .env("ANALYTICS_ADDR", dead())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    let healthz = loop {
        if let Some(reply) = get(port, "/healthz") {
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never answered /healthz"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(healthz.0, "HTTP/1.1 200 OK", "{healthz:?}");
    let readyz = get(port, "/readyz").unwrap();
    assert_eq!(readyz.0, "HTTP/1.1 503 Service Unavailable", "{readyz:?}");
    let metrics = get(port, "/metrics").unwrap();
    assert_eq!(metrics.0, "HTTP/1.1 200 OK", "{metrics:?}");

    let term = Instant::now();
    // The signal straight from here, not through a `kill` program the machine may lack.
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM sent");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            term.elapsed() < Duration::from_secs(25),
            "still running 25 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    assert!(
        term.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        term.elapsed()
    );

    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no logs");
    for line in &lines {
        let log: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(log["level"].is_string(), "{line}");
    }
    assert!(stdout.contains("SIGTERM received"), "{stdout}");
}
