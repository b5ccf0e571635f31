//! `referral-mesh backup` and `referral-mesh restore` for the embedded (SQLite) mesh.
//!
//! A backup is a directory (0700) of the four stores' databases, copied online with SQLite's
//! backup API while the mesh runs, the data dir's secrets the data needs (the PII keys —
//! without them the personal data cannot be read —, the click keys, the JWT secrets), and
//! `manifest.json` (see [`manifest`]). Every file is 0600.
//!
//! Consistency across four separate databases: each store's consumers resume from the
//! offsets recorded in the store itself and drop events they already applied by id, so a
//! consumer copied *behind* its producer simply catches up after a restore. A consumer
//! copied *ahead* of its producer would be wrong (it would skip the events the producer
//! numbers next). So the snapshots are opened consumers first, producers last (analytics,
//! incentive, fraud, invite), and — since invite-svc and fraud-svc read each other's logs,
//! an order alone cannot guarantee it — every consumer's offset is checked against its
//! producer's head inside the snapshots, and the snapshots are taken again until it holds.
//! `restore` checks it again.

pub mod manifest;
mod online;
pub mod restore;

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use sha2::{Digest, Sha256};
use sqlx::{
    ConnectOptions, Connection, SqliteConnection,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode},
};

pub use manifest::{FORMAT_VERSION, MANIFEST_FILE, Manifest};
pub use restore::{RestoreError, RestoreOptions, restore};

use crate::secret;

/// The stores in snapshot order: every consumer before the logs it reads (analytics reads
/// all three, incentive reads invite and fraud, fraud reads invite; invite reads fraud, the
/// one cycle, which the offset check covers).
pub const STORES: [&str; 4] = ["analytics", "incentive", "fraud", "invite"];

/// The secret files of the data dir that the data needs, with the variable that replaces
/// each (a secret taken from the environment has no file to copy).
pub const SECRET_FILES: [(&str, &str); 6] = [
    (secret::PII_KEYS_FILE, "PII_KEYS"),
    (secret::PII_LOOKUP_KEY_FILE, "PII_LOOKUP_KEY"),
    (secret::CLICK_KEYS_FILE, "CLICK_SIGNING_KEYS"),
    (secret::WEB.file, secret::WEB.env),
    (secret::SERVICE.file, secret::SERVICE.env),
    (secret::UNSUBSCRIBE_KEY_FILE, "UNSUBSCRIBE_SIGNING_KEY"),
];

/// How many times the four snapshots are taken before a backup gives up on consistency.
const ATTEMPTS: u32 = 20;

/// The database file of a store, in a data dir and in a backup alike.
pub fn db_file(store: &str) -> String {
    format!("{store}.db")
}

static INVITE_MIGRATIONS: Migrator = sqlx::migrate!("../invite-svc/migrations/sqlite");
static FRAUD_MIGRATIONS: Migrator = sqlx::migrate!("../fraud-svc/migrations/sqlite");
static INCENTIVE_MIGRATIONS: Migrator = sqlx::migrate!("../incentive-svc/migrations/sqlite");
static ANALYTICS_MIGRATIONS: Migrator = sqlx::migrate!("../analytics-svc/migrations/sqlite");

/// The migration versions this binary applies to `store`'s SQLite database (the service's
/// own and the shared ones, as the service merges them at start-up).
pub fn known_migrations(store: &str) -> Vec<i64> {
    let Some(own) = migrator(store) else {
        return Vec::new();
    };
    referral_common::db::with_shared(own, referral_common::config::Backend::Sqlite)
        .iter()
        .map(|m| m.version)
        .collect()
}

/// The service's own SQLite migrations (without the shared ones).
fn migrator(store: &str) -> Option<&'static Migrator> {
    match store {
        "invite" => Some(&INVITE_MIGRATIONS),
        "fraud" => Some(&FRAUD_MIGRATIONS),
        "incentive" => Some(&INCENTIVE_MIGRATIONS),
        "analytics" => Some(&ANALYTICS_MIGRATIONS),
        _ => None,
    }
}

/// What a backup did.
#[derive(Debug)]
pub struct BackupReport {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Secrets with no file in the data dir (taken from the environment): back them up
    /// separately, or the restored personal data cannot be read.
    pub secrets_not_in_files: Vec<(&'static str, &'static str)>,
    /// How many times the snapshots were taken before they were consistent.
    pub attempts: u32,
}

