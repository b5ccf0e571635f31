//! The mesh's private files: the data dir (0700), the development secrets — the web-token
//! secret (`JWT_SECRET`, file `jwt-secret`) and the service-token secret
//! (`SERVICE_JWT_SECRET`, file `service-jwt-secret`), each taken from the environment when
//! set, else generated once and kept in the data dir so tokens minted by `referral-mesh token`
//! keep working — the admin token file and the SQLite files, all 0600. Every secret file is
//! written by [`write_private`], so none can be left readable.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use rand::{Rng, distr::Alphanumeric};
use referral_common::config::Secret;

/// One secret: where it lives in the data dir and which variable overrides it.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub file: &'static str,
    pub env: &'static str,
}

pub const WEB: Kind = Kind {
    file: "jwt-secret",
    env: "JWT_SECRET",
};
pub const SERVICE: Kind = Kind {
    file: "service-jwt-secret",
    env: "SERVICE_JWT_SECRET",
};
/// The web secret's file (kept for callers that name it).
pub const FILE: &str = WEB.file;

fn from_env(kind: Kind) -> Option<Secret> {
    std::env::var(kind.env)
        .ok()
        .filter(|s| !s.is_empty())
        .map(Secret::new)
}
/// The admin token `serve` mints, for the operator to read (never logged).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Only the owner may enter the data dir or read and write the files in it.
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// The process's umask for files it creates from now on (the SQLite WAL and SHM files,
/// mailbox messages, anything a library creates): no access for group and others.
pub fn restrict_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (and its parents) and makes it 0700, tightening an existing one.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data dir {}: {e}", dir.display()))?;
    set_mode(dir, DIR_MODE)
}

/// Writes `contents` to `path` as a 0600 file: created with that mode (never briefly
/// readable by others) and re-moded when it existed with a looser one.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    // The mode given at creation does not apply to a file that already existed.
    set_mode(path, FILE_MODE)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Makes an existing file 0600, or creates it empty with that mode. SQLite creates a
/// database's WAL and SHM files with the database file's mode, so a database created (or
/// tightened) here before it is opened keeps all three private.
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return set_mode(path, FILE_MODE);
    }
    write_private(path, b"")
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| anyhow::anyhow!("cannot set mode {mode:o} on {}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Secret> {
    load_or_create_kind(data_dir, WEB)
}

/// The web secret kept in `data_dir/jwt-secret`, generated when there is none.
pub fn load_or_create_file(data_dir: &Path) -> anyhow::Result<Secret> {
    load_or_create_file_kind(data_dir, WEB)
}

pub fn load_or_create_kind(data_dir: &Path, kind: Kind) -> anyhow::Result<Secret> {
    if let Some(s) = from_env(kind) {
        return Ok(s);
    }
    load_or_create_file_kind(data_dir, kind)
}

fn load_or_create_file_kind(data_dir: &Path, kind: Kind) -> anyhow::Result<Secret> {
    let path = data_dir.join(kind.file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if existing.len() >= 32 {
            // A secret from before files were kept private: tighten it.
            set_mode(&path, FILE_MODE)?;
            return Ok(Secret::new(existing));
        }
    }
    private_dir(data_dir)?;
    let fresh: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    write_private(&path, fresh.as_bytes())?;
    Ok(Secret::new(fresh))
}

/// Writes the admin token to `data_dir/admin-token` (0600); returns the file's path.
pub fn write_admin_token(data_dir: &Path, token: &str) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(path)
}

/// The secret of an existing data dir (for `token`), without creating one.
pub fn load(data_dir: &Path) -> anyhow::Result<Secret> {
    if let Some(s) = from_env(WEB) {
        return Ok(s);
    }
    let path = data_dir.join(WEB.file);
    let s = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "no JWT secret at {} ({e}); start the mesh once with this --data-dir, or set JWT_SECRET",
            path.display()
        )
    })?;
    Ok(Secret::new(s.trim()))
}

/// The click-id signing keys (`CLICK_SIGNING_KEYS` format): the environment's when set, else
/// one key generated once and kept in the data dir beside the JWT secret (mode 0600), so
/// click ids stay valid across restarts and processes sharing the data dir.
pub const CLICK_KEYS_FILE: &str = "click-signing-keys";

