//! The TLS material in force, reloaded when its files change: a watcher compares the files'
//! modification times and sizes every few seconds and swaps in a new [`Material`] when they
//! differ. New connections use what is current; open ones keep the certificate they were
//! made with. A reload that fails (a file half-written, a key that does not fit) keeps the
//! previous material and is retried when the files change again.

use std::{
    path::Path,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;

use super::material::{ClientMaterial, Material, TlsFiles};
use crate::config::ConfigError;

/// How often the files are looked at: cert-manager renews well before expiry, and a
/// kubelet updates a mounted Secret within about a minute, so seconds are plenty.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

pub struct LiveTls {
    files: TlsFiles,
    current: ArcSwap<Material>,
    /// Bumped on every successful reload, so clients know to redial with the new identity.
    generation: AtomicU64,
}

/// What the watcher compares: each file's modification time and length (a Secret volume
/// swaps a symlink, which `metadata` follows to the new file).
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &TlsFiles) -> Stamp {
    files
        .paths()
        .map(|p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

impl LiveTls {
    /// Loads the files once (an error names the setting) and, inside a Tokio runtime, watches
    /// them every `every` until the last handle is dropped.
    pub fn load(files: TlsFiles, every: Duration) -> Result<Arc<LiveTls>, ConfigError> {
        // The watcher is a task: outside a runtime that is a configuration error, not a panic.
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new(files.cert.name, "TLS must be loaded inside a Tokio runtime"))?;
        let seen = stamp(&files);
        let material = Material::load(&files)?;
        let live = Arc::new(LiveTls {
            files,
            current: ArcSwap::from_pointee(material),
            generation: AtomicU64::new(0),
        });
        runtime.spawn(watch(Arc::downgrade(&live), seen, every));
        Ok(live)
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load().server.clone()
    }

    pub fn client(&self) -> Option<ClientMaterial> {
        self.current.load().client.clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the files again now (the watcher calls this when they change).
    pub fn reload(&self) -> Result<(), ConfigError> {
        let material = Material::load(&self.files)?;
        self.current.store(Arc::new(material));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

async fn watch(live: Weak<LiveTls>, mut seen: Stamp, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(live) = live.upgrade() else { return };
        let now = stamp(&live.files);
        if now == seen {
            continue;
        }
        seen = now;
        match live.reload() {
            Ok(()) => tracing::info!(cert = %live.files.cert.path.display(), "TLS certificate reloaded"),
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous certificate")
            }
        }
    }
}
