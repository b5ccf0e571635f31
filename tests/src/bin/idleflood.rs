//! The idle-socket flood: opens many idle TCP connections to a running gateway, spread over
//! 127.0.0.0/8 source addresses (so the per-IP cap does not refuse them all), then times
//! `GET /healthz` on fresh connections while they are held. Worker processes (8,000 sockets
//! each) hold the sockets, so no open-files limit of this side decides the result.
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
    /// Internal: run as a worker holding this many sockets, from source number `--first`.
    #[arg(long, hide = true)]
    hold: Option<u32>,
    #[arg(long, hide = true, default_value_t = 0)]
    first: u32,
}

/// Sockets per worker process: one process's open-files limit may be as low as 20,000.
const PER_WORKER: u32 = 8_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.gateway.ip().is_loopback(),
        "--gateway must be a loopback address"
    );
    if let Some(hold) = args.hold {
        return worker(&args, hold).await;
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    let mut left = args.sockets;
    let mut first = 0;
    while left > 0 {
        let hold = left.min(PER_WORKER);
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "--gateway",
                &args.gateway.to_string(),
                "--sources",
                &args.sources.to_string(),
            ])
            .args(["--hold", &hold.to_string(), "--first", &first.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        workers.push(child);
        left -= hold;
        first += hold;
    }
    // Each worker prints "opened kept" once its sockets are open and the server has had a
    // second to close what it refuses.
    let (mut opened, mut kept) = (0u64, 0u64);
    for child in &mut workers {
        let out = child.stdout.take().context("worker stdout")?;
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(out), &mut line).await?;
        let mut nums = line.split_whitespace().map(|n| n.parse::<u64>().unwrap_or(0));
        opened += nums.next().unwrap_or(0);
        kept += nums.next().unwrap_or(0);
    }
    let connect_secs = started.elapsed().as_secs_f64();

    let mut times = Vec::with_capacity(args.probes as usize);
    let mut failures = 0u32;
    for _ in 0..args.probes {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), healthz(args.gateway)).await {
            Ok(Ok(200)) => times.push(t.elapsed()),
            _ => failures += 1,
        }
    }
    // With the cap full, new connections are refused until the header-read timeout closes
    // the idle ones: how long until /healthz answers again (the sockets still held).
    let mut recovered = None;
    if failures > 0 {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Ok(200)) = tokio::time::timeout(Duration::from_secs(1), healthz(args.gateway)).await {
                recovered = Some(t.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(workers); // killed on drop: their sockets close
    times.sort();
    let ms = |d: Option<&Duration>| d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1e3));
    println!(
        "sockets opened        {opened} of {} in {connect_secs:.1} s from {} source IPs",
        args.sockets, args.sources
    );
    println!("still open after 1 s  {kept} (the rest closed at once by the server's caps)");
    println!(
        "/healthz              {} of {} answered 200; p50 {} ms, max {} ms",
        times.len(),
        args.probes,
        ms(times.get(times.len() / 2)),
        ms(times.last()),
    );
    if failures > 0 {
        match recovered {
            Some(after) => println!(
                "/healthz              answered again {:.1} s later (idle sockets timed out)",
                after.as_secs_f64()
            ),
            None => println!("/healthz              still refused 30 s later"),
        }
    }
    anyhow::ensure!(
        failures == 0,
        "{failures} /healthz probes failed or took over 5 s"
    );
    Ok(())
}

/// Opens `hold` idle sockets, reports "opened kept", then holds them until stdin closes.
async fn worker(args: &Args, hold: u32) -> anyhow::Result<()> {
    raise_fd_limit(u64::from(hold) + 256)?;
    let mut held = Vec::with_capacity(hold as usize);
    for i in args.first..args.first + hold {
        let n = i % args.sources;
        let source = Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8);
        if let Ok(tcp) = connect_from(source, args.gateway).await {
            held.push(tcp);
        }
    }
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
    println!("{} {kept}", held.len());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 1];
    let _ = stdin.read(&mut buf).await;
    Ok(())
}

/// A worker holds its sockets: the soft (and, where allowed, the hard) limit go up to `need`.
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
