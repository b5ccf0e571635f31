//! One reading of a certificate, its key and (for the mesh) the CA: parsed, checked and built
//! into the rustls server configuration and tonic client settings every connection uses.
//! Anything unreadable is an error naming its setting; nothing half-loaded is ever served.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::ConfigError;

/// Certificate, key and CA files are small; anything larger is not one of them.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A file setting: the name people configure it by, and the path it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSetting {
    pub name: &'static str,
    pub path: PathBuf,
}

/// Whether a server asks its callers for a certificate from the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClientAuth {
    /// Only callers with a certificate issued by the CA get through the handshake.
    #[default]
    Required,
    /// Any caller may connect; the channel is encrypted and the server authenticated.
    None,
}

/// The files one TLS identity is read from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: FileSetting,
    pub key: FileSetting,
    /// The CA that signs the peers: trusted for servers we call and, with
    /// [`ClientAuth::Required`], the only issuer of callers we accept.
    pub ca: Option<FileSetting>,
    pub client_auth: ClientAuth,
    /// ALPN protocols the server offers (`h2` for gRPC; `h2` and `http/1.1` for HTTPS).
    pub alpn: Vec<Vec<u8>>,
}

impl TlsFiles {
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| f.path.as_path())
    }
}

/// Client side of the mesh: the CA to verify servers by and our own identity to show them.
#[derive(Clone)]
pub struct ClientMaterial {
    pub ca: tonic::transport::Certificate,
    pub identity: tonic::transport::Identity,
}

/// Everything built from one reading of the files.
pub struct Material {
    pub server: Arc<ServerConfig>,
    pub client: Option<ClientMaterial>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Explicitly ring: with more than one provider linked, rustls' process default is
    // ambiguous and its builder would panic.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(setting: &FileSetting) -> Result<Vec<u8>, ConfigError> {
    let bad =
        |problem: String| ConfigError::new(setting.name, format!("{}: {problem}", setting.path.display()));
    let file = std::fs::File::open(&setting.path).map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(bad(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(bytes)
}

fn certs(setting: &FileSetting, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bad =
        |problem: String| ConfigError::new(setting.name, format!("{}: {problem}", setting.path.display()));
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

impl Material {
    pub fn load(files: &TlsFiles) -> Result<Material, ConfigError> {
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let chain = certs(&files.cert, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            ConfigError::new(
                files.key.name,
                format!("{}: not a PEM private key ({e})", files.key.path.display()),
            )
        })?;
        let ca = match &files.ca {
            Some(setting) => {
                let pem = read(setting)?;
                let mut roots = RootCertStore::empty();
                for cert in certs(setting, &pem)? {
                    roots.add(cert).map_err(|e| {
                        ConfigError::new(
                            setting.name,
                            format!("{}: not a usable CA certificate ({e})", setting.path.display()),
                        )
                    })?;
                }
                Some((pem, Arc::new(roots)))
            }
            None => None,
        };

        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new(files.cert.name, e.to_string()))?;
        let builder = match (files.client_auth, &ca) {
            (ClientAuth::Required, Some((_, roots))) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                    .build()
                    .map_err(|e| ConfigError::new(files.ca_name(), e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            (ClientAuth::Required, None) => {
                return Err(ConfigError::new(
                    files.ca_name(),
                    "is required to verify callers' certificates",
                ));
            }
            (ClientAuth::None, _) => builder.with_no_client_auth(),
        };
        // Also checks that the key is the certificate's (a half-replaced pair is refused).
        let mut server = builder.with_single_cert(chain, key).map_err(|e| {
            ConfigError::new(
                files.key.name,
                format!(
                    "{} does not fit {}: {e}",
                    files.key.path.display(),
                    files.cert.path.display()
                ),
            )
        })?;
        server.alpn_protocols = files.alpn.clone();

        let client = ca.map(|(pem, _)| ClientMaterial {
            ca: tonic::transport::Certificate::from_pem(pem),
            identity: tonic::transport::Identity::from_pem(&cert_pem, &key_pem),
        });
        Ok(Material {
            server: Arc::new(server),
            client,
        })
    }
}

impl TlsFiles {
    fn ca_name(&self) -> &'static str {
        self.ca.as_ref().map_or("GRPC_TLS_CA", |c| c.name)
    }
}
