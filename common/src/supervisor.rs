//! Every background task of a service runs under a [`Supervisor`]: started with a name, a
//! panic or an error is logged with that name, counted
//! (`background_task_restarts_total{task}`, `background_task_up{task}`) and the task is
//! started again after an exponential backoff. A task that ends with `Ok` (shutdown, or its
//! owner is gone) is not restarted. Readiness ([`watch_readiness`]) turns NOT_SERVING while
//! any watched task has been down (crashing or in backoff) longer than
//! `TASK_DOWN_THRESHOLD`, and SERVING again once it runs.
//!
//! Why: a `tokio::spawn`ed loop that panics is gone for ever and nobody notices; the
//! service keeps answering as ready while, say, no invitation is ever sent again.

use std::{
    collections::HashMap,
    fmt::Display,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::FutureExt;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::server::{READINESS, Shutdown};

/// The supervision settings every service takes.
#[derive(clap::Args, Clone, Debug)]
pub struct SupervisionConfig {
    /// A background task down (crashing or waiting to restart) longer than this makes the
    /// service NOT ready.
    #[arg(
        long = "task-down-threshold",
        env = "TASK_DOWN_THRESHOLD",
        default_value = "30s",
        value_parser = crate::config::parse_duration
    )]
    pub task_down_threshold: Duration,
    /// Failures in a row after which a consumer parks an event it cannot apply (see
    /// `GET /v1/parked`) and goes on with the events behind it.
    #[arg(
        long = "consumer-park-after",
        env = "CONSUMER_PARK_AFTER",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub consumer_park_after: u32,
    /// Tests only: a fault the consumers run before applying each event.
    #[arg(skip)]
    pub consumer_fault: crate::consumer::ConsumerFault,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            task_down_threshold: Duration::from_secs(30),
            consumer_park_after: 5,
            consumer_fault: Default::default(),
        }
    }
}

/// How a task is restarted.
#[derive(Clone, Copy, Debug)]
pub struct RestartPolicy {
    /// The first wait after a failure; doubled after each failure in a row.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long an attempt must run before the task counts as up again.
    pub settle: Duration,
    /// An attempt that ran this long was healthy: the next failure starts from
    /// `initial_backoff` again.
    pub healthy_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The wait before the next start, given the one before (`None` after a healthy run).
    pub fn next_backoff(&self, previous: Option<Duration>) -> Duration {
        match previous {
            None => self.initial_backoff,
            Some(d) => d.saturating_mul(2).min(self.max_backoff),
        }
    }
}

#[derive(Debug, Default)]
struct TaskState {
    /// Since when the task has been failing (first failure of the current run of failures).
    down_since: Option<Instant>,
    restarts: u64,
}

/// A set of supervised tasks (one per service, or per store for the tasks it owns).
/// Cheap to clone; every clone is the same set.
#[derive(Clone, Default)]
pub struct Supervisor {
    tasks: Arc<Mutex<HashMap<String, TaskState>>>,
    policy: RestartPolicy,
}

/// What ended one attempt of a task.
enum Ended {
    Done,
    Failed(String),
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_policy(policy: RestartPolicy) -> Self {
        Self {
            tasks: Arc::default(),
            policy,
        }
    }

    /// Starts `start()` under supervision as `name` (e.g. `invite-svc.scheduler`). `start`
    /// makes a fresh future for every attempt; the future ends with `Ok(())` when it should
    /// not run again (shutdown) and with `Err` when it should be restarted, as after a panic.
    pub fn spawn<F, Fut, E>(&self, name: impl Into<String>, mut start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let name = name.into();
        let this = self.clone();
        this.register(&name);
        tokio::spawn(async move {
            let mut backoff: Option<Duration> = None;
            loop {
                let started = Instant::now();
                let attempt = AssertUnwindSafe(start()).catch_unwind();
                tokio::pin!(attempt);
                // Up once the attempt has survived `settle`, not merely started: a task that
                // dies at once stays down through its restarts.
                let outcome = tokio::select! {
                    r = &mut attempt => r,
                    _ = tokio::time::sleep(this.policy.settle) => {
                        this.mark_up(&name);
                        attempt.await
                    }
                };
                let ended = match outcome {
                    Ok(Ok(())) => Ended::Done,
                    Ok(Err(e)) => Ended::Failed(format!("error: {e}")),
                    Err(panic) => Ended::Failed(format!("panic: {}", panic_message(&*panic))),
                };
                let reason = match ended {
                    Ended::Done => {
                        this.mark_finished(&name);
                        tracing::debug!(task = %name, "background task finished");
                        return;
                    }
                    Ended::Failed(reason) => reason,
                };
                if started.elapsed() >= this.policy.healthy_after {
                    backoff = None;
                }
                let wait = this.policy.next_backoff(backoff);
                backoff = Some(wait);
                this.mark_down(&name);
                tracing::error!(task = %name, %reason, restart_in = ?wait, "background task failed; restarting");
                tokio::time::sleep(wait).await;
            }
        });
    }

