//! Who is using a data dir: every running mesh process holds a *shared* `flock` on
//! `DATA_DIR/mesh.lock` for as long as it runs (several `--parts` processes may share one
//! data dir), and `restore` takes it *exclusively*, without waiting. So a restore refuses a
//! data dir a mesh runs on, and a mesh refuses to start on one being restored. The kernel
//! drops the lock when the holder exits, however it exits: no stale lock files to clean.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use crate::secret;

pub const LOCK_FILE: &str = "mesh.lock";

/// A held lock on a data dir; released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why a data dir's lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is in use by a running referral-mesh (it holds {}); stop it first", .dir.display(), .file.display())]
    InUse { dir: PathBuf, file: PathBuf },
    #[error("a restore is running on {} (it holds {}); start the mesh when it has finished", .dir.display(), .file.display())]
    Restoring { dir: PathBuf, file: PathBuf },
    #[error("cannot lock {}: {reason}", .file.display())]
    Io { file: PathBuf, reason: String },
}

fn open(dir: &Path) -> Result<(File, PathBuf), LockError> {
    let file = dir.join(LOCK_FILE);
    let io = |e: &dyn std::fmt::Display| LockError::Io {
        file: file.clone(),
        reason: e.to_string(),
    };
    secret::private_dir(dir).map_err(|e| io(&e))?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(secret::FILE_MODE);
    }
    let handle = options.open(&file).map_err(|e| io(&e))?;
    Ok((handle, file))
}

#[cfg(unix)]
fn try_lock(handle: &File, exclusive: bool) -> std::io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match flock(handle, op) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
fn try_lock(_handle: &File, _exclusive: bool) -> std::io::Result<bool> {
    Ok(true)
}

/// The lock a running mesh holds (shared: other mesh processes on the same dir may too).
pub fn running(dir: &Path) -> Result<DataDirLock, LockError> {
    take(dir, false, |dir, file| LockError::Restoring { dir, file })
}

/// The lock a restore holds (exclusive): refused while any mesh runs on `dir`.
pub fn exclusive(dir: &Path) -> Result<DataDirLock, LockError> {
    take(dir, true, |dir, file| LockError::InUse { dir, file })
}

fn take(
    dir: &Path,
    exclusive: bool,
    held: fn(PathBuf, PathBuf) -> LockError,
) -> Result<DataDirLock, LockError> {
    let (handle, file) = open(dir)?;
    match try_lock(&handle, exclusive) {
        Ok(true) => Ok(DataDirLock { _file: handle }),
        Ok(false) => Err(held(dir.to_path_buf(), file)),
        Err(e) => Err(LockError::Io {
            file,
            reason: e.to_string(),
        }),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn meshes_share_the_dir_and_a_restore_excludes_them() {
        let dir = std::env::temp_dir().join(format!("mesh-lock-{}", uuid::Uuid::new_v4()));
        let a = running(&dir).unwrap();
        let b = running(&dir).unwrap();
        assert!(matches!(exclusive(&dir), Err(LockError::InUse { .. })));
        drop(a);
        assert!(matches!(exclusive(&dir), Err(LockError::InUse { .. })));
        drop(b);
        let restore = exclusive(&dir).unwrap();
        assert!(matches!(running(&dir), Err(LockError::Restoring { .. })));
        drop(restore);
        running(&dir).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
