//! One way to start a service, in two halves.
//!
//! - [`Service`] is a binary's `main`: configuration from flags and environment (the
//!   service's `Config`, one clap struct), telemetry, the `serve` (default) and `migrate`
//!   subcommands plus any of the service's own, every setting checked before anything
//!   starts, the listener bound first (its setting named when it cannot be), the
//!   Prometheus `/metrics` port when set, and SIGTERM / Ctrl-C turned into a graceful drain.
//!   A service's `main.rs` is `Service::<Config>::new().main()`.
//! - [`GrpcServer`] is the gRPC port a service's `serve` builds: health (liveness, and
//!   `readiness` SERVING once started and while every supervised background task runs),
//!   the plaintext health port for probes, reflection over exactly the services added,
//!   per-method metrics, the auth interceptor on every service added, and the drain.
//!
//! `serve(config, listener, shutdown)` stays a library function, so tests and the mesh bind
//! port 0, learn the port and run several services in one process.

use std::{convert::Infallible, future::Future, pin::Pin, time::Duration};

use tokio::net::TcpListener;
use tonic::{body::Body, server::NamedService, service::interceptor::InterceptedService};

use crate::{
    auth::AuthInterceptor,
    config::{ConfigError, LogFormat, parse_addr},
    server::{self, Shutdown},
    supervisor::{self, Supervisor},
    tls::GrpcTls,
};

/// What [`Service`] needs to know about a service: implemented by its `Config` (the clap
/// struct of its flags and environment).
pub trait ServiceConfig: clap::Args + clap::FromArgMatches + Sized + 'static {
    /// The binary's name, e.g. `invite-svc` (its errors start with it).
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// The setting of the listen address, e.g. `INVITE_LISTEN`.
    const LISTEN: &'static str;
    /// The setting of the Prometheus `/metrics` address, e.g. `INVITE_METRICS_ADDR`.
    const METRICS_ADDR: &'static str;
    /// `migrate`'s line in `--help`.
    const MIGRATE_ABOUT: &'static str = "Run the database migrations and exit.";

    fn log_format(&self) -> LogFormat;
    /// The listen address as configured (`HOST:PORT`).
    fn listen(&self) -> &str;
    /// The `/metrics` address as configured, when the service serves metrics on a port
    /// of its own.
    fn metrics_addr(&self) -> Option<&str>;
    /// Every setting checked up front, so a bad one stops start-up with one line naming it.
    fn check(&self) -> anyhow::Result<()>;
    /// `migrate`: the migrations only (the k8s migration Job).
    fn migrate(&self) -> impl Future<Output = anyhow::Result<()>>;
    /// `serve`: runs on the bound `listener` until `shutdown`, draining in-flight work.
    fn serve(self, listener: TcpListener, shutdown: Shutdown) -> impl Future<Output = anyhow::Result<()>>;
    /// `reencrypt`: seals the service's personal data at rest under PII_KEYS' first key
    /// (after a rotation, or rows from before encryption); `None` for a service that keeps
    /// none (yet). Idempotent and resumable.
    fn reencrypt(&self) -> impl Future<Output = anyhow::Result<Option<crate::pii::ReencryptReport>>> {
        async { Ok(None) }
    }
}

/// A subcommand of one service's binary beyond `serve` and `migrate`.
type Run<C> = fn(C) -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

/// A service binary's `main`, built from its [`ServiceConfig`].
pub struct Service<C: ServiceConfig> {
    commands: Vec<(&'static str, &'static str, Run<C>)>,
}

impl<C: ServiceConfig> Default for Service<C> {
    fn default() -> Self {
        Self { commands: vec![] }
    }
}

