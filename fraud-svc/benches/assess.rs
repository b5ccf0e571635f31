//! AssessSignup latency, in-process, over a store holding a million referrals. A benchmark,
//! not a test: it runs only under `cargo bench` (CI never runs it).
//!
//! ```sh
//! cargo bench -p fraud-svc --bench assess                      # SQLite (the embedded mesh)
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p fraud-svc --bench assess                    # Postgres (a fresh schema)
//! ```
//!
//! Knobs: `BENCH_REFERRALS` (default 1000000), `BENCH_SAMPLES` (default 2000).
//!
//! It seeds `BENCH_REFERRALS` referred signups (100,000 referrers × 10 referees, spread over
//! the last 30 days, with their identities and assessments) with multi-row inserts, starts
//! fraud-svc on a loopback port in this process, and times sequential `AssessSignup` calls
//! (authenticated gRPC round trips, each a full assessment transaction with its outbox
//! event) for new referees of random existing referrers, then the same through the store
//! directly. It prints p50 / p90 / p99 / max.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use fraud_svc::{
    FraudConfig,
    app::assess_subject::{self, SignupQuestion, signup_input},
    domain::Scoring,
    store::{PgStore, SqliteStore, Store},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use referral_common::{
    auth::ServiceKeys, config::Secret, ids::to_ts, outbox::EventLogStore, pii::PiiKeys, server,
};
use referral_proto::fraud::v1::{AssessSignupRequest, fraud_service_client::FraudServiceClient};
use tonic::Request;
use tracing_subscriber::layer::SubscriberExt;

const SECRET: &str = "fraud-bench-secret-0123456789abcdefghij";
const SERVICE_SECRET: &str = "fraud-bench-service-secret-0123456789abcdef";
const REFEREES_PER_REFERRER: usize = 10;
const ROWS_PER_INSERT: usize = 1000;
/// The bench's keys of personal data (the store's and the served config's must agree).
const PII_KEYS: &str = "bench:fraud-bench-pii-key-0123456789abcdef0123";
const PII_LOOKUP_KEY: &str = "fraud-bench-pii-lookup-key-0123456789abcdef";

