//! SQLite's online backup API (`sqlite3_backup_init/step/finish`) on the raw handles sqlx
//! lends out (`SqliteConnection::lock_handle`). Not a file copy: the pages come through
//! SQLite from the source connection's own read transaction, so the copy is exactly the
//! snapshot that transaction sees, while the services go on writing (WAL: readers never
//! block writers). `VACUUM INTO` would also copy online, but it cannot run inside a
//! transaction, and the backup needs the snapshot the manifest's offsets were read from.

use std::{ffi::CStr, ptr::NonNull, time::Duration};

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

/// Pages copied per step; between steps the task yields, so a large store never holds an
/// executor thread for long.
const PAGES_PER_STEP: i32 = 1024;

/// One `sqlite3_backup` object. SQLite is built thread-safe (serialized), and the object is
/// only ever touched by the task that owns it, with both connections' handles locked.
struct Handle(NonNull<ffi::sqlite3_backup>);
// SAFETY: see above: one owner at a time, SQLITE_THREADSAFE=1.
unsafe impl Send for Handle {}

fn message(db: NonNull<ffi::sqlite3>) -> String {
    // SAFETY: `db` is a live handle locked by the caller; sqlite3_errmsg never returns null
    // and the text lives until the next call on this connection, and is copied here.
    unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

/// Copies `source`'s main database into `dest`'s, page by page, from `source`'s open read
/// transaction (the caller began it and read through it, which fixed the snapshot).
pub async fn copy(source: &mut SqliteConnection, dest: &mut SqliteConnection) -> anyhow::Result<()> {
    let main = c"main";
    let handle = {
        let mut src = source.lock_handle().await?;
        let mut dst = dest.lock_handle().await?;
        let (src, dst) = (src.as_raw_handle(), dst.as_raw_handle());
        // SAFETY: both handles are live and locked out of sqlx's worker threads for this
        // block; the names are NUL-terminated literals.
        let raw =
            unsafe { ffi::sqlite3_backup_init(dst.as_ptr(), main.as_ptr(), src.as_ptr(), main.as_ptr()) };
        match NonNull::new(raw) {
            Some(p) => Handle(p),
            None => anyhow::bail!("sqlite3_backup_init: {}", message(dst)),
        }
    };
    let result = step_to_done(source, dest, &handle).await;
    let finish = {
        let mut dst = dest.lock_handle().await?;
        let _src = source.lock_handle().await?;
        // SAFETY: the object came from sqlite3_backup_init and is finished exactly once here.
        let rc = unsafe { ffi::sqlite3_backup_finish(handle.0.as_ptr()) };
        (rc != ffi::SQLITE_OK).then(|| format!("sqlite3_backup_finish: {}", message(dst.as_raw_handle())))
    };
    result?;
    match finish {
        Some(e) => anyhow::bail!(e),
        None => Ok(()),
    }
}

async fn step_to_done(
    source: &mut SqliteConnection,
    dest: &mut SqliteConnection,
    handle: &Handle,
) -> anyhow::Result<()> {
    let mut busy = 0u32;
    loop {
        let rc = {
            let mut dst = dest.lock_handle().await?;
            let _src = source.lock_handle().await?;
            // SAFETY: a live backup object; both its connections are locked for the step.
            let rc = unsafe { ffi::sqlite3_backup_step(handle.0.as_ptr(), PAGES_PER_STEP) };
            if !matches!(
                rc,
                ffi::SQLITE_OK | ffi::SQLITE_DONE | ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED
            ) {
                anyhow::bail!("sqlite3_backup_step: {}", message(dst.as_raw_handle()));
            }
            rc
        };
        match rc {
            ffi::SQLITE_DONE => return Ok(()),
            ffi::SQLITE_OK => {
                busy = 0;
                tokio::task::yield_now().await;
            }
            // The source is read inside our own transaction and the destination is ours:
            // busy is unexpected, but brief waits are how SQLite asks to be retried.
            _ => {
                busy += 1;
                if busy > 3000 {
                    anyhow::bail!("sqlite3_backup_step: the database stayed busy for 30 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