impl<C: ServiceConfig> Service<C> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subcommand `name` that runs `run` with the configuration, then exits.
    pub fn command(mut self, name: &'static str, about: &'static str, run: Run<C>) -> Self {
        self.commands.push((name, about, run));
        self
    }

    /// Parses flags and environment, runs the chosen subcommand and exits: 0 once it is
    /// done (for `serve`, drained after SIGTERM or Ctrl-C), 1 with `NAME: error` on stderr.
    pub fn main(self) {
        let mut cli = clap::Command::new(C::NAME)
            .subcommand(clap::Command::new("serve").about("Serve until SIGTERM or Ctrl-C (the default)."))
            .subcommand(clap::Command::new("migrate").about(C::MIGRATE_ABOUT))
            .subcommand(
                clap::Command::new("reencrypt")
                    .about("Seal personal data under the first PII_KEYS key (after a rotation) and exit."),
            );
        for (name, about, _) in &self.commands {
            cli = cli.subcommand(clap::Command::new(*name).about(*about));
        }
        // About after the flags: a flattened struct's doc comment would take its place.
        let matches = C::augment_args(cli)
            .about(C::ABOUT)
            .long_about(None)
            .version(env!("CARGO_PKG_VERSION"))
            .get_matches();
        let config = C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let run = match matches.subcommand_name() {
            None | Some("serve") => None,
            Some("migrate") => Some(Command::Migrate),
            Some("reencrypt") => Some(Command::Reencrypt),
            Some(name) => self
                .commands
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, _, run)| Command::Other(*run)),
        };
        let result = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(run_command(config, run)));
        if let Err(e) = result {
            eprintln!("{}: {e:#}", C::NAME);
            std::process::exit(1);
        }
    }
}

enum Command<C> {
    Migrate,
    Reencrypt,
    Other(Run<C>),
}

async fn run_command<C: ServiceConfig>(config: C, command: Option<Command<C>>) -> anyhow::Result<()> {
    crate::telemetry::init(config.log_format());
    match command {
        Some(Command::Migrate) => return config.migrate().await,
        Some(Command::Reencrypt) => {
            match config.reencrypt().await? {
                Some(report) => println!("{report}"),
                None => println!("{}: keeps no personal data to re-encrypt", C::NAME),
            }
            return Ok(());
        }
        Some(Command::Other(run)) => return run(config).await,
        None => {}
    }
    config.check()?;
    let addr = parse_addr(C::LISTEN, config.listen())?;
    let (listener, _) = server::bind(addr)
        .await
        .map_err(|e| ConfigError::new(C::LISTEN, format!("cannot listen on {addr}: {e}")))?;
    let metrics = match config.metrics_addr() {
        Some(m) => {
            let addr = parse_addr(C::METRICS_ADDR, m)?;
            crate::metrics::handle();
            let (listener, _) = server::bind(addr)
                .await
                .map_err(|e| ConfigError::new(C::METRICS_ADDR, format!("cannot listen on {addr}: {e}")))?;
            Some(listener)
        }
        None => None,
    };
    let (trigger, shutdown) = server::shutdown_pair();
    tokio::spawn(async move {
        server::os_signal().await;
        trigger.trigger();
    });
    if let Some(listener) = metrics {
        let stop = shutdown.clone().wait();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, stop).await {
                tracing::error!(error = %e, "the /metrics port stopped");
            }
        });
    }
    config.serve(listener, shutdown).await
}

/// A service's gRPC port under construction: see the module documentation.
pub struct GrpcServer {
    name: &'static str,
    health: tonic_health::server::HealthReporter,
    interceptor: AuthInterceptor,
    routes: tonic::service::RoutesBuilder,
    /// The services added, as reflection lists them.
    names: Vec<&'static str>,
    tasks: Supervisor,
    watched: Vec<Supervisor>,
}

impl GrpcServer {
    /// Health (liveness SERVING now, readiness NOT_SERVING until [`GrpcServer::serve`]),
    /// served in plaintext on `health_listen` too when set (GRPC_HEALTH_LISTEN). Every
    /// service added later is behind `interceptor`.
    pub async fn new(
        name: &'static str,
        interceptor: AuthInterceptor,
        health_listen: Option<&str>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        let (health, health_server) = server::health().await;
        server::serve_health_plaintext(health_listen, health_server.clone(), shutdown.clone()).await?;
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(health_server);
        Ok(Self {
            name,
            health,
            interceptor,
            routes,
            names: vec![],
            tasks: Supervisor::new(),
            watched: vec![],
        })
    }

