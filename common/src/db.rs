//! Storage backends picked by URL scheme: Postgres (one schema per service, its own
//! search_path) or SQLite (one file per service, WAL). Migrations are embedded by each
//! service and run here at start-up (sqlx takes an advisory lock in Postgres).

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// Connects to Postgres with `schema` first on the search_path, creating the schema.
pub async fn connect_postgres(url: &str, schema: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    anyhow::ensure!(
        !schema.is_empty() && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "schema name {schema:?} must be letters, digits and underscores"
    );
    let base = PgConnectOptions::from_str(url)?;
    // Create the schema on a plain connection first: search_path must name an existing one.
    let setup = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(base.clone())
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .execute(&setup)
    .await?;
    setup.close().await;
    let options = base.options([("search_path", schema)]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

/// Opens (creating) a SQLite file in WAL mode with a generous busy timeout.
pub async fn connect_sqlite(url: &str) -> anyhow::Result<SqlitePool> {
    if let Some(path) = url.strip_prefix("sqlite:").map(|p| p.trim_start_matches("//"))
        && let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true);
    Ok(SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?)
}

pub async fn migrate_postgres(pool: &PgPool, migrator: &Migrator) -> anyhow::Result<()> {
    migrator.run(pool).await?;
    Ok(())
}

pub async fn migrate_sqlite(pool: &SqlitePool, migrator: &Migrator) -> anyhow::Result<()> {
    migrator.run(pool).await?;
    Ok(())
}

/// The Postgres URL a store conformance case runs on, or `None` (saying so) when
/// TEST_DATABASE_URL is unset: those cases then run on SQLite only.
pub fn test_database_url(test: &str) -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipping {test}: TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// Drops a test's schema; best effort, since a leftover schema only costs space.
pub async fn drop_test_schema(url: &str, schema: &str) {
    if let Ok(pool) = PgPool::connect(url).await {
        let drop_schema = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop_schema)).execute(&pool).await;
        pool.close().await;
    }
}

/// A fresh schema name for one test (tests on a shared Postgres never see each other).
pub fn test_schema(prefix: &str) -> String {
    format!("{prefix}_t{}", uuid::Uuid::now_v7().simple())
}
