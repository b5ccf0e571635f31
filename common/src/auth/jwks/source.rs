//! Where a JWK Set comes from: a file (re-read when it changes) or a URL — https, or plain
//! http to this machine only (a sidecar or a test), since keys fetched in clear over a
//! network could be swapped by anyone on the way. One bounded GET per fetch: a deadline, a
//! size cap, no redirects, status 200 only.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use url::Url;

/// Largest set accepted (providers' are a few KB).
pub const MAX_BYTES: usize = 256 * 1024;
/// Deadline of one fetch, connection and body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(Url),
    File(PathBuf),
}

/// What a file looked like when read last (modification time and length).
pub type Stamp = Option<(SystemTime, u64)>;

impl Source {
    /// `JWT_JWKS_URL`: https, or http to a loopback address; no credentials in it.
    pub fn url(raw: &str) -> Result<Source, String> {
        let url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".into());
        }
        let host = url.host_str().ok_or("must name a host")?;
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => Ok(Source::Url(url)),
            "http" if loopback => Ok(Source::Url(url)),
            "http" => Err("must be https (plain http only to a loopback address)".into()),
            _ => Err("must be an https URL".into()),
        }
    }

    /// The setting this source came from, for messages.
    pub fn setting(&self) -> &'static str {
        match self {
            Source::Url(_) => "JWT_JWKS_URL",
            Source::File(_) => "JWT_JWKS_FILE",
        }
    }

    /// The file's stamp (`None` for a URL, or a file that cannot be looked at).
    pub fn stamp(&self) -> Stamp {
        match self {
            Source::File(path) => std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
            Source::Url(_) => None,
        }
    }

    /// The set's bytes, within [`FETCH_TIMEOUT`] and [`MAX_BYTES`].
    pub async fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Source::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if bytes.len() > MAX_BYTES {
                    return Err(format!("{}: larger than {MAX_BYTES} bytes", path.display()));
                }
                Ok(bytes)
            }
            Source::Url(url) => tokio::time::timeout(FETCH_TIMEOUT, get(url))
                .await
                .map_err(|_| format!("{url}: no answer within {}s", FETCH_TIMEOUT.as_secs()))?
                .map_err(|e| format!("{url}: {e}")),
        }
    }
}

async fn get(url: &Url) -> Result<Vec<u8>, String> {
    let host = url.host_str().ok_or("no host")?;
    let port = url.port_or_known_default().ok_or("no port")?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare_host, port))
        .await
        .map_err(|e| format!("cannot connect ({e})"))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/jwk-set+json, application/json")
        .header(http::header::USER_AGENT, "referral-mesh")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if url.scheme() == "https" {
        let name = rustls_pki_types::ServerName::try_from(bare_host.to_string())
            .map_err(|e| format!("bad host name ({e})"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed ({e})"))?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

/// One request on its own HTTP/1 connection, driven in this task (nothing spawned).
async fn send<IO>(io: IO, request: http::Request<Empty<Bytes>>) -> Result<Vec<u8>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let response = async move {
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BYTES)
            .collect()
            .await
            .map_err(|e| format!("body unreadable or larger than {MAX_BYTES} bytes ({e})"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::pin!(response);
    tokio::select! {
        r = &mut response => r,
        // The connection may finish (the server closed it) with the body already in hand.
        c = conn => {
            c.map_err(|e| e.to_string())?;
            response.await
        }
    }
}

/// Mozilla's roots through rustls with ring, as for every other TLS client here.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("no TLS ({e})"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}
