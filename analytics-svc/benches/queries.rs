//! Viral and funnel query latency at 10 million invitations against 100 thousand. A
//! benchmark, not a test: it runs only under `cargo bench` (CI never runs it).
//!
//! ```sh
//! cargo bench -p analytics-svc --bench queries                 # SQLite (the embedded mesh)
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p analytics-svc --bench queries               # Postgres (fresh schemas)
//! ```
//!
//! Knobs: `BENCH_SIZES` (default `100000,10000000` invitations), `BENCH_SAMPLES` (default 500).
//!
//! For each size it simulates a year of invitations (one referrer per 50 invitations a
//! year, each inviting on ~10% of days; 70% suppliers over seven vendor types; every
//! invitation's furthest funnel stage drawn from fixed rates), folds them into the rollup
//! rows the consumer would have left — `daily` per cohort day and dimensions, `active_gaps`
//! per scope, day and gap, and `active_since` per scope, window start and day (from the gap
//! rows through `scope::since_days`, the rule the consumer applies) — and writes those with
//! multi-row inserts into the same tables.
//! (The write-side tables `invitation_facts` and `active_days` are not seeded: no query
//! reads them.) Then it serves analytics-svc on a loopback port in this process and times
//! sequential authenticated `GetViralMetrics` and `GetFunnel` calls over the default window
//! (the last 30 days), printing p50 / p90 / p99 / max, and each size's p99 against the
//! smallest's.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use analytics_svc::{
    AnalyticsConfig,
    domain::{day_of, scope},
    store::{PgStore, SqliteStore, Store, webhooks::WebhookStore},
};
use clap::Parser;
use rand::{Rng, SeedableRng, rngs::StdRng};
use referral_common::{
    auth::{JwtKeys, Role},
    config::Secret,
    server,
};
use referral_proto::analytics::v1::{
    FunnelRequest, MetricsFilter, analytics_service_client::AnalyticsServiceClient,
};
use tonic::Request;

const SECRET: &str = "analytics-bench-secret-0123456789abcdefgh";
const ROWS_PER_INSERT: usize = 1000;
const HISTORY_DAYS: i64 = 365;
const INVITATIONS_PER_REFERRER_YEAR: usize = 50;
const ACTIVE_DAY_PROBABILITY: f64 = 0.1;
const VENDORS: [&str; 7] = [
    "PHOTOGRAPHER",
    "VENUE",
    "FLORIST",
    "PLANNER",
    "CATERER",
    "MUSIC",
    "OTHER",
];
const CHANNELS: [&str; 5] = ["EMAIL", "SMS", "LINK", "QR", "SOCIAL"];
/// Probability an invitation reached at least SENT, DELIVERED, OPENED, CLICKED, SIGNED_UP, CONVERTED.
const REACHED: [f64; 6] = [0.95, 0.80, 0.50, 0.25, 0.08, 0.03];

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: AnalyticsConfig,
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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type DailyKey = (i64, &'static str, &'static str, &'static str, &'static str);

/// The rollup rows a year of `invitations` leaves behind.
struct Rollups {
    daily: HashMap<DailyKey, [i64; 9]>,
    gaps: HashMap<(String, i64, i64), i64>,
    /// (scope, day) -> referrers counted for since_day = day - i, at index i.
    since: HashMap<(String, i64), Vec<i64>>,
    invitations: usize,
}

