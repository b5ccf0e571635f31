//! `referral-mesh demo`: a realistic data set loaded through the public JSON API, as an
//! import would be: hundreds of referrers across vendor types, thousands of invitations in
//! all four flows spread over the last 90 days, with the clicks, signups and conversions
//! they led to (backfilled with `occurredAt`, which needs the admin role). Conversions are
//! facts from billing: the loader creates an API key with `conversions:write` as the admin
//! and reports them with it, as a marketplace's billing would.

use std::{path::PathBuf, sync::Arc, time::Duration};

use chrono::{DateTime, Duration as Days, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use referral_common::auth::{JwtKeys, Role};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

#[derive(clap::Args, Clone)]
pub struct DemoArgs {
    /// The running gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// Data dir of the running mesh (for its JWT secret), unless --token is given.
    #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// An admin token to use instead of minting one.
    #[arg(long, env = "MESH_ADMIN_TOKEN")]
    pub token: Option<String>,
    #[arg(long, default_value_t = 200)]
    pub suppliers: usize,
    #[arg(long, default_value_t = 100)]
    pub couples: usize,
    /// Days of history to spread the data over.
    #[arg(long, default_value_t = 90)]
    pub days: i64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const VENDORS: &[&str] = &[
    "PHOTOGRAPHER",
    "VENUE",
    "FLORIST",
    "PLANNER",
    "CATERER",
    "MUSIC",
    "OTHER",
];
const FIRST: &[&str] = &[
    "anna", "ben", "chloe", "dev", "emma", "finn", "grace", "harry", "isla", "jack", "kate", "leo", "maya",
    "noah", "olivia", "priya", "quinn", "ruby", "sam", "tara",
];
const LAST: &[&str] = &[
    "smith", "jones", "patel", "brown", "taylor", "wilson", "evans", "thomas", "khan", "walker", "wright",
    "hughes", "green", "hall", "wood",
];
const ZONES: &[&str] = &[
    "Europe/London",
    "Europe/London",
    "Europe/Dublin",
    "America/New_York",
    "Europe/Paris",
];

struct Referrer {
    id: String,
    kind: &'static str,
    vendor: Option<&'static str>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => JwtKeys::new(&crate::secret::load(&args.data_dir)?).mint(
            "demo-loader",
            Role::Admin,
            None,
            Duration::from_secs(3600),
        ),
    };
    let mut api = Api {
        http: reqwest::Client::new(),
        base: args.gateway.trim_end_matches('/').to_string(),
        token,
        billing: String::new(),
    };
    api.get("/readyz")
        .await
        .map_err(|e| anyhow::anyhow!("the mesh is not reachable at {}: {e}", api.base))?;
    let key = api
        .post(
            &api.token,
            "/v1/api-keys",
            &json!({"name": "demo billing", "scopes": ["conversions:write"]}),
        )
        .await?;
    api.billing = key["key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("POST /v1/api-keys answered no key: {key}"))?
        .to_string();
    let api = Arc::new(api);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let run = Utc::now().format("%m%d%H%M%S").to_string();
    let mut referrers = Vec::new();
    for i in 0..args.suppliers {
        referrers.push(Referrer {
            id: format!("sup-{run}-{i:04}"),
            kind: "SUPPLIER",
            vendor: Some(VENDORS[i % VENDORS.len()]),
        });
    }
    for i in 0..args.couples {
        referrers.push(Referrer {
            id: format!("cpl-{run}-{i:04}"),
            kind: "COUPLE",
            vendor: None,
        });
    }
    let now = Utc::now() - Days::minutes(5);
    let start = now - Days::days(args.days);
    let gate = Arc::new(Semaphore::new(8));
    let mut jobs = Vec::new();
    let totals = Arc::new(std::sync::Mutex::new(Totals::default()));
    for (n, r) in referrers.into_iter().enumerate() {
        let plan = plan_referrer(&r, &mut rng, start, now, &run, n);
        let (api, gate, totals) = (api.clone(), gate.clone(), totals.clone());
        jobs.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let t = load_referrer(&api, &r, plan).await?;
            if let Ok(mut all) = totals.lock() {
                all.add(&t);
            }
            anyhow::Ok(())
        }));
    }
    let count = jobs.len();
    for j in jobs {
        j.await??;
    }
    // A poisoned lock only means a job panicked after counting: its counts still stand.
    let t = totals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    println!(
        "demo loaded: {count} referrers, {} invitations, {} clicks, {} signups ({} attributed), {} conversions",
        t.invitations, t.clicks, t.signups, t.attributed, t.conversions
    );
    Ok(())
}

#[derive(Default, Clone)]
struct Totals {
    invitations: usize,
    clicks: usize,
    signups: usize,
    attributed: usize,
    conversions: usize,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.invitations += o.invitations;
        self.clicks += o.clicks;
        self.signups += o.signups;
        self.attributed += o.attributed;
        self.conversions += o.conversions;
    }
}