pub fn click_keys_load_or_create(data_dir: &Path) -> anyhow::Result<Secret> {
    secret_file_or_env(data_dir, CLICK_KEYS_FILE, "CLICK_SIGNING_KEYS", |s| {
        format!("k1:{s}")
    })
    .map(Secret::new)
}

/// The keys of personal data at rest (`PII_KEYS`, `PII_LOOKUP_KEY`): the environment's when
/// set, else generated once into the data dir (0600) like the click keys, so every service of
/// the mesh, and every restart, reads what the others sealed. Losing these files loses the
/// personal data (not the counts or the ledger): `referral-mesh backup` copies them.
pub const PII_KEYS_FILE: &str = "pii-keys";
pub const PII_LOOKUP_KEY_FILE: &str = "pii-lookup-key";

pub struct PiiSecrets {
    pub keys: String,
    pub lookup: String,
}

pub fn pii_keys_load_or_create(data_dir: &Path) -> anyhow::Result<PiiSecrets> {
    Ok(PiiSecrets {
        keys: secret_file_or_env(data_dir, PII_KEYS_FILE, "PII_KEYS", |s| format!("k1:{s}"))?,
        lookup: secret_file_or_env(data_dir, PII_LOOKUP_KEY_FILE, "PII_LOOKUP_KEY", |s| s)?,
    })
}

/// The key that signs invitation emails' unsubscribe links (`UNSUBSCRIBE_SIGNING_KEY`): the
/// environment's when set, else generated once into the data dir (0600), so links in sent
/// mail keep working across restarts.
pub const UNSUBSCRIBE_KEY_FILE: &str = "unsubscribe-signing-key";

pub fn unsubscribe_key_load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    secret_file_or_env(data_dir, UNSUBSCRIBE_KEY_FILE, "UNSUBSCRIBE_SIGNING_KEY", |s| s)
}

/// `env`'s value when set, else the file's, else a fresh 48-character secret (shaped by
/// `shape`) written to the file.
fn secret_file_or_env(
    data_dir: &Path,
    file: &str,
    env: &str,
    shape: fn(String) -> String,
) -> anyhow::Result<String> {
    if let Ok(s) = std::env::var(env)
        && !s.trim().is_empty()
    {
        return Ok(s.trim().to_string());
    }
    let path = data_dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.trim().is_empty()
    {
        set_mode(&path, FILE_MODE)?;
        return Ok(existing.trim().to_string());
    }
    private_dir(data_dir)?;
    let secret: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    let fresh = shape(secret);
    write_private(&path, fresh.as_bytes())?;
    Ok(fresh)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mesh-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_private_creates_0600_and_tightens_an_existing_file() {
        let dir = scratch();
        let fresh = dir.join("fresh");
        write_private(&fresh, b"s3cret").unwrap();
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(std::fs::read(&fresh).unwrap(), b"s3cret");

        let loose = dir.join("loose");
        std::fs::write(&loose, "old").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&loose, b"new").unwrap();
        assert_eq!(mode(&loose), 0o600);
        assert_eq!(std::fs::read(&loose).unwrap(), b"new");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn private_dir_tightens_an_existing_dir_and_private_file_an_existing_file() {
        let dir = scratch();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let nested = dir.join("a/b");
        private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);

        let db = dir.join("x.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let missing = dir.join("y.db");
        private_file(&missing).unwrap();
        assert_eq!(mode(&missing), 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_generated_jwt_secret_and_admin_token_are_private() {
        let dir = scratch().join("data");
        load_or_create_file(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(FILE)), 0o600);
        let path = write_admin_token(&dir, "tok").unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_service_secret_is_generated_private_and_kept() {
        let dir = scratch().join("data");
        let first = load_or_create_file_kind(&dir, SERVICE).unwrap();
        assert!(first.expose().len() >= 32);
        let again = load_or_create_file_kind(&dir, SERVICE).unwrap();
        assert_eq!(first, again);
        assert_eq!(mode(&dir.join(SERVICE.file)), 0o600);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
