//! Client-side balancing with real gRPC servers on loopback: two instances of a service on
//! 127.0.0.1 and 127.0.0.2, one balanced channel, a resolver the test controls (standing in
//! for a headless Service's DNS answers as pods come and go).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use referral_common::{
    balance::{self, Resolve},
    server::{self, ShutdownTrigger},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// DNS as the test says it is.
#[derive(Clone, Default)]
struct Answers(Arc<Mutex<Vec<SocketAddr>>>);

impl Answers {
    fn set(&self, addrs: &[SocketAddr]) {
        *self.0.lock().unwrap() = addrs.to_vec();
    }
}

impl Resolve for Answers {
    fn resolve(
        &self,
        _host: &str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>> {
        let addrs = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// One instance: the gRPC health service on `ip`, counting the calls it answers.
struct Instance {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    stop: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Instance {
    async fn start(ip: &str) -> Instance {
        let (listener, addr) = server::bind(format!("{ip}:0").parse().unwrap()).await.unwrap();
        let (_reporter, health) = server::health().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = {
            let calls = calls.clone();
            tonic::service::interceptor::InterceptedService::new(health, move |req| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(req)
            })
        };
        let (stop, shutdown) = server::shutdown_pair();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(counted)
                .serve_with_incoming_shutdown(
                    server::incoming(listener, &Default::default()),
                    shutdown.wait(),
                ),
        );
        Instance {
            addr,
            calls,
            stop,
            task,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn call_n(client: &mut HealthClient<tonic::transport::Channel>, n: usize) {
    for i in 0..n {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.check(HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("call {i} timed out"));
        reply.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
    }
}

const REFRESH: Duration = Duration::from_millis(50);

/// Long enough for several re-resolutions.
async fn settle() {
    tokio::time::sleep(REFRESH * 6).await;
}

#[tokio::test]
async fn calls_spread_over_every_resolved_instance_and_follow_dns() {
    let a = Instance::start("127.0.0.1").await;
    let b = Instance::start("127.0.0.2").await;
    let dns = Answers::default();
    dns.set(&[a.addr, b.addr]);
    let channel = balance::balanced("invite-svc", 50051, Arc::new(dns.clone()), REFRESH, |e| e).unwrap();
    let mut client = HealthClient::new(channel);

    // One channel, many calls: both instances answer some (one HTTP/2 connection to one
    // address would send them all to one).
    call_n(&mut client, 60).await;
    assert_eq!(a.calls() + b.calls(), 60);
    assert!(a.calls() > 0 && b.calls() > 0, "a {} b {}", a.calls(), b.calls());

    // Scale up: a third pod appears in DNS and starts taking calls.
    let c = Instance::start("127.0.0.3").await;
    dns.set(&[a.addr, b.addr, c.addr]);
    settle().await;
    call_n(&mut client, 60).await;
    assert!(c.calls() > 0, "the new instance got no calls");

    // A pod terminates the way k8s does it: it leaves DNS (preStop), then stops. Every call
    // keeps succeeding, and none reaches it.
    dns.set(&[a.addr, c.addr]);
    settle().await;
    let b_calls = b.calls.clone();
    b.stop.trigger();
    b.task.await.unwrap().unwrap();
    let (a_before, b_before, c_before) = (a.calls(), b_calls.load(Ordering::SeqCst), c.calls());
    call_n(&mut client, 60).await;
    assert_eq!(
        b_calls.load(Ordering::SeqCst),
        b_before,
        "a removed instance was called"
    );
    assert_eq!(a.calls() - a_before + c.calls() - c_before, 60);
}

#[tokio::test]
async fn a_failed_or_empty_lookup_keeps_the_last_known_instances() {
    let a = Instance::start("127.0.0.1").await;
    let dns = Answers::default();
    dns.set(&[a.addr]);
    let channel = balance::balanced("fraud-svc", 50052, Arc::new(dns.clone()), REFRESH, |e| e).unwrap();
    let mut client = HealthClient::new(channel);
    call_n(&mut client, 5).await;
    // A DNS hiccup must not empty the balancer.
    dns.set(&[]);
    settle().await;
    call_n(&mut client, 5).await;
    assert_eq!(a.calls(), 10);
}

#[tokio::test]
async fn a_name_dns_cannot_resolve_fails_fast_instead_of_waiting() {
    // Nothing listens on this port; DNS (the test's) has no answer, so the channel dials the
    // name itself and the call fails with a connection error within the connect timeout.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let channel = balance::balanced("localhost", unused, Arc::new(Answers::default()), REFRESH, |e| {
        e.connect_timeout(Duration::from_secs(1))
    })
    .unwrap();
    let mut client = HealthClient::new(channel);
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("an unresolvable peer must fail, not hang");
    assert_eq!(reply.unwrap_err().code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn server_channel_balances_host_names_and_dials_ip_literals_directly() {
    let a = Instance::start("127.0.0.1").await;
    // `localhost` and IP literals: a plain channel, as the mesh and the tests use.
    for addr in [
        a.addr.to_string(),
        format!("http://{}", a.addr),
        format!("localhost:{}", a.addr.port()),
    ] {
        let mut client = HealthClient::new(server::channel(&addr, &Default::default()).unwrap());
        call_n(&mut client, 1).await;
    }
    // `dns:///` forces the balancer and the system resolver, which answers an IP literal
    // without a network (a headless Service's name would give one address per pod).
    let mut client = HealthClient::new(
        server::channel(
            &format!("dns:///127.0.0.1:{}", a.addr.port()),
            &Default::default(),
        )
        .unwrap(),
    );
    call_n(&mut client, 3).await;
    assert_eq!(a.calls(), 6);
}