fn simulate(invitations: usize, today: i64) -> Rollups {
    let mut rng = StdRng::seed_from_u64(11);
    let referrers = (invitations / INVITATIONS_PER_REFERRER_YEAR).max(1);
    let per_active_day =
        invitations as f64 / (referrers as f64 * HISTORY_DAYS as f64 * ACTIVE_DAY_PROBABILITY);
    let mut daily: HashMap<DailyKey, [i64; 9]> = HashMap::new();
    let mut gaps: HashMap<(String, i64, i64), i64> = HashMap::new();
    let mut made = 0usize;
    for r in 0..referrers {
        let supplier = rng.random_bool(0.7);
        let (kind, vendor, flows) = if supplier {
            (
                "SUPPLIER",
                VENDORS[r % VENDORS.len()],
                ["SUPPLIER_TO_COUPLE", "SUPPLIER_TO_SUPPLIER"],
            )
        } else {
            ("COUPLE", "", ["COUPLE_TO_SUPPLIER", "COUPLE_TO_COUPLE"])
        };
        // The previous active day of this referrer in each scope.
        let mut last: HashMap<String, i64> = HashMap::new();
        for day in today - HISTORY_DAYS + 1..=today {
            if !rng.random_bool(ACTIVE_DAY_PROBABILITY) {
                continue;
            }
            let flow = if rng.random_bool(0.8) { flows[0] } else { flows[1] };
            // At least one, on average `per_active_day`.
            let n = 1 + (rng.random::<f64>() * 2.0 * (per_active_day - 1.0).max(0.0)).round() as usize;
            for _ in 0..n {
                let channel = CHANNELS[rng.random_range(0..CHANNELS.len())];
                let row = daily.entry((day, flow, kind, vendor, channel)).or_default();
                row[0] += 1;
                let u: f64 = rng.random();
                for (stage, p) in REACHED.iter().enumerate() {
                    if u < *p {
                        row[1 + stage] += 1;
                    }
                }
                if u < REACHED[4] {
                    row[7] += 1; // signups
                    row[8] += rng.random_range(3_600..20 * 86_400); // cycle seconds
                }
                made += 1;
            }
            for s in scope::scopes_of(flow, kind, vendor) {
                let gap = last.get(&s).map_or(scope::FIRST, |p| day - p);
                *gaps.entry((s.clone(), day, gap)).or_default() += 1;
                last.insert(s, day);
            }
        }
    }
    // Each referrer active on `day` with gap g counts in the active_since rows of the window
    // starts `since_days(day, g)`.
    let mut since: HashMap<(String, i64), Vec<i64>> = HashMap::new();
    for ((s, day, gap), n) in &gaps {
        let row = since
            .entry((s.clone(), *day))
            .or_insert_with(|| vec![0; scope::SINCE_DAYS as usize]);
        for since_day in scope::since_days(*day, *gap) {
            row[(day - since_day) as usize] += n;
        }
    }
    Rollups {
        daily,
        gaps,
        since,
        invitations: made,
    }
}

async fn seed(pool: &Pool, rollups: &Rollups) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut statements = Vec::new();
    let daily: Vec<String> = rollups
        .daily
        .iter()
        .map(|((day, flow, kind, vendor, channel), c)| {
            format!(
                "({day}, '{flow}', '{kind}', '{vendor}', '{channel}', {}, {}, {}, {}, {}, {}, {}, {}, {}, 0, {}, {})",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[6], c[8], c[7]
            )
        })
        .collect();
    for chunk in daily.chunks(ROWS_PER_INSERT) {
        statements.push(format!(
            "INSERT INTO daily (day, flow, referrer_kind, vendor_type, channel, invitations, sent, delivered, opened, clicked, signed_up, converted, signups, conversions, revenue_minor, cycle_seconds, cycle_signups) VALUES {};",
            chunk.join(",")
        ));
    }
    let gaps: Vec<String> = rollups
        .gaps
        .iter()
        .map(|((s, day, gap), n)| format!("('{s}', {day}, {gap}, {n})"))
        .collect();
    for chunk in gaps.chunks(ROWS_PER_INSERT) {
        statements.push(format!(
            "INSERT INTO active_gaps (scope, day, gap, referrers) VALUES {};",
            chunk.join(",")
        ));
    }
    let since: Vec<String> = rollups
        .since
        .iter()
        .flat_map(|((s, day), counts)| {
            counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n != 0)
                .map(move |(i, n)| format!("('{s}', {}, {day}, {n})", day - i as i64))
        })
        .collect();
    for chunk in since.chunks(ROWS_PER_INSERT) {
        statements.push(format!(
            "INSERT INTO active_since (scope, since_day, day, referrers) VALUES {};",
            chunk.join(",")
        ));
    }
    for batch in statements.chunks(50) {
        pool.exec(format!("BEGIN; {} COMMIT;", batch.join("\n"))).await?;
    }
    pool.exec("ANALYZE".into()).await?;
    println!(
        "seeded {} invitations as {} daily rows, {} gap rows and {} active_since rows in {:.1} s",
        rollups.invitations,
        daily.len(),
        gaps.len(),
        since.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn percentiles(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: n={} p50={:.3} ms  p90={:.3} ms  p99={:.3} ms  max={:.3} ms",
        samples.len(),
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
    );
    at(0.99)
}

