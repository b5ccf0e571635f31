//! Managed Postgres services usually refuse unencrypted connections: a `sslmode=require` URL
//! must connect over TLS. Runs when TEST_DATABASE_URL names a server with ssl on (the CI
//! machine's does); otherwise it says why it did nothing.

use referral_common::db;

#[tokio::test]
async fn a_sslmode_require_url_connects_over_tls() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL not set: nothing to connect to");
        return;
    };
    let plain = sqlx::PgPool::connect(&url)
        .await
        .expect("the test database answers");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&plain)
        .await
        .expect("SHOW ssl");
    if ssl != "on" {
        eprintln!("the test server has ssl off: nothing to check");
        return;
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let schema = db::test_schema("tls");
    let pool = db::connect_postgres(&format!("{url}{sep}sslmode=require"), &schema, 1)
        .await
        .expect("a sslmode=require URL connects");
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("pg_stat_ssl");
    assert!(encrypted, "the connection is not encrypted");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&plain)
        .await
        .expect("drop the schema");
}
