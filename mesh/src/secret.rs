//! The development JWT secret: `JWT_SECRET` when set, else generated once and kept in the
//! data dir (mode 0600) so tokens minted by `referral-mesh token` keep working.

use std::path::Path;

use rand::{Rng, distr::Alphanumeric};
use referral_common::config::Secret;

pub const FILE: &str = "jwt-secret";

pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Secret> {
    if let Ok(s) = std::env::var("JWT_SECRET")
        && !s.is_empty()
    {
        return Ok(Secret::new(s));
    }
    let path = data_dir.join(FILE);
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
    std::fs::write(&path, &fresh)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Secret::new(fresh))
}

/// The secret of an existing data dir (for `token`), without creating one.
pub fn load(data_dir: &Path) -> anyhow::Result<Secret> {
    if let Ok(s) = std::env::var("JWT_SECRET")
        && !s.is_empty()
    {
        return Ok(Secret::new(s));
    }
    let path = data_dir.join(FILE);
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
    if let Ok(s) = std::env::var("CLICK_SIGNING_KEYS")
        && !s.trim().is_empty()
    {
        return Ok(Secret::new(s));
    }
    let path = data_dir.join(CLICK_KEYS_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.trim().is_empty()
    {
        return Ok(Secret::new(existing.trim()));
    }
    std::fs::create_dir_all(data_dir)?;
    let secret: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    let fresh = format!("k1:{secret}");
    std::fs::write(&path, &fresh)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Secret::new(fresh))
}
