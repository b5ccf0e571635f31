//! Encrypted in transit (issue #13): the stores reach Postgres with `sslmode=verify-full`
//! and the rate limiter reaches Redis over `rediss://`, both verifying the server's
//! certificate against a CA (`sslrootcert=` in DATABASE_URL; REDIS_CA_FILE), and a wrong
//! CA or a host name the certificate does not carry is refused.
//!
//! Each test starts its own TLS-only server once from the machine's binaries
//! (`referral_tests::tls_backends`); without them it says why and does nothing, unless
//! REQUIRE_TLS_BACKENDS=1.

use std::time::Duration;

use referral_common::{
    db,
    ratelimit::{Policy, RateLimiter},
    redis_client,
};
use referral_mesh::Storage;
use referral_tests::{
    start_with, test_options,
    tls_backends::{Pki, TlsPostgres, TlsRedis, unavailable},
    unique,
};

/// The store's connection: refused, with the error text, or `Ok` with whether
/// `pg_stat_ssl` calls it encrypted.
async fn connect_pg(url: &str) -> Result<bool, String> {
    let schema = db::test_schema("tls");
    let pool = db::connect_postgres(url, &schema, 1)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("pg_stat_ssl");
    pool.close().await;
    Ok(ssl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_full_connects_migrates_and_refuses_the_wrong_ca_or_host() {
    let pki = Pki::new();
    let pg = match TlsPostgres::start(&pki).await {
        Ok(pg) => pg,
        Err(why) => return unavailable("TLS Postgres", &why),
    };

    for host in ["localhost", "127.0.0.1"] {
        assert_eq!(
            connect_pg(&pg.url(host, &pki.ca)).await,
            Ok(true),
            "verify-full to {host} with the right CA connects encrypted"
        );
    }
    let refused = [
        (
            "a CA that did not sign the server's certificate",
            pg.url("localhost", &pki.wrong_ca),
            "UnknownIssuer",
        ),
        (
            "a host name the certificate does not carry",
            pg.url("127.0.0.2", &pki.ca),
            "not valid for name",
        ),
        (
            "verify-full with only the public web roots",
            pg.url_with("localhost", "?sslmode=verify-full"),
            "UnknownIssuer",
        ),
        (
            "no TLS (the server has hostssl lines only)",
            pg.url_with("localhost", "?sslmode=disable"),
            "no encryption",
        ),
    ];
    for (what, url, why) in refused {
        match connect_pg(&url).await {
            Err(e) => assert!(e.contains(why), "{what}: refused for {e}, expected {why:?}"),
            Ok(ssl) => panic!("{what}: {url} must be refused, connected (ssl {ssl})"),
        }
    }

    // The whole mesh on it: every service's store connects with verify-full and migrates,
    // and an invitation goes through the gateway into Postgres.
    let mut options = test_options(vec![], vec![], false);
    options.storage = Storage::Postgres {
        url: pg.url("localhost", &pki.ca),
        schema_suffix: format!("_t{}", uuid::Uuid::now_v7().simple()),
    };
    let app = start_with(options)
        .await
        .unwrap_or_else(|e| panic!("the mesh starts on verify-full Postgres: {e:#}\n{}", pg.log()));
    let ana = unique("ana");
    let token = app.member(&ana, "SUPPLIER");
    let inv = app
        .invite_ok(
            &token,
            referral_tests::invitation(&ana, "LINK", "kim@example.com"),
        )
        .await;
    let (status, read) = app
        .get(
            &token,
            &format!("/v1/invitations/{}", inv["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!((status, &read["id"]), (200, &inv["id"]), "{read}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_the_ca_limits_and_a_wrong_ca_is_refused() {
    let pki = Pki::new();
    let redis = match TlsRedis::start(&pki).await {
        Ok(redis) => redis,
        Err(why) => return unavailable("TLS Redis", &why),
    };

    // The rate limiter on a verified rediss:// connection counts in Redis.
    let client = redis_client::client(&redis.url("localhost"), Some(&pki.ca)).expect("a client");
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("rediss:// with the right CA connects");
    let policy = Policy {
        name: "tls-test",
        limit: 2,
        window: Duration::from_secs(60),
    };
    let limiter = RateLimiter::redis(policy, conn.clone());
    let key = unique("client");
    let allowed: Vec<bool> = [
        limiter.check(&key).await.allowed,
        limiter.check(&key).await.allowed,
        limiter.check(&key).await.allowed,
    ]
    .into();
    assert_eq!(
        allowed,
        [true, true, false],
        "the third request is over the limit"
    );
    let counters: Vec<String> = redis::cmd("KEYS")
        .arg(format!("rl:tls-test:{key}:*"))
        .query_async(&mut conn.clone())
        .await
        .expect("KEYS");
    assert_eq!(counters.len(), 1, "the count lives in the TLS Redis");

    // Refused: a CA that did not sign it, a name its certificate lacks, the web roots only,
    // and plain text on the TLS port.
    let refused = [
        (
            "a wrong CA",
            redis_client::client(&redis.url("localhost"), Some(&pki.wrong_ca)),
            "UnknownIssuer",
        ),
        (
            "a wrong host name",
            redis_client::client(&redis.url("127.0.0.2"), Some(&pki.ca)),
            "not valid for name",
        ),
        (
            "the public web roots only",
            redis_client::client(&redis.url("localhost"), None),
            "UnknownIssuer",
        ),
        (
            "plain text",
            redis_client::client(&format!("redis://localhost:{}", redis.port), None),
            "",
        ),
    ];
    for (what, client, why) in refused {
        let client = client.expect("a client (nothing connects yet)");
        // One attempt (ConnectionManager::new would retry for seconds before giving up).
        let connected =
            tokio::time::timeout(Duration::from_secs(10), client.get_multiplexed_async_connection())
                .await
                .unwrap_or_else(|_| panic!("{what}: neither connected nor refused within 10 s"));
        match connected {
            Err(e) => assert!(
                e.to_string().contains(why),
                "{what}: refused for {e}, expected {why:?}"
            ),
            Ok(_) => panic!("{what} must not connect"),
        }
    }

    // The mesh with REDIS_CA_FILE: the gateway's API limit is counted in the TLS Redis.
    let mut options = test_options(
        vec!["--api-rate-limit-per-minute".into(), "3".into()],
        vec![],
        false,
    );
    options.redis_url = Some(redis.url("localhost"));
    options.redis_ca_file = Some(pki.ca.clone());
    let app = start_with(options).await.expect("the mesh starts on rediss://");
    let ana = unique("ana");
    let token = app.member(&ana, "SUPPLIER");
    let mut statuses = Vec::new();
    let mine = format!("/v1/invitations?referrerId={ana}");
    for _ in 0..5 {
        statuses.push(app.get(&token, &mine).await.0);
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert_eq!(statuses[4], 429, "over 3 a minute is limited: {statuses:?}");
    let gateway_counters: Vec<String> = redis::cmd("KEYS")
        .arg("rl:*")
        .query_async(&mut conn.clone())
        .await
        .expect("KEYS");
    assert!(
        gateway_counters.iter().any(|k| !k.starts_with("rl:tls-test:")),
        "the gateway counts in the TLS Redis: {gateway_counters:?}"
    );
    app.stop().await;
}
