//! The development secrets: the web-token secret (`JWT_SECRET`, file `jwt-secret`) and the
//! service-token secret (`SERVICE_JWT_SECRET`, file `service-jwt-secret`), each taken from
//! the environment when set, else generated once and kept in the data dir (mode 0600) so
//! tokens minted by `referral-mesh token` keep working.

use std::path::Path;

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

pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Secret> {
    load_or_create_kind(data_dir, WEB)
}

pub fn load_or_create_kind(data_dir: &Path, kind: Kind) -> anyhow::Result<Secret> {
    if let Some(s) = from_env(kind) {
        return Ok(s);
    }
    let path = data_dir.join(kind.file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let fresh: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    write_private(&path, &fresh)?;
    Ok(Secret::new(fresh))
}

/// Creates the file readable by its owner only from the start (no window with wider
/// permissions), replacing any older one.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The web secret of an existing data dir (for `token`), without creating one.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_secret_is_generated_private_and_kept() {
        let dir = std::env::temp_dir().join(format!("mesh-secret-{}", uuid::Uuid::now_v7()));
        // The environment may set SERVICE_JWT_SECRET; this test is about the file.
        if std::env::var(SERVICE.env).is_ok_and(|v| !v.is_empty()) {
            return;
        }
        let first = load_or_create_kind(&dir, SERVICE).unwrap();
        assert!(first.expose().len() >= 32);
        let again = load_or_create_kind(&dir, SERVICE).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SERVICE.file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
