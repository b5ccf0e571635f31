//! The edge under abuse: idle sockets, connection caps and slow clients, against a real
//! listener (the router alone cannot show what happens to connections).

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use gateway::GatewayConfig;
use referral_common::server::{self, ShutdownTrigger};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};

struct Running {
    addr: SocketAddr,
    trigger: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(config: GatewayConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = gateway::build(config, listener).await.unwrap();
    let addr = gw.local_addr();
    let (trigger, shutdown) = server::shutdown_pair();
    let task = tokio::spawn(gw.run_until_stopped(shutdown));
    Running { addr, trigger, task }
}

impl Running {
    async fn stop(self) {
        self.trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// `GET /healthz` on a fresh connection; the status line's code.
async fn healthz(addr: SocketAddr) -> std::io::Result<u16> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await?;
    Ok(status_of(&out))
}

fn status_of(response: &[u8]) -> u16 {
    String::from_utf8_lossy(response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// How long until the server closes `tcp` (reads to EOF or a reset), at most `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let wait = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // e.g. a 408 before the close
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test]
async fn healthz_answers_within_a_second_with_2000_idle_sockets_open() {
    gateway::serve::raise_fd_limit();
    let gw = start(GatewayConfig {
        max_connections_per_ip: 5_000,
        ..support::config()
    })
    .await;
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(1), healthz(gw.addr))
        .await
        .expect("/healthz answered within 1 s")
        .unwrap();
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(idle);
    gw.stop().await;
}

#[tokio::test]
async fn the_per_ip_cap_closes_the_next_connection_and_serves_the_open_ones() {
    let gw = start(GatewayConfig {
        max_connections_per_ip: 3,
        ..support::config()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let mut refused = TcpStream::connect(gw.addr).await.unwrap();
    assert!(
        closed_within(&mut refused, Duration::from_secs(2))
            .await
            .is_some(),
        "the 4th connection from one IP is closed at once"
    );
    // The three admitted ones are still served.
    let first = &mut open[0];
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    first.read_to_end(&mut out).await.unwrap();
    assert_eq!(status_of(&out), 200);
    // Its place is free again once it has closed.
    drop(open.remove(0));
    let mut status = 0;
    for _ in 0..50 {
        status = healthz(gw.addr).await.unwrap_or(0);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    // The refusal is counted.
    let metrics = gw_metrics(gw.addr, &mut open).await;
    assert!(
        metrics.contains("gateway_connections_refused_total{reason=\"max_connections_per_ip\"}"),
        "{metrics}"
    );
    gw.stop().await;
}

/// `/metrics` over a connection already admitted (the cap is full).
async fn gw_metrics(_addr: SocketAddr, open: &mut [TcpStream]) -> String {
    let tcp = &mut open[0];
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_process_cap_closes_connections_beyond_it() {
    let gw = start(GatewayConfig {
        max_connections: 2,
        ..support::config()
    })
    .await;
    let _a = TcpStream::connect(gw.addr).await.unwrap();
    let _b = TcpStream::connect(gw.addr).await.unwrap();
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(2)).await.is_some());
    gw.stop().await;
}

#[tokio::test]
async fn silent_slow_header_and_idle_keep_alive_connections_are_closed_after_the_timeout() {
    let gw = start(GatewayConfig {
        header_read_timeout: Duration::from_secs(1),
        ..support::config()
    })
    .await;
    // Never sends a byte.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    // Sends half a request line, then stalls (slowloris).
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // One request with keep-alive, then idle.
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&buf[..n]), 200);

    for (name, tcp) in [("silent", &mut silent), ("slow", &mut slow), ("idle", &mut kept)] {
        let after = closed_within(tcp, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("the {name} connection is still open after 5 s"));
        assert!(after <= Duration::from_secs(3), "{name} closed after {after:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let gw = start(support::config()).await;
    // A request whose body is still coming when shutdown starts.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/clicks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = gw.addr;
    let Running { trigger, task, .. } = gw;
    trigger.trigger();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(b"}").await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let status = status_of(&out);
    assert!(
        status >= 400 && status != 0,
        "the in-flight request was answered: {status}"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(25), task).await;
    assert!(stopped.is_ok(), "the gateway stopped after draining");
    assert!(TcpStream::connect(addr).await.is_err() || healthz(addr).await.is_err());
}

/// `/metrics` through the router.
async fn metrics_text(gw: &support::TestGateway) -> String {
    let req = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    gw.send(req).await.text()
}

#[tokio::test]
async fn unmatched_paths_and_unknown_methods_add_no_metrics_series() {
    let gw = support::gateway(support::config()).await;
    let mut tokens = Vec::new();
    for i in 0..100 {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let method = ["GET", "POST", "DELETE", "FOO", "PROPFIND"][i % 5];
        let req = axum::http::Request::builder()
            .method(method)
            .uri(format!("/v1/{token}/x{i}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let reply = gw.send(req).await;
        assert_eq!(reply.status, 404, "{method} /v1/{token}");
        tokens.push(token);
    }
    // Unknown methods on a known path: one series per normalised method, under its route.
    for method in ["BREW", "WHEN", "PATCH"] {
        let req = axum::http::Request::builder()
            .method(method)
            .uri("/healthz")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(gw.send(req).await.status, 405);
    }
    let text = metrics_text(&gw).await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gateway_http_requests_total{"))
        .collect();
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a path became a label: {token}");
    }
    let unmatched = series
        .iter()
        .filter(|l| l.contains("route=\"unmatched\""))
        .count();
    // GET, POST, DELETE and "other" at 404: at most four series for 100 paths.
    assert!(
        unmatched <= 4,
        "{unmatched} unmatched series:\n{}",
        series.join("\n")
    );
    assert!(!text.contains("method=\"FOO\"") && !text.contains("method=\"BREW\""));
    assert!(
        series.iter().any(|l| l.contains("route=\"/healthz\"")
            && l.contains("method=\"other\"")
            && l.contains("status=\"405\"")),
        "{}",
        series.join("\n")
    );
}

#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let gw = support::gateway(support::config()).await;
    let send = |method: &str, uri: &str| {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let reply = gw.send(send("DELETE", "/healthz")).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), "GET, HEAD");
    // An `:action` path lists its own methods, not those of the path it shares in the router.
    let reply = gw.send(send("PUT", "/v1/invitations/abc:cancel")).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), "POST");
    let reply = gw.send(send("PUT", "/v1/invitations/abc")).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), "GET, HEAD");
}