/// One invitation and what it will lead to.
struct Planned {
    body: Value,
    at: DateTime<Utc>,
    referee_kind: &'static str,
    click: Option<DateTime<Utc>>,
    signup: Option<(String, DateTime<Utc>)>,
    conversion: Option<(DateTime<Utc>, i64, &'static str, bool)>,
}

fn plan_referrer(
    r: &Referrer,
    rng: &mut StdRng,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    run: &str,
    n: usize,
) -> Vec<Planned> {
    // A few referrers are super-connectors; most invite a handful.
    let count = if rng.random_bool(0.05) {
        rng.random_range(30..60)
    } else {
        rng.random_range(3..14)
    };
    let span = (now - start).num_minutes().max(1);
    (0..count)
        .map(|i| {
            let referee_kind = match (r.kind, rng.random_bool(0.7)) {
                ("SUPPLIER", true) => "COUPLE",
                ("SUPPLIER", false) => "SUPPLIER",
                (_, true) => "SUPPLIER",
                _ => "COUPLE",
            };
            let at = start + Days::minutes(rng.random_range(0..span));
            let (first, last) = (FIRST.choose(rng).unwrap_or(&"alex"), LAST.choose(rng).unwrap_or(&"lee"));
            let email = format!("{first}.{last}.{run}.{n}.{i}@example.com");
            let channel = *["EMAIL", "EMAIL", "EMAIL", "LINK", "QR", "SOCIAL"].choose(rng).unwrap_or(&"EMAIL");
            let body = json!({
                "refereeKind": referee_kind,
                "channel": channel,
                "recipient": {"email": email, "name": format!("{first} {last}"), "timezone": ZONES.choose(rng).unwrap_or(&"Europe/London")},
                "occurredAt": at.to_rfc3339(),
                "utm": {"source": "demo", "medium": channel.to_lowercase(), "campaign": "spring-weddings"},
            });
            let limit = |t: DateTime<Utc>| t.min(now);
            let click = rng.random_bool(0.45).then(|| limit(at + Days::minutes(rng.random_range(5..3 * 24 * 60))));
            let signup = click
                .filter(|_| rng.random_bool(0.5))
                .map(|c| (email.clone(), limit(c + Days::minutes(rng.random_range(2..2 * 24 * 60)))));
            let conversion = signup.as_ref().filter(|_| rng.random_bool(0.4)).map(|(_, s)| {
                let plan = *["STARTER", "PROFESSIONAL", "PROFESSIONAL", "SCALE"].choose(rng).unwrap_or(&"STARTER");
                let amount = match plan {
                    "STARTER" => 1900,
                    "PROFESSIONAL" => 4900,
                    _ => 9900,
                };
                let annual = rng.random_bool(0.3);
                (limit(*s + Days::minutes(rng.random_range(60..14 * 24 * 60))), if annual { amount * 10 } else { amount }, plan, annual)
            });
            Planned { body, at, referee_kind, click, signup, conversion }
        })
        .collect()
}

async fn load_referrer(api: &Api, r: &Referrer, mut plan: Vec<Planned>) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    plan.sort_by_key(|p| p.at);
    let mut code_body = json!({"referrerId": r.id, "referrerKind": r.kind});
    if let Some(v) = r.vendor {
        code_body["vendorType"] = json!(v);
    }
    api.post(&api.token, "/v1/referral-codes", &code_body).await?;
    for chunk in plan.chunks(100) {
        let mut batch = json!({
            "referrerId": r.id,
            "referrerKind": r.kind,
            "invitations": chunk.iter().map(|p| p.body.clone()).collect::<Vec<_>>(),
        });
        if let Some(v) = r.vendor {
            batch["vendorType"] = json!(v);
        }
        let out = api
            .post(&api.token, "/v1/invitations:batchCreate", &batch)
            .await?;
        let results = out["results"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("batchCreate answered without results: {out}"))?;
        for (p, res) in chunk.iter().zip(results) {
            let Some(inv) = res.get("invitation") else {
                continue;
            };
            t.invitations += 1;
            let code = inv["code"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("an invitation without a code: {inv}"))?
                .to_string();
            let mut click_id = None;
            if let Some(at) = p.click {
                let c = api
                    .post(
                        &api.token,
                        "/v1/clicks",
                        &json!({"code": code, "occurredAt": at.to_rfc3339()}),
                    )
                    .await?;
                click_id = c["clickId"].as_str().map(str::to_string);
                t.clicks += 1;
            }
            if let Some((email, at)) = &p.signup {
                let id = inv["id"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("an invitation without an id: {inv}"))?;
                let user = format!("user-{id}");
                let mut body = json!({"userId": user, "userKind": p.referee_kind, "email": email, "occurredAt": at.to_rfc3339()});
                if let Some(c) = &click_id {
                    body["clickId"] = json!(c);
                }
                let a = api.post(&api.token, "/v1/signups", &body).await?;
                t.signups += 1;
                if a["attributed"].as_bool() == Some(true) {
                    t.attributed += 1;
                }
                if let Some((cat, amount, plan, annual)) = p.conversion {
                    api.post(
                        &api.billing,
                        "/v1/conversions",
                        &json!({"userId": user, "value": {"amountMinor": amount.to_string(), "currency": "GBP"}, "plan": plan, "annual": annual, "occurredAt": cat.to_rfc3339()}),
                    )
                    .await?;
                    t.conversions += 1;
                }
            }
        }
    }
    Ok(t)
}

struct Api {
    http: reqwest::Client,
    base: String,
    /// The admin's token: codes, invitations, clicks and signups (backfilled).
    token: String,
    /// The API key billing reports conversions with.
    billing: String,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Self::json(path, r).await
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        for attempt in 0..5 {
            let r = self
                .http
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(body)
                .send()
                .await?;
            if r.status().as_u16() == 429 {
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                continue;
            }
            return Self::json(path, r).await;
        }
        anyhow::bail!("{path}: still rate limited after retries")
    }

    async fn json(path: &str, r: reqwest::Response) -> anyhow::Result<Value> {
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            anyhow::bail!("{path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