/// SHA-256 (hex) and size of a file, read in chunks.
pub(crate) fn digest(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Flushes a directory's entries (new and renamed files) to disk.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Names in `dir` (empty when it does not exist).
pub(crate) fn entries(dir: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut names = Vec::new();
            for e in rd {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The store's migrations, event-log head and consumer offsets, read through `conn` (inside
/// the snapshot when `conn` is in a transaction).
pub(crate) async fn store_info(
    conn: &mut SqliteConnection,
    store: &str,
    order: u32,
) -> sqlx::Result<manifest::StoreInfo> {
    let migrations: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    let event_log_head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(log_offset), 0) FROM outbox")
        .fetch_one(&mut *conn)
        .await?;
    let offsets: Vec<(String, i64)> =
        sqlx::query_as("SELECT source, last_offset FROM consumer_offsets ORDER BY source")
            .fetch_all(&mut *conn)
            .await?;
    Ok(manifest::StoreInfo {
        file: db_file(store),
        snapshot_order: order,
        migrations,
        event_log_head,
        consumer_offsets: offsets.into_iter().collect(),
    })
}

async fn open_source(path: &Path) -> anyhow::Result<SqliteConnection> {
    if !path.is_file() {
        anyhow::bail!(
            "no database at {}: is this the data dir of a referral-mesh that has run (--data-dir)?",
            path.display()
        );
    }
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    options
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// The four snapshots, opened in [`STORES`] order, each with its manifest entry; `Err(reason)`
/// when a consumer is ahead of its producer (the caller takes them again).
async fn open_snapshots(
    sources: &mut [SqliteConnection],
) -> anyhow::Result<Result<BTreeMap<String, manifest::StoreInfo>, String>> {
    let mut stores = BTreeMap::new();
    for (order, (store, conn)) in STORES.iter().zip(sources.iter_mut()).enumerate() {
        // Deferred: the snapshot is fixed by the first read, which store_info does now.
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
        let info = store_info(conn, store, order as u32)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", db_file(store)))?;
        stores.insert(store.to_string(), info);
    }
    Ok(manifest::check_consistency(&stores).map(|()| stores))
}

async fn end_snapshots(sources: &mut [SqliteConnection]) {
    for conn in sources.iter_mut() {
        // Nothing was written: a failed rollback only means no transaction was open.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
}

/// Copies one store from its open snapshot into a fresh 0600 file at `dest`, then makes the
/// copy a self-contained rollback-journal database (no WAL beside it) and checks it.
async fn copy_store(source: &mut SqliteConnection, dest: &Path) -> anyhow::Result<()> {
    secret::private_file(dest)?;
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(dest)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete);
    let mut out = options.connect().await?;
    online::copy(source, &mut out).await?;
    // The copied header says WAL, as the source is: a backup is one file, the service
    // turns WAL back on when it opens the restored database.
    sqlx::raw_sql("PRAGMA journal_mode = DELETE")
        .execute(&mut out)
        .await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut out)
        .await?;
    out.close().await?;
    anyhow::ensure!(
        check == "ok",
        "the copy {} fails its check: {check}",
        dest.display()
    );
    Ok(())
}

/// Takes an online backup of the mesh data dir `data_dir` into `to` (created; refused when
/// it exists and is not empty).
pub async fn backup(data_dir: &Path, to: &Path) -> anyhow::Result<BackupReport> {
    let existing = entries(to).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", to.display()))?;
    if !existing.is_empty() {
        anyhow::bail!(
            "the backup directory {} is not empty ({}); give a new directory to --to",
            to.display(),
            existing.join(", ")
        );
    }
    let created = !to.exists();
    secret::private_dir(to)?;
    let result = write_backup(data_dir, to).await;
    if result.is_err() {
        // Nothing half-written stays behind to be mistaken for a backup: the directory was
        // new or empty, so everything in it now is this run's.
        if created {
            let _ = std::fs::remove_dir_all(to);
        } else {
            for name in entries(to).unwrap_or_default() {
                let _ = std::fs::remove_file(to.join(name));
            }
        }
    }
    result
}

async fn write_backup(data_dir: &Path, to: &Path) -> anyhow::Result<BackupReport> {
    let mut sources = Vec::with_capacity(STORES.len());
    for store in STORES {
        sources.push(open_source(&data_dir.join(db_file(store))).await?);
    }

    let mut attempts = 0;
    let stores = loop {
        attempts += 1;
        match open_snapshots(&mut sources).await {
            Ok(Ok(stores)) => break stores,
            Ok(Err(reason)) if attempts < ATTEMPTS => {
                tracing::info!(%reason, attempts, "snapshots not consistent yet; taking them again");
                end_snapshots(&mut sources).await;
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempts))).await;
            }
            Ok(Err(reason)) => {
                end_snapshots(&mut sources).await;
                anyhow::bail!("no consistent backup after {attempts} attempts: {reason}");
            }
            Err(e) => {
                end_snapshots(&mut sources).await;
                return Err(e);
            }
        }
    };
    let mut copied = Ok(());
    for (store, conn) in STORES.iter().zip(sources.iter_mut()) {
        copied = copy_store(conn, &to.join(db_file(store)))
            .await
            .map_err(|e| anyhow::anyhow!("backing up {}: {e:#}", db_file(store)));
        if copied.is_err() {
            break;
        }
    }
    end_snapshots(&mut sources).await;
    for conn in sources {
        let _ = conn.close().await;
    }
    copied?;

    let mut secrets_not_in_files = Vec::new();
    for (file, env) in SECRET_FILES {
        match std::fs::read(data_dir.join(file)) {
            Ok(bytes) => secret::write_private(&to.join(file), &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => secrets_not_in_files.push((file, env)),
            Err(e) => anyhow::bail!("cannot read {}: {e}", data_dir.join(file).display()),
        }
    }

    let mut files = BTreeMap::new();
    for name in entries(to)? {
        let path = to.join(&name);
        let (sha256, bytes) =
            digest(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        files.insert(name, manifest::FileInfo { sha256, bytes });
    }
    let expected = STORES.len() + SECRET_FILES.len() - secrets_not_in_files.len();
    anyhow::ensure!(
        files.len() == expected,
        "the backup directory holds unexpected files: {:?}",
        files.keys().collect::<Vec<_>>()
    );
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        referral_mesh_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: chrono::Utc::now(),
        consistency: manifest::CONSISTENCY.to_string(),
        stores,
        files,
    };
    // Written last: a directory without a manifest is visibly not a finished backup.
    secret::write_private(&to.join(MANIFEST_FILE), &serde_json::to_vec_pretty(&manifest)?)?;
    sync_dir(to)?;
    Ok(BackupReport {
        dir: to.to_path_buf(),
        manifest,
        secrets_not_in_files,
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data dir with the four stores migrated as the services migrate them.
    async fn data_dir() -> (PathBuf, BTreeMap<&'static str, sqlx::SqlitePool>) {
        let dir = std::env::temp_dir().join(format!("mesh-backup-{}", uuid::Uuid::now_v7()));
        let mut pools = BTreeMap::new();
        for store in STORES {
            let url = format!("sqlite://{}", dir.join(db_file(store)).display());
            let pool = referral_common::db::connect_sqlite(&url).await.expect("sqlite");
            referral_common::db::migrate_sqlite(&pool, migrator(store).expect("a store"))
                .await
                .expect("migrations");
            pools.insert(store, pool);
        }
        (dir, pools)
    }

    async fn number(pool: &sqlx::SqlitePool, offsets: std::ops::RangeInclusive<i64>) {
        for offset in offsets {
            sqlx::query(
                "INSERT INTO outbox (event_id, event_type, log_offset, payload, created_at) VALUES (?1, 'test', ?2, X'00', '2026-01-01T00:00:00Z')",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(offset)
            .execute(pool)
            .await
            .expect("outbox row");
        }
    }

    async fn consumed(pool: &sqlx::SqlitePool, source: &str, offset: i64) {
        sqlx::query("INSERT INTO consumer_offsets (source, last_offset) VALUES (?1, ?2) ON CONFLICT (source) DO UPDATE SET last_offset = excluded.last_offset")
            .bind(source)
            .bind(offset)
            .execute(pool)
            .await
            .expect("offset");
    }

    /// invite-svc and fraud-svc read each other's logs, so no snapshot order can keep both
    /// behind: the offsets are checked, and the snapshots taken again until they hold.
    #[tokio::test]
    async fn a_consumer_ahead_of_its_producer_is_snapshotted_again_and_refused_if_it_stays() {
        let (dir, pools) = data_dir().await;
        number(&pools["invite"], 1..=3).await;
        // fraud-svc applied invite's event 5, which invite-svc's snapshot would not hold yet.
        consumed(&pools["fraud"], "invite", 5).await;
        let invite = pools["invite"].clone();
        let catching_up = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            number(&invite, 4..=5).await;
        });
        let to = dir.join("backup");
        let report = backup(&dir, &to).await.expect("a consistent backup");
        catching_up.await.expect("numbered");
        assert!(report.attempts > 1, "taken again: {report:?}");
        assert_eq!(report.manifest.stores["invite"].event_log_head, 5);
        assert_eq!(report.manifest.stores["fraud"].consumer_offsets["invite"], 5);

        // One that stays ahead (a damaged store) is never written as a backup.
        consumed(&pools["analytics"], "fraud", 7).await;
        let err = backup(&dir, &dir.join("again")).await.expect_err("refused");
        assert!(
            err.to_string().contains(
                "analytics's consumer of the fraud log is at offset 7, ahead of fraud's event-log head 0"
            ),
            "{err}"
        );
        assert!(!dir.join("again").exists(), "nothing of a refused backup stays");
        for pool in pools.values() {
            pool.close().await;
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
