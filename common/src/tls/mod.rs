//! Encryption in transit for the mesh's gRPC hops (and the gateway's optional HTTPS).
//!
//! Every binary reads the same settings: `GRPC_TLS_CERT`, `GRPC_TLS_KEY` and `GRPC_TLS_CA`
//! (all three or none), and `GRPC_TLS_CLIENT_AUTH` (`required`, the default, or `none`).
//! Set, a service serves only TLS and dials its peers over TLS, verifying them against the
//! CA under the name it dials them by and showing its own certificate; with client
//! authentication required it accepts only callers with a certificate from that CA. Unset,
//! everything is plaintext as before (the embedded mesh on loopback). The files are watched
//! and reloaded on change, without a restart ([`live`]).

mod accept;
mod live;
mod material;

use std::{path::PathBuf, sync::Arc, time::Duration};

pub use accept::{Conn, accept_tls};
pub use live::{LiveTls, RELOAD_EVERY};
pub use material::{ClientAuth, ClientMaterial, FileSetting, Material, TlsFiles};

use crate::config::ConfigError;

/// ALPN for gRPC: HTTP/2 only (tonic's client insists on it).
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];

/// The gRPC TLS settings every binary flattens into its configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct GrpcTlsArgs {
    /// PEM certificate (chain) this process serves and shows its peers; with GRPC_TLS_KEY
    /// and GRPC_TLS_CA it turns TLS on for every gRPC hop. Reloaded when it changes.
    #[arg(long = "grpc-tls-cert", env = "GRPC_TLS_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM private key of GRPC_TLS_CERT.
    #[arg(long = "grpc-tls-key", env = "GRPC_TLS_KEY")]
    pub key: Option<PathBuf>,
    /// PEM certificate(s) of the mesh's CA: the only issuer trusted for peers.
    #[arg(long = "grpc-tls-ca", env = "GRPC_TLS_CA")]
    pub ca: Option<PathBuf>,
    /// `required`: callers must show a certificate from GRPC_TLS_CA (mutual TLS); `none`:
    /// any caller may connect (still encrypted, the server still verified).
    #[arg(long = "grpc-tls-client-auth", env = "GRPC_TLS_CLIENT_AUTH", value_enum, default_value_t = ClientAuth::Required)]
    pub client_auth: ClientAuth,
    /// How often the files are checked for change (not a setting: tests shorten it).
    #[arg(skip = RELOAD_EVERY)]
    pub reload_every: Duration,
}

impl Default for GrpcTlsArgs {
    fn default() -> Self {
        GrpcTlsArgs {
            cert: None,
            key: None,
            ca: None,
            client_auth: ClientAuth::Required,
            reload_every: RELOAD_EVERY,
        }
    }
}

impl GrpcTlsArgs {
    /// The files to read, or `None` for plaintext; some but not all of the three set is an
    /// error (a half-configured TLS must not quietly run plaintext).
    pub fn files(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let file = |name, p: &Option<PathBuf>| {
            p.as_ref().map(|path| FileSetting {
                name,
                path: path.clone(),
            })
        };
        let cert = file("GRPC_TLS_CERT", &self.cert);
        let key = file("GRPC_TLS_KEY", &self.key);
        let ca = file("GRPC_TLS_CA", &self.ca);
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles {
                cert,
                key,
                ca: Some(ca),
                client_auth: self.client_auth,
                alpn: ALPN_GRPC.iter().map(|p| p.to_vec()).collect(),
            })),
            (cert, key, _) => {
                let missing = if cert.is_none() {
                    "GRPC_TLS_CERT"
                } else if key.is_none() {
                    "GRPC_TLS_KEY"
                } else {
                    "GRPC_TLS_CA"
                };
                Err(ConfigError::new(
                    missing,
                    "must be set with the other GRPC_TLS_ files (all three, or none for plaintext)",
                ))
            }
        }
    }

    /// Reads the files (inside a Tokio runtime: the watcher is a task).
    pub fn load(&self) -> Result<GrpcTls, ConfigError> {
        Ok(GrpcTls(match self.files()? {
            Some(files) => Some(LiveTls::load(files, self.reload_every)?),
            None => None,
        }))
    }
}

/// The gRPC TLS in force for one process: plaintext, or live material.
#[derive(Clone, Default)]
pub struct GrpcTls(Option<Arc<LiveTls>>);

impl GrpcTls {
    pub fn plaintext() -> GrpcTls {
        GrpcTls(None)
    }

    pub fn live(live: Arc<LiveTls>) -> GrpcTls {
        GrpcTls(Some(live))
    }

    pub fn get(&self) -> Option<&Arc<LiveTls>> {
        self.0.as_ref()
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }
}
