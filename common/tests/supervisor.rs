//! The supervisor: a panicking task comes back, is counted, and readiness follows it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use referral_common::{
    server::{READINESS, shutdown_pair},
    supervisor::{RestartPolicy, Supervisor, watch_readiness},
};
use tonic_health::{
    pb::{HealthCheckRequest, health_check_response::ServingStatus, health_server::Health},
    server::{HealthReporter, HealthService},
};

fn quick() -> RestartPolicy {
    RestartPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        settle: Duration::from_millis(200),
        healthy_after: Duration::from_secs(60),
    }
}

async fn readiness(reporter: &HealthReporter) -> ServingStatus {
    let service = HealthService::from_health_reporter(reporter.clone());
    let r = service
        .check(tonic::Request::new(HealthCheckRequest {
            service: READINESS.into(),
        }))
        .await
        .expect("readiness is registered");
    ServingStatus::try_from(r.into_inner().status).expect("a known status")
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_task_that_panics_comes_back_is_counted_and_readiness_follows_it() {
    let sup = Supervisor::with_policy(quick());
    let (reporter, _server) = tonic_health::server::health_reporter();
    let (trigger, shutdown) = shutdown_pair();
    watch_readiness(
        reporter.clone(),
        vec![sup.clone()],
        Duration::from_millis(300),
        shutdown.clone(),
    )
    .await;
    assert_eq!(readiness(&reporter).await, ServingStatus::Serving);

    // Panics on its first 5 starts (≈ 50+100+200+400+400 ms of backoff, past the 300 ms
    // threshold), then runs until shutdown, counting its healthy laps.
    let starts = Arc::new(AtomicU32::new(0));
    let laps = Arc::new(AtomicU32::new(0));
    let (s, l, stop) = (starts.clone(), laps.clone(), shutdown.clone());
    sup.spawn("test.flaky", move || {
        let (s, l, stop) = (s.clone(), l.clone(), stop.clone());
        async move {
            if s.fetch_add(1, Ordering::SeqCst) < 5 {
                panic!("injected failure");
            }
            loop {
                l.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    _ = stop.clone().wait() => return Ok::<(), String>(()),
                }
            }
        }
    });

    eventually("readiness NOT_SERVING while the task is down", async || {
        readiness(&reporter).await == ServingStatus::NotServing
    })
    .await;
    assert_eq!(
        sup.down_longer_than(Duration::from_millis(300)),
        vec!["test.flaky"]
    );
    eventually("the task running again", async || laps.load(Ordering::SeqCst) > 0).await;
    eventually("readiness SERVING again", async || {
        readiness(&reporter).await == ServingStatus::Serving
    })
    .await;
    assert_eq!(sup.restarts("test.flaky"), 5);
    assert_eq!(starts.load(Ordering::SeqCst), 6);
    let metrics = referral_common::metrics::render();
    assert!(
        metrics.contains("background_task_restarts_total{task=\"test.flaky\"} 5"),
        "{metrics}"
    );

    // Shutdown ends it for good: no restart.
    trigger.trigger();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 6);
    assert_eq!(sup.restarts("test.flaky"), 5);
}

#[tokio::test]
async fn an_error_restarts_the_task_and_ok_ends_it() {
    let sup = Supervisor::with_policy(quick());
    let starts = Arc::new(AtomicU32::new(0));
    let s = starts.clone();
    sup.spawn("test.erring", move || {
        let s = s.clone();
        async move {
            match s.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err("store unreachable"),
                _ => Ok(()),
            }
        }
    });
    eventually("three starts", async || starts.load(Ordering::SeqCst) == 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        starts.load(Ordering::SeqCst),
        3,
        "a task that ended with Ok is not restarted"
    );
    assert!(sup.down_longer_than(Duration::ZERO).is_empty());
}

#[tokio::test]
async fn a_task_that_keeps_dying_stays_down_through_its_restarts() {
    let sup = Supervisor::with_policy(quick());
    let (reporter, _server) = tonic_health::server::health_reporter();
    let (_trigger, shutdown) = shutdown_pair();
    watch_readiness(
        reporter.clone(),
        vec![sup.clone()],
        Duration::from_millis(300),
        shutdown,
    )
    .await;
    sup.spawn("test.dead", || async { Err::<(), _>("always") });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(readiness(&reporter).await, ServingStatus::NotServing);
    assert!(sup.restarts("test.dead") >= 3);
}