/// Serves `store` and times both queries; returns their p99s.
async fn time_queries<
    S: Store
        + WebhookStore
        + referral_common::audit::AuditStore
        + Into<referral_common::parked::ParkedDb>
        + Into<referral_common::retention::RetentionDb>,
>(
    store: S,
    label: &str,
    samples: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let config = Cli::parse_from([
        "analytics-svc",
        "--jwt-secret",
        SECRET,
        "--service-jwt-secret",
        "analytics-bench-service-secret-0123456789abcdef",
    ])
    .config;
    let runtime = config.runtime()?;
    let (listener, local) = server::bind("127.0.0.1:0".parse()?).await?;
    let (trigger, shutdown) = server::shutdown_pair();
    let server = tokio::spawn(analytics_svc::serve_with(
        config, runtime, store, listener, shutdown,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = AnalyticsServiceClient::connect(format!("http://{local}")).await?;
    let token =
        JwtKeys::new(&Secret::new(SECRET)).mint("bench", Role::Admin, None, Duration::from_secs(3600));
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let warmup = 50;
    let (mut viral, mut funnel) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..samples + warmup {
        let mut req = Request::new(MetricsFilter::default());
        req.metadata_mut().insert("authorization", bearer.clone());
        let t = Instant::now();
        let v = client.get_viral_metrics(req).await?.into_inner();
        let took = t.elapsed();
        if i == 0 {
            println!(
                "{label} viral: referrers {} invitations {} signups {} K {:.3} loop K {:.3}",
                v.referrers, v.invitations, v.signups, v.k_factor, v.loop_k
            );
        }
        if i >= warmup {
            viral.push(took);
        }
        let mut req = Request::new(FunnelRequest::default());
        req.metadata_mut().insert("authorization", bearer.clone());
        let t = Instant::now();
        let f = client.get_funnel(req).await?.into_inner();
        let took = t.elapsed();
        if i == 0 {
            let counts: Vec<i64> = f.stages.iter().map(|s| s.count).collect();
            println!("{label} funnel: {counts:?} bottleneck {}", f.bottleneck);
        }
        if i >= warmup {
            funnel.push(took);
        }
    }
    let v = percentiles(&format!("{label} GetViralMetrics"), viral);
    let f = percentiles(&format!("{label} GetFunnel"), funnel);
    trigger.trigger();
    let _ = server.await;
    Ok((v, f))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "100000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let samples = env_usize("BENCH_SAMPLES", 500);
    let today = day_of(referral_common::ids::now());
    let pg = std::env::var("BENCH_DATABASE_URL").ok().filter(|u| !u.is_empty());
    let mut p99s = Vec::new();
    for size in sizes {
        let started = Instant::now();
        let rollups = simulate(size, today);
        println!(
            "simulated {size} invitations in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let label = format!("{size} invitations");
        let p = match &pg {
            Some(url) => {
                let schema = referral_common::db::test_schema("analytics_bench");
                let store = PgStore::connect(url, &schema).await?;
                seed(&Pool::Pg(store.pool().clone()), &rollups).await?;
                let p = time_queries(store.clone(), &format!("[Postgres] {label}"), samples).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
                    .execute(store.pool())
                    .await?;
                p
            }
            None => {
                let dir =
                    std::env::temp_dir().join(format!("analytics-bench-{}", uuid::Uuid::now_v7().simple()));
                let store =
                    SqliteStore::connect(&format!("sqlite:{}", dir.join("analytics.db").display())).await?;
                seed(&Pool::Sqlite(store.pool().clone()), &rollups).await?;
                let p = time_queries(store.clone(), &format!("[SQLite] {label}"), samples).await?;
                store.pool().close().await;
                let _ = std::fs::remove_dir_all(dir);
                p
            }
        };
        p99s.push((size, p));
    }
    if let Some((base, (bv, bf))) = p99s.first().copied() {
        for (size, (v, f)) in &p99s[1..] {
            println!(
                "p99 at {size} vs {base} invitations: viral {:.2}x, funnel {:.2}x",
                v.as_secs_f64() / bv.as_secs_f64(),
                f.as_secs_f64() / bf.as_secs_f64()
            );
        }
    }
    Ok(())
}
