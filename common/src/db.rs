//! Storage backends picked by URL scheme: Postgres (one schema per service, its own
//! search_path) or SQLite (one file per service, WAL). Migrations are embedded by each
//! service and run here at start-up (sqlx takes an advisory lock in Postgres), with the
//! tables every service shares ([`SHARED`]: the event-log tables, the audit log, parked
//! events) merged in.

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
    let migrator = with_shared(migrator, Backend::Postgres);
    let table = migrator.table_name.to_string();
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(pool)
        .await?;
    if found.is_some() {
        let applied: Option<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT checksum FROM {table} WHERE version = 1"
        )))
        .fetch_optional(pool)
        .await?;
        if let Some(adopted) = adopted_checksum(&migrator, applied.as_deref(), PRE_SHARED_0001) {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET checksum = $1 WHERE version = 1"
            )))
            .bind(adopted)
            .execute(pool)
            .await?;
        }
    }
    migrator.run(pool).await?;
    Ok(())
}

/// Runs a service's SQLite migrations with the [`SHARED`] tables merged in.
pub async fn migrate_sqlite(pool: &SqlitePool, migrator: &Migrator) -> anyhow::Result<()> {
    migrate_sqlite_adopting(pool, migrator, PRE_SHARED_0001).await
}

async fn migrate_sqlite_adopting(
    pool: &SqlitePool,
    migrator: &Migrator,
    known: &[&str],
) -> anyhow::Result<()> {
    let migrator = with_shared(migrator, Backend::Sqlite);
    let table = migrator.table_name.to_string();
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(&table)
            .fetch_optional(pool)
            .await?;
    if found.is_some() {
        let applied: Option<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT checksum FROM \"{table}\" WHERE version = 1"
        )))
        .fetch_optional(pool)
        .await?;
        if let Some(adopted) = adopted_checksum(&migrator, applied.as_deref(), known) {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE \"{table}\" SET checksum = ?1 WHERE version = 1"
            )))
            .bind(adopted)
            .execute(pool)
            .await?;
        }
    }
    migrator.run(pool).await?;
    Ok(())
}

/// SHA-384 checksums (hex) of every service's `0001` migration as it was before the
/// event-log tables moved out of it into [`SHARED`] (version 0): a database that applied one
/// of these holds exactly what the shorter `0001` plus migration 0 create, so its recorded
/// checksum is adopted instead of refusing to start. Any other checksum still refuses.
pub const PRE_SHARED_0001: &[&str] = &[
    // invite-svc: postgres, sqlite
    "36e1eb98ee38e21b0c1a5908a32de42ee992f34052c86489121c39f1d100f948d8f38c92f32ff0bcccfa1230a6b8c607",
    "5a42613720414a8c4e9a2d7faec41f24ff7ac67e8a80a0590898163997c617aeb0b49be52d0b76679a7ccea4c5c312a8",
    // fraud-svc
    "b12bee463f681957a4c2ab727347a9ecd9494f0d410c3662841eae72f16ea1cabbeb7e80257b975f5550bb706da632a2",
    "08f5d52f04dfdd4b6704aa631568d2016440e83992da5f00c002dddcca6e50145a73fa38229458275f30a4717b629374",
    // incentive-svc
    "a6e34c0bbb6c5bac0f12ed7b8255d7122d92d451caeca61c8a67f07f02f7eeaf772398c0b11d73ac67488524d8420b61",
    "4d8904758d66062df07051b0c7ab016cc090c2ff2cb42c6ea39859bfc4d03dd4f8c29fd35ec24e90ecb6a4d4e2cf0fc9",
    // analytics-svc
    "14d04244be8c1868fcf066cf3871bb79abbd9288761a07e1655955281e38a55af0aaf2f768dd6dedff6d4dc954646c7e",
    "57d8af3fa56c6c86fd622edd18cbfbbaa87caf3e7a9e78480f845da7fb97eee0085fd867e87a56f245dcacb1a2b36fee",
];

/// The checksum to record for version 1 when the applied one is a known pre-move checksum
/// (and differs from the current one); `None` when there is nothing to adopt.
fn adopted_checksum(migrator: &Migrator, applied: Option<&[u8]>, known: &[&str]) -> Option<Vec<u8>> {
    let applied = hex::encode(applied?);
    let current = migrator.iter().find(|m| m.version == 1)?;
    (applied != hex::encode(&current.checksum) && known.contains(&applied.as_str()))
        .then(|| current.checksum.to_vec())
}

/// The tables every service migrates identically, defined once in common: (version,
/// description, Postgres SQL, SQLite SQL). Each service used to carry a byte-for-byte copy
/// as `{version:04}_{description}.sql`; merged in under the same version and description,
/// with the same SQL, a migration keeps the checksum databases already recorded for it.
pub const SHARED: [(i64, &str, &str, &str); 4] = [
    (
        0,
        "event tables",
        include_str!("event_tables/postgres.sql"),
        include_str!("event_tables/sqlite.sql"),
    ),
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
    (
        75,
        "bounded storage",
        crate::retention::POSTGRES_SCHEMA,
        crate::retention::SQLITE_SCHEMA,
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
                // Versions 0 (the event tables) and 75 (bounded storage) were never a
                // service's own copy: no database recorded another checksum for them.
                .filter(|m| !matches!(m.version, 0 | 75))
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

    /// A database whose `0001` was applied before the event tables moved out of it records
    /// a checksum from [`PRE_SHARED_0001`]: it is adopted and the service starts; any other
    /// changed checksum still refuses.
    #[tokio::test]
    async fn a_known_pre_move_checksum_is_adopted_and_no_other() {
        let dir = std::env::temp_dir().join(format!("adopt-{}", uuid::Uuid::now_v7().simple()));
        let pool = connect_sqlite(&format!("sqlite://{}/s.db", dir.display()))
            .await
            .expect("sqlite");
        let service = Migrator {
            migrations: vec![Migration::new(
                1,
                "service".into(),
                MigrationType::Simple,
                SqlStr::from_static("CREATE TABLE things (id TEXT PRIMARY KEY);"),
                false,
            )]
            .into(),
            ignore_missing: false,
            locking: true,
            no_tx: false,
            table_name: "_sqlx_migrations".into(),
            create_schemas: Vec::new().into(),
        };
        let old = "ab".repeat(48);
        migrate_sqlite_adopting(&pool, &service, &[])
            .await
            .expect("fresh");
        let recorded = || async {
            let c: Vec<u8> = sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = 1")
                .fetch_one(&pool)
                .await
                .expect("row");
            hex::encode(c)
        };
        let current = recorded().await;
        let set = |sum: String| {
            let pool = pool.clone();
            async move {
                sqlx::query("UPDATE _sqlx_migrations SET checksum = ?1 WHERE version = 1")
                    .bind(hex::decode(sum).expect("hex"))
                    .execute(&pool)
                    .await
                    .expect("update");
            }
        };
        set(old.clone()).await;
        migrate_sqlite_adopting(&pool, &service, &[old.as_str()])
            .await
            .expect("a known pre-move checksum is adopted");
        assert_eq!(recorded().await, current);
        for table in [
            "outbox",
            "consumer_offsets",
            "processed_events",
            "audit_log",
            "parked_events",
        ] {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1")
                    .bind(table)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
            assert_eq!(n, 1, "{table}");
        }
        set("cd".repeat(48)).await;
        let refused = migrate_sqlite_adopting(&pool, &service, &[old.as_str()]).await;
        assert!(
            refused.is_err(),
            "an unknown change to 0001 still refuses to start"
        );
        pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