    /// Adds a service; every call passes the auth interceptor first.
    pub fn add<S>(&mut self, service: S) -> &mut Self
    where
        S: NamedService,
        InterceptedService<S, AuthInterceptor>: tower::Service<
                http::Request<Body>,
                Error = Infallible,
                Response: axum::response::IntoResponse,
                Future: Send + 'static,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
    {
        self.names.push(S::NAME);
        self.routes
            .add_service(InterceptedService::new(service, self.interceptor.clone()));
        self
    }

    /// The supervisor of this service's background tasks (readiness follows it).
    pub fn tasks(&self) -> &Supervisor {
        &self.tasks
    }

    /// Readiness follows `supervisor` too (e.g. the outbox relay's).
    pub fn watch(&mut self, supervisor: Supervisor) -> &mut Self {
        self.watched.push(supervisor);
        self
    }

    /// Turns readiness SERVING (NOT_SERVING again while a background task has been down
    /// longer than `task_down_threshold`) and serves `listener` until `shutdown`, then lets
    /// in-flight calls finish.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        tls: &GrpcTls,
        task_down_threshold: Duration,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let (reflection_v1, reflection_v1alpha) = server::reflection(&self.names)?;
        self.routes
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let mut supervisors = vec![self.tasks];
        supervisors.append(&mut self.watched);
        supervisor::watch_readiness(self.health, supervisors, task_down_threshold, shutdown.clone()).await;
        tracing::info!(addr = %listener.local_addr()?, "{} serving", self.name);
        tonic::transport::Server::builder()
            .layer(crate::metrics::GrpcMetricsLayer)
            .add_routes(self.routes.routes())
            // TCP_NODELAY on accepted connections: without it small answers wait on Nagle's
            // algorithm against the caller's delayed ACK (~40 ms per call on loopback).
            .serve_with_incoming_shutdown(server::incoming(listener, tls), shutdown.wait())
            .await?;
        tracing::info!("{} stopped", self.name);
        Ok(())
    }
}

/// Implements [`ServiceConfig`] for a service's `Config` whose fields `listen`,
/// `metrics_addr` and `log_format` are set by `{SETTINGS}_LISTEN`, `{SETTINGS}_METRICS_ADDR`
/// and `LOG_FORMAT`, with the crate's own `migrate(&config)` and
/// `serve(config, listener, shutdown)`; `check` is the start-up check.
///
/// ```ignore
/// referral_common::service_config! {
///     InviteConfig {
///         name: "invite-svc",
///         about: "referral-mesh invite-svc: codes, invitations, attribution",
///         settings: "INVITE",
///         check: |config| settings_from(config).map(drop),
///     }
/// }
/// ```
#[macro_export]
// `crate::migrate` / `crate::serve` are the calling service's own, on purpose.
#[allow(clippy::crate_in_macro_def)]
macro_rules! service_config {
    ($config:ty {
        name: $name:literal,
        about: $about:literal,
        settings: $settings:literal,
        check: $check:expr
        $(, reencrypt: $reencrypt:path)? $(,)?
    }) => {
        impl $crate::service::ServiceConfig for $config {
            const NAME: &'static str = $name;
            const ABOUT: &'static str = $about;
            const LISTEN: &'static str = concat!($settings, "_LISTEN");
            const METRICS_ADDR: &'static str = concat!($settings, "_METRICS_ADDR");

            fn log_format(&self) -> $crate::config::LogFormat {
                self.log_format
            }
            fn listen(&self) -> &str {
                &self.listen
            }
            fn metrics_addr(&self) -> Option<&str> {
                self.metrics_addr.as_deref()
            }
            fn check(&self) -> anyhow::Result<()> {
                let check: fn(&$config) -> Result<(), _> = $check;
                Ok(check(self)?)
            }
            async fn migrate(&self) -> anyhow::Result<()> {
                crate::migrate(self).await
            }
            async fn serve(
                self,
                listener: tokio::net::TcpListener,
                shutdown: $crate::server::Shutdown,
            ) -> anyhow::Result<()> {
                crate::serve(self, listener, shutdown).await
            }
            $(
                async fn reencrypt(&self) -> anyhow::Result<Option<$crate::pii::ReencryptReport>> {
                    Ok(Some($reencrypt(self).await?))
                }
            )?
        }
    };
}
