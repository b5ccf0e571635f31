//! `referral-mesh restore --from DIR`: checks everything before it writes anything — the
//! manifest's format version, every file's presence and SHA-256, each database's integrity,
//! migrations and consumer offsets against the manifest and this binary — then, holding the
//! target data dir's lock exclusively (no mesh may run on it), stages every file beside its
//! place and renames them in.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
    str::FromStr,
};

use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};

use super::{
    FORMAT_VERSION, MANIFEST_FILE, Manifest, SECRET_FILES, STORES, db_file, digest, entries,
    known_migrations,
    manifest::{self, MAX_MANIFEST_BYTES},
    store_info, sync_dir,
};
use crate::{
    lock::{self, LockError},
    secret,
};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup directory (`--from`).
    pub from: PathBuf,
    /// The data dir to restore into (`--data-dir`).
    pub data_dir: PathBuf,
    /// Replace the stores and secrets of a non-empty data dir (`--force`).
    pub force: bool,
}

/// Why a restore refused; each names the file, store or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{} is not a backup: no {MANIFEST_FILE} ({reason})", .dir.display())]
    NoManifest { dir: PathBuf, reason: String },
    #[error("{MANIFEST_FILE} in {} is unreadable: {reason}", .dir.display())]
    BadManifest { dir: PathBuf, reason: String },
    #[error("the backup's format version is {found}; this referral-mesh ({}) reads format version {FORMAT_VERSION} only", env!("CARGO_PKG_VERSION"))]
    UnknownFormat { found: String },
    #[error("the manifest names {name:?}, which is not a file a backup holds")]
    UnexpectedFile { name: String },
    #[error("the backup lacks {name}: {reason}")]
    MissingFile { name: String, reason: String },
    #[error("{name} was altered or damaged: its SHA-256 is {found}, the manifest says {expected}")]
    Checksum {
        name: String,
        expected: String,
        found: String,
    },
    #[error("{file} has migrations {versions:?} that this referral-mesh ({}) does not know: restore with the newer binary that took the backup ({taken_by})", env!("CARGO_PKG_VERSION"))]
    NewerMigrations {
        file: String,
        versions: Vec<i64>,
        taken_by: String,
    },
    #[error("{file} does not match the manifest: {reason}")]
    Mismatch { file: String, reason: String },
    #[error("the backup is not consistent: {0}")]
    Inconsistent(String),
    #[error(
        "the data dir {} is not empty ({}); restore into an empty or new directory, or pass --force to replace its stores and secrets",
        .dir.display(), .entries.join(", ")
    )]
    TargetNotEmpty { dir: PathBuf, entries: Vec<String> },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("{}: {reason}", .path.display())]
    Io { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |e| RestoreError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads and checks `manifest.json`: bounded in size, the format version first (so a newer
/// format is named as such, not as a parse error), then every field.
fn read_manifest(dir: &Path) -> Result<Manifest, RestoreError> {
    let path = dir.join(MANIFEST_FILE);
    let file = std::fs::File::open(&path).map_err(|e| RestoreError::NoManifest {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| RestoreError::BadManifest {
        dir: dir.to_path_buf(),
        reason,
    };
    let mut text = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(bad(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    match value.get("formatVersion") {
        Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
        Some(v) => return Err(RestoreError::UnknownFormat { found: v.to_string() }),
        None => {
            return Err(RestoreError::UnknownFormat {
                found: "absent".into(),
            });
        }
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// The names a backup may hold: the four databases and the secret files. Nothing else is
/// ever read or written (so no name can point outside the two directories).
fn allowed(name: &str) -> bool {
    STORES.iter().any(|s| db_file(s) == name) || SECRET_FILES.iter().any(|(f, _)| *f == name)
}

fn check_files(from: &Path, manifest: &Manifest) -> Result<(), RestoreError> {
    for name in manifest.files.keys() {
        if !allowed(name) {
            return Err(RestoreError::UnexpectedFile { name: name.clone() });
        }
    }
    for store in STORES {
        let name = db_file(store);
        if !manifest.files.contains_key(&name) || !manifest.stores.contains_key(store) {
            return Err(RestoreError::MissingFile {
                name,
                reason: "the manifest does not list it".into(),
            });
        }
    }
    for (name, info) in &manifest.files {
        let (found, _) = digest(&from.join(name)).map_err(|e| RestoreError::MissingFile {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        if found != info.sha256 {
            return Err(RestoreError::Checksum {
                name: name.clone(),
                expected: info.sha256.clone(),
                found,
            });
        }
    }
    Ok(())
}

/// Opens each backed-up database read-only (nothing written beside it), checks its
/// integrity, and compares what it holds with the manifest and with this binary.
async fn check_databases(from: &Path, manifest: &Manifest) -> Result<(), RestoreError> {
    for store in STORES {
        let file = db_file(store);
        let path = from.join(&file);
        let mismatch = |reason: String| RestoreError::Mismatch {
            file: file.clone(),
            reason,
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| mismatch(e.to_string()))?
            .filename(&path)
            .read_only(true)
            .immutable(true);
        let mut conn = options.connect().await.map_err(|e| mismatch(e.to_string()))?;
        let check: Result<String, _> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&mut conn)
            .await;
        let info = store_info(&mut conn, store, 0).await;
        let _ = conn.close().await;
        match check {
            Ok(ok) if ok == "ok" => {}
            Ok(problem) => return Err(mismatch(format!("damaged database: {problem}"))),
            Err(e) => return Err(mismatch(format!("not a readable database: {e}"))),
        }
        let info = info.map_err(|e| mismatch(format!("not a {store} store: {e}")))?;
        let listed = &manifest.stores[store];
        if info.migrations != listed.migrations
            || info.event_log_head != listed.event_log_head
            || info.consumer_offsets != listed.consumer_offsets
        {
            return Err(mismatch(format!(
                "it holds migrations {:?}, event-log head {} and consumer offsets {:?}; the manifest says {:?}, {} and {:?}",
                info.migrations,
                info.event_log_head,
                info.consumer_offsets,
                listed.migrations,
                listed.event_log_head,
                listed.consumer_offsets
            )));
        }
        let known = known_migrations(store);
        let unknown: Vec<i64> = info
            .migrations
            .iter()
            .copied()
            .filter(|v| !known.contains(v))
            .collect();
        if !unknown.is_empty() {
            return Err(RestoreError::NewerMigrations {
                file,
                versions: unknown,
                taken_by: manifest.referral_mesh_version.clone(),
            });
        }
    }
    manifest::check_consistency(&manifest.stores).map_err(RestoreError::Inconsistent)
}

/// Restores the backup in `opts.from` into `opts.data_dir`; returns its manifest.
pub async fn restore(opts: &RestoreOptions) -> Result<Manifest, RestoreError> {
    let from = opts.from.as_path();
    let manifest = read_manifest(from)?;
    check_files(from, &manifest)?;
    check_databases(from, &manifest).await?;

    let target = opts.data_dir.as_path();
    // Held until every file is in place: no mesh starts on a half-restored dir.
    let _lock = lock::exclusive(target)?;
    let present: Vec<String> = entries(target)
        .map_err(io(target))?
        .into_iter()
        .filter(|n| n != lock::LOCK_FILE)
        .collect();
    if !present.is_empty() && !opts.force {
        return Err(RestoreError::TargetNotEmpty {
            dir: target.to_path_buf(),
            entries: present,
        });
    }

    // Stage every file beside its place (same filesystem), checked as written...
    let staged: BTreeMap<&String, PathBuf> = manifest
        .files
        .keys()
        .map(|name| (name, target.join(format!(".{name}.restoring"))))
        .collect();
    let result = stage(from, &manifest, &staged);
    if let Err(e) = result {
        for path in staged.values() {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    // ...then rename them in. A database's old WAL, SHM or journal would be replayed onto
    // the restored file: they go first.
    for store in STORES {
        for suffix in ["-wal", "-shm", "-journal"] {
            let path = target.join(format!("{}{suffix}", db_file(store)));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }
    for (name, path) in &staged {
        let dest = target.join(name);
        std::fs::rename(path, &dest).map_err(io(&dest))?;
    }
    sync_dir(target).map_err(io(target))?;
    Ok(manifest)
}

fn stage(from: &Path, manifest: &Manifest, staged: &BTreeMap<&String, PathBuf>) -> Result<(), RestoreError> {
    for (name, path) in staged {
        let source = from.join(name);
        // Created 0600 first, so the copy is never readable by others, not even briefly
        // (std::fs::copy would give it the source's mode).
        secret::write_private(path, b"").map_err(|e| RestoreError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut input = std::fs::File::open(&source).map_err(io(&source))?;
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(io(path))?;
            std::io::copy(&mut input, &mut output).map_err(io(path))?;
            output.sync_all().map_err(io(path))?;
        }
        // The bytes read now are the bytes checked before (a file changed meanwhile is
        // refused, not restored).
        let (found, _) = digest(path).map_err(io(path))?;
        let expected = &manifest.files[*name].sha256;
        if &found != expected {
            return Err(RestoreError::Checksum {
                name: (*name).clone(),
                expected: expected.clone(),
                found,
            });
        }
    }
    Ok(())
}