fn pii() -> PiiKeys {
    PiiKeys::parse(&Secret::new(PII_KEYS), &Secret::new(PII_LOOKUP_KEY)).expect("bench keys")
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: FraudConfig,
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Pool {
    async fn exec(&self, sql: String) -> anyhow::Result<()> {
        match self {
            Pool::Sqlite(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(|_| ())?,
            Pool::Pg(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(|_| ())?,
        }
        Ok(())
    }
}

/// Counts the statements run while `COUNTING` is set (sqlx's `sqlx::query` events), so the
/// timed phases pay nothing for it.
static COUNTING: AtomicBool = AtomicBool::new(false);
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct StatementCounter;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementCounter {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        COUNTING.load(Ordering::Relaxed) && metadata.target().starts_with("sqlx::query")
    }

    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// This process's CPU time so far (user + system, all threads) from /proc/self/stat; None
/// where there is no procfs.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // Linux reports in USER_HZ, 100 on every platform Rust targets.
    Some(Duration::from_millis(ticks * 10))
}

fn ts(t: DateTime<Utc>) -> String {
    // The text sqlx writes for a DateTime<Utc> in SQLite (and a valid timestamptz literal).
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds `n` referred signups with multi-row inserts, one transaction per 50 statements.
async fn seed(pool: &Pool, pii: &PiiKeys, n: usize, now: DateTime<Utc>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(7);
    let window_secs = 30 * 24 * 3600;
    let mut batch = Vec::with_capacity(ROWS_PER_INSERT);
    let mut identities = Vec::with_capacity(ROWS_PER_INSERT);
    let mut assessments = Vec::with_capacity(ROWS_PER_INSERT);
    let mut statements = Vec::new();
    for i in 0..n {
        let referrer = i / REFEREES_PER_REFERRER;
        let at = ts(now - chrono::Duration::seconds(rng.random_range(60..window_secs)));
        let ip = format!(
            "198.{}.{}.{}",
            rng.random_range(0..=255),
            rng.random_range(0..=255),
            rng.random_range(1..=254)
        );
        // As fraud-svc writes them: keyed hashes and the sealed similarity pair.
        let email = format!("person.{i}@example.com");
        let email_key = pii.lookup("email", &email);
        let peer = pii.seal(&serde_json::to_string(&(
            format!("person.{i}"),
            format!("person {i}"),
        ))?);
        let ip_key = pii.lookup("ip", &ip);
        let device_key = pii.lookup("device", &format!("dev{i}"));
        batch.push(format!(
            "('ee{i}', 'ref{referrer}', 's{i}', '{email_key}', '{peer}', '{ip_key}', '{device_key}', '{at}')"
        ));
        identities.push(format!("('ee{i}', 'email', '{email_key}', '{at}')"));
        assessments.push(format!(
            "('seed-a{i}', 'SIGNUP', 's{i}', 'user:ee{i}', 'ref{referrer}', 'ee{i}', 0, 'LOW', 'APPROVE', '[]', '[]', '', NULL, '{at}', '{at}')"
        ));
        if batch.len() == ROWS_PER_INSERT || i + 1 == n {
            statements.push(format!(
                "INSERT INTO referral_facts (referee_id, referrer_id, subject_id, email_key, peer_sealed, ip_key, device_key, occurred_at) VALUES {};",
                batch.join(",")
            ));
            statements.push(format!(
                "INSERT INTO identities (person_id, kind, value, seen_at) VALUES {};",
                identities.join(",")
            ));
            statements.push(format!(
                "INSERT INTO assessments (id, subject_type, subject_id, dedupe_key, referrer_id, referee_id, score, level, action, signals_json, rules_json, cluster_json, case_id, occurred_at, assessed_at) VALUES {};",
                assessments.join(",")
            ));
            batch.clear();
            identities.clear();
            assessments.clear();
        }
        if statements.len() >= 60 || (i + 1 == n && !statements.is_empty()) {
            pool.exec(format!("BEGIN; {} COMMIT;", statements.join("\n")))
                .await?;
            statements.clear();
        }
    }
    match pool {
        Pool::Sqlite(p) => {
            sqlx::raw_sql("ANALYZE").execute(p).await?;
        }
        Pool::Pg(p) => {
            sqlx::raw_sql("ANALYZE").execute(p).await?;
        }
    }
    println!("seeded {n} referrals in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: n={} p50={:.3} ms  p90={:.3} ms  p99={:.3} ms  max={:.3} ms  mean={:.3} ms",
        samples.len(),
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
        ms(mean)
    );
}

fn question(
    rng: &mut StdRng,
    i: usize,
    referrers: usize,
    now: DateTime<Utc>,
) -> (String, String, String, String) {
    let referrer = format!("ref{}", rng.random_range(0..referrers));
    let user = format!("bench-user-{i}-{}", rng.random::<u32>());
    let email = format!(
        "{}.{}@example.com",
        ["olivia", "jack", "amelia", "harry"][i % 4],
        rng.random::<u32>()
    );
    let ip = format!(
        "203.0.{}.{}",
        rng.random_range(0..=255),
        rng.random_range(1..=254)
    );
    let _ = now;
    (referrer, user, email, ip)
}

async fn run<
    S: Store,
    L: EventLogStore
        + referral_common::audit::AuditStore
        + Into<referral_common::parked::ParkedDb>
        + Into<referral_common::retention::RetentionDb>,
>(
    store: S,
    log: L,
    referrals: usize,
    samples: usize,
) -> anyhow::Result<()> {
    let now = referral_common::ids::now();
    let referrers = referrals.div_ceil(REFEREES_PER_REFERRER).max(1);
    let config = Cli::parse_from([
        "fraud-svc",
        "--pii-keys",
        PII_KEYS,
        "--pii-lookup-key",
        PII_LOOKUP_KEY,
        "--jwt-secret",
        SECRET,
        "--service-jwt-secret",
        SERVICE_SECRET,
    ])
    .config;
    let (listener, local) = server::bind("127.0.0.1:0".parse()?).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    let server_store = store.clone();
    tokio::spawn(async move {
        if let Err(e) =
            fraud_svc::serve_with(config, Scoring::default(), server_store, log, listener, shutdown).await
        {
            eprintln!("server: {e:#}");
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = FraudServiceClient::connect(format!("http://{local}")).await?;
    let token = ServiceKeys::new(&Secret::new(SERVICE_SECRET)).mint("bench");
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut rng = StdRng::seed_from_u64(42);

    let mut grpc = Vec::with_capacity(samples);
    let warmup = 200;
    for i in 0..samples + warmup {
        let (referrer, user, email, ip) = question(&mut rng, i, referrers, now);
        let mut req = Request::new(AssessSignupRequest {
            signup_id: format!("s-{user}"),
            user_id: user,
            referrer_id: referrer,
            email,
            name: "Olivia Jones".into(),
            ip,
            device_id: format!("dev-{i}"),
            occurred_at: Some(to_ts(now)),
            ..Default::default()
        });
        req.metadata_mut().insert("authorization", bearer.clone());
        referral_common::auth::forwarded::write_none(req.metadata_mut());
        let started = Instant::now();
        client.assess_signup(req).await?;
        if i >= warmup {
            grpc.push(started.elapsed());
        }
    }
    percentiles("AssessSignup over gRPC (loopback, in-process)", grpc);

    let scoring = Scoring::default();
    // BENCH_PAUSE_MS: idle time between direct calls (isolates the outbox relay's turn).
    let pause = Duration::from_millis(env_usize("BENCH_PAUSE_MS", 0) as u64);
    let mut direct = Vec::with_capacity(samples);
    let cpu_before = process_cpu();
    for i in 0..samples {
        let (referrer, user, email, ip) = question(&mut rng, i + 1_000_000, referrers, now);
        let input = signup_input(SignupQuestion {
            signup_id: format!("s-{user}"),
            user_id: user,
            referrer_id: referrer,
            email,
            name: "olivia jones".into(),
            ip,
            device_id: format!("dev-d{i}"),
            occurred_at: now,
            click_at: None,
        });
        if pause > Duration::ZERO {
            tokio::time::sleep(pause).await;
        }
        let started = Instant::now();
        assess_subject::assess_once(&store, &scoring, input).await?;
        direct.push(started.elapsed());
    }
    let n = direct.len() as u32;
    percentiles("assess_subject::assess_once (no gRPC)", direct);
    if let (Some(a), Some(b)) = (cpu_before, process_cpu()) {
        // The bench process only: on Postgres the server's CPU is not in it.
        println!(
            "bench-process CPU per assess_once: {:.3} ms",
            (b - a).as_secs_f64() * 1000.0 / f64::from(n)
        );
    }

    // Statements per assessment, counted apart from the timed phases and only while an
    // assessment runs: the idle gap between them lets the outbox relay run uncounted.
    let counted = 200;
    for i in 0..counted {
        let (referrer, user, email, ip) = question(&mut rng, i + 2_000_000, referrers, now);
        let input = signup_input(SignupQuestion {
            signup_id: format!("s-{user}"),
            user_id: user,
            referrer_id: referrer,
            email,
            name: "olivia jones".into(),
            ip,
            device_id: format!("dev-c{i}"),
            occurred_at: now,
            click_at: None,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        COUNTING.store(true, Ordering::Relaxed);
        let assessed = assess_subject::assess_once(&store, &scoring, input).await;
        COUNTING.store(false, Ordering::Relaxed);
        assessed?;
    }
    println!(
        "statements per assess_once (incl. BEGIN/COMMIT as sqlx logs them): {:.2}",
        STATEMENTS.load(Ordering::Relaxed) as f64 / counted as f64
    );
    trigger.trigger();
    Ok(())
}

async fn bench() -> anyhow::Result<()> {
    let referrals = env_usize("BENCH_REFERRALS", 1_000_000);
    let samples = env_usize("BENCH_SAMPLES", 2000).max(1);
    let now = referral_common::ids::now();
    match std::env::var("BENCH_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => {
            let schema = referral_common::db::test_schema("fraud_bench");
            println!("backend: Postgres (schema {schema})");
            let store = PgStore::connect(&url, &schema, pii()).await?;
            store.migrate().await?;
            seed(&Pool::Pg(store.pool().clone()), &pii(), referrals, now).await?;
            let result = run(store.clone(), store.pool().clone(), referrals, samples).await;
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(store.pool())
                .await?;
            result
        }
        None => {
            let dir = std::env::temp_dir().join(format!("fraud-bench-{}", uuid::Uuid::now_v7().simple()));
            println!("backend: SQLite ({})", dir.display());
            let store =
                SqliteStore::connect(&format!("sqlite:{}", dir.join("fraud.db").display()), pii()).await?;
            store.migrate().await?;
            seed(&Pool::Sqlite(store.pool().clone()), &pii(), referrals, now).await?;
            let result = run(store.clone(), store.pool().clone(), referrals, samples).await;
            store.pool().close().await;
            let _ = std::fs::remove_dir_all(dir);
            result
        }
    }
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("assess: a benchmark; run it with `cargo bench -p fraud-svc --bench assess`");
        return Ok(());
    }
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(StatementCounter))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