    fn register(&self, name: &str) {
        // The recorder must exist before the first count, or the count is lost.
        let _ = crate::metrics::handle();
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.entry(name.to_string()).or_default();
        }
        metrics::gauge!("background_task_up", "task" => name.to_string()).set(1.0);
    }

    fn mark_up(&self, name: &str) {
        if let Ok(mut tasks) = self.tasks.lock()
            && let Some(t) = tasks.get_mut(name)
            && t.down_since.take().is_some()
        {
            tracing::info!(task = %name, "background task running again");
        }
        metrics::gauge!("background_task_up", "task" => name.to_string()).set(1.0);
    }

    fn mark_down(&self, name: &str) {
        if let Ok(mut tasks) = self.tasks.lock() {
            let t = tasks.entry(name.to_string()).or_default();
            t.down_since.get_or_insert_with(Instant::now);
            t.restarts += 1;
        }
        metrics::counter!("background_task_restarts_total", "task" => name.to_string()).increment(1);
        metrics::gauge!("background_task_up", "task" => name.to_string()).set(0.0);
    }

    /// A task that ended on purpose is not down (its restart count stays readable).
    fn mark_finished(&self, name: &str) {
        if let Ok(mut tasks) = self.tasks.lock()
            && let Some(t) = tasks.get_mut(name)
        {
            t.down_since = None;
        }
        metrics::gauge!("background_task_up", "task" => name.to_string()).set(0.0);
    }

    /// The tasks down longer than `threshold`, by name.
    pub fn down_longer_than(&self, threshold: Duration) -> Vec<String> {
        let Ok(tasks) = self.tasks.lock() else {
            // A poisoned lock means a panic inside this module: fail closed, not ready.
            return vec!["supervisor".to_string()];
        };
        let mut down: Vec<String> = tasks
            .iter()
            .filter(|(_, t)| t.down_since.is_some_and(|since| since.elapsed() > threshold))
            .map(|(name, _)| name.clone())
            .collect();
        down.sort();
        down
    }

    /// How often `name` has been restarted (0 for an unknown task).
    pub fn restarts(&self, name: &str) -> u64 {
        self.tasks
            .lock()
            .ok()
            .and_then(|t| t.get(name).map(|s| s.restarts))
            .unwrap_or(0)
    }
}

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(not a string)".to_string()
    }
}

/// Sets readiness SERVING now and keeps it in step with `supervisors` until `shutdown`:
/// NOT_SERVING while any of their tasks has been down longer than `threshold`.
pub async fn watch_readiness(
    health: HealthReporter,
    supervisors: Vec<Supervisor>,
    threshold: Duration,
    shutdown: Shutdown,
) {
    health.set_service_status(READINESS, ServingStatus::Serving).await;
    let check_every = (threshold / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut serving = true;
    tokio::spawn(async move {
        loop {
            let down: Vec<String> = supervisors
                .iter()
                .flat_map(|s| s.down_longer_than(threshold))
                .collect();
            let ready = down.is_empty();
            if ready != serving {
                serving = ready;
                if ready {
                    tracing::info!("every background task runs again; ready");
                    health.set_service_status(READINESS, ServingStatus::Serving).await;
                } else {
                    tracing::error!(tasks = ?down, ?threshold, "background tasks down past the threshold; not ready");
                    health
                        .set_service_status(READINESS, ServingStatus::NotServing)
                        .await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(check_every) => {}
                _ = shutdown.clone().wait() => return,
            }
        }
    });
}

/// Runs a loop that ends only on shutdown as a supervised task body.
pub async fn until_shutdown(f: impl Future<Output = ()>) -> Result<(), std::convert::Infallible> {
    f.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_30s() {
        let p = RestartPolicy::default();
        let mut b = None;
        let mut seen = vec![];
        for _ in 0..12 {
            let next = p.next_backoff(b);
            seen.push(next.as_millis());
            b = Some(next);
        }
        assert_eq!(&seen[..4], &[100, 200, 400, 800]);
        assert_eq!(*seen.last().unwrap(), 30_000);
    }
}
