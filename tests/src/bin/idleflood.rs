//! The idle-socket flood: opens many idle TCP connections to a running gateway, spread over
//! 127.0.0.0/8 source addresses (so the per-IP cap does not refuse them all), then times
//! `GET /healthz` on fresh connections while they are held.
//!
//! ```text
//! cargo run --release -p referral-tests --bin idleflood -- --gateway 127.0.0.1:8080 \
//!     [--sockets 20000] [--sources 200] [--probes 20]
//! ```
//!
//! Only loopback addresses are used; every socket is closed when the run ends.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

#[derive(Parser)]
struct Args {
    /// The gateway under test (a loopback address).
    #[arg(long)]
    gateway: SocketAddr,
    /// Idle connections to open (1..=60000).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    sockets: u32,
    /// Distinct source addresses 127.1.x.y to spread them over (1..=60000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    sources: u32,
    /// `/healthz` requests timed while the sockets are held (1..=1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    probes: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.gateway.ip().is_loopback(),
        "--gateway must be a loopback address"
    );
    let need = u64::from(args.sockets) + 256;
    raise_fd_limit(need)?;

    let started = Instant::now();
    let mut held = Vec::with_capacity(args.sockets as usize);
    let mut connect_errors = 0u32;
    for i in 0..args.sockets {
        let n = i % args.sources;
        let source = Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8);
        match connect_from(source, args.gateway).await {
            Ok(tcp) => held.push(tcp),
            Err(_) => connect_errors += 1,
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the server close what it refuses, then count what it kept.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut kept = 0u32;
    for tcp in &held {
        let mut byte = [0u8; 1];
        // Nothing to read yet means open; 0 bytes (end of stream) or a reset means closed.
        if matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            kept += 1;
        }
    }

    let mut times = Vec::with_capacity(args.probes as usize);
    let mut failures = 0u32;
    for _ in 0..args.probes {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), healthz(args.gateway)).await {
            Ok(Ok(200)) => times.push(t.elapsed()),
            _ => failures += 1,
        }
    }
    times.sort();
    let ms = |d: Option<&Duration>| d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1e3));
    println!(
        "sockets opened        {} of {} ({connect_errors} connect errors) in {connect_secs:.1} s from {} source IPs",
        held.len(),
        args.sockets,
        args.sources
    );
    println!("still open after 1 s  {kept} (the rest closed by the server's caps)");
    println!(
        "/healthz              {} of {} answered 200; p50 {} ms, max {} ms",
        times.len(),
        args.probes,
        ms(times.get(times.len() / 2)),
        ms(times.last()),
    );
    drop(held);
    anyhow::ensure!(
        failures == 0,
        "{failures} /healthz probes failed or took over 5 s"
    );
    Ok(())
}

/// This process holds every socket: the soft and, as root, the hard limit go up to `need`.
fn raise_fd_limit(need: u64) -> anyhow::Result<()> {
    let now = getrlimit(Resource::Nofile);
    if now.current.is_none_or(|c| c >= need) {
        return Ok(());
    }
    let maximum = now.maximum.map(|m| m.max(need));
    let wanted = Rlimit {
        current: Some(need),
        maximum,
    };
    if setrlimit(Resource::Nofile, wanted).is_err() {
        let soft = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        setrlimit(Resource::Nofile, soft).context("raising the open-files limit")?;
        eprintln!(
            "open-files limit is {:?}: fewer sockets than asked may open",
            now.maximum
        );
    }
    Ok(())
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

async fn healthz(addr: SocketAddr) -> std::io::Result<u16> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}
