//! Storage backends picked by URL scheme: Postgres (one schema per service, its own
//! search_path) or SQLite (one file per service, WAL). Migrations are embedded by each
//! service and run here at start-up (sqlx takes an advisory lock in Postgres), with the
//! tables every service shares ([`SHARED`]: the audit log, parked events) merged in.

use std::{str::FromStr, time::Duration};

use crate::config::Backend;

use sqlx::{
    PgPool, SqlStr, SqlitePool,
    migrate::{Migration, MigrationType, Migrator},
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

/// Runs a service's Postgres migrations with the [`SHARED`] tables merged in.
pub async fn migrate_postgres(pool: &PgPool, migrator: &Migrator) -> anyhow::Result<()> {
    with_shared(migrator, Backend::Postgres).run(pool).await?;
    Ok(())
}

/// Runs a service's SQLite migrations with the [`SHARED`] tables merged in.
pub async fn migrate_sqlite(pool: &SqlitePool, migrator: &Migrator) -> anyhow::Result<()> {
    with_shared(migrator, Backend::Sqlite).run(pool).await?;
    Ok(())
}

/// The tables every service migrates identically, defined once in common: (version,
/// description, Postgres SQL, SQLite SQL). Each service used to carry a byte-for-byte copy
/// as `{version:04}_{description}.sql`; merged in under the same version and description,
/// with the same SQL, a migration keeps the checksum databases already recorded for it.
pub const SHARED: [(i64, &str, &str, &str); 2] = [
    (
        40,
        "audit log",
        crate::audit::POSTGRES_SCHEMA,
        crate::audit::SQLITE_SCHEMA,
    ),
    (
        70,
        "parked events",
        crate::parked::POSTGRES_SCHEMA,
        crate::parked::SQLITE_SCHEMA,
    ),
];

/// `service`'s migrations and the [`SHARED`] ones, in version order (a service's own
/// migration of a shared version wins; none has one).
pub fn with_shared(service: &Migrator, backend: Backend) -> Migrator {
    let mut migrations: Vec<Migration> = service.migrations.to_vec();
    for (version, description, postgres, sqlite) in SHARED {
        if migrations.iter().any(|m| m.version == version) {
            continue;
        }
        let sql = match backend {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        };
        migrations.push(Migration::new(
            version,
            description.into(),
            MigrationType::Simple,
            SqlStr::from_static(sql),
            false,
        ));
    }
    migrations.sort_by_key(|m| m.version);
    Migrator {
        migrations: migrations.into(),
        ignore_missing: service.ignore_missing,
        locking: service.locking,
        no_tx: service.no_tx,
        table_name: service.table_name.clone(),
        create_schemas: service.create_schemas.clone(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksums every existing database recorded for the services' former copies
    /// (`0040_audit_log.sql`, `0070_parked_events.sql`): changing the SQL would refuse to
    /// start on all of them.
    #[test]
    fn shared_migrations_keep_their_checksums() {
        let empty = Migrator {
            migrations: Vec::new().into(),
            ignore_missing: false,
            locking: true,
            no_tx: false,
            table_name: "_sqlx_migrations".into(),
            create_schemas: Vec::new().into(),
        };
        let sums = |backend| -> Vec<(i64, String, String)> {
            with_shared(&empty, backend)
                .iter()
                .map(|m| (m.version, m.description.to_string(), hex::encode(&m.checksum)))
                .collect()
        };
        assert_eq!(
            sums(Backend::Postgres),
            [
                (40, "audit log".to_string(), "7ed7d86d9ae6137a403cf9b009d7b280c5a3917ac5dbcc03f2ee068fffbf04ea504e4f1eccdc73fde4920d91946ef19e".to_string()),
                (70, "parked events".to_string(), "e860542918296b29bedbead7543d1b5fcc8e70fcd1ead32254e0de74356d6ee5b44f982cb01ea1106179ace23ecfea2c".to_string()),
            ]
        );
        assert_eq!(
            sums(Backend::Sqlite),
            [
                (40, "audit log".to_string(), "00f245c771df7cc7690c65c2bc329d2bf7f72ef54380a7a3c056449d9c2efdafae4092354e9a37531b5925b110587e39".to_string()),
                (70, "parked events".to_string(), "0b283170fdce36f3bac6c687387ac7a7509cb581df8a5e4334e0a2395563f29d17b349f04f6203aba8390ed0a6ac3b1a".to_string()),
            ]
        );
    }
}
