//! Redis clients from REDIS_URL and, for a server whose certificate a private CA signed
//! (a cluster's own Redis, a test's), REDIS_CA_FILE: the PEM CA(s) a `rediss://` server
//! must chain to. Without it `rediss://` trusts the public web roots. Either way the
//! certificate and host name are verified: there is no setting that turns that off.

use std::path::Path;

use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::config::ConfigError;

/// A client for `url`, trusting only the CAs in `ca_file` when one is given. Nothing
/// connects yet; a bad URL or CA file is a [`ConfigError`] naming its setting.
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, ConfigError> {
    let Some(ca_file) = ca_file else {
        return redis::Client::open(url)
            .map_err(|e| ConfigError::new("REDIS_URL", format!("not a Redis URL ({e})")));
    };
    if !url.starts_with("rediss://") {
        return Err(ConfigError::new(
            "REDIS_CA_FILE",
            "is set, so REDIS_URL must be a rediss:// (TLS) URL",
        ));
    }
    let pem = std::fs::read(ca_file)
        .map_err(|e| ConfigError::new("REDIS_CA_FILE", format!("cannot read {}: {e}", ca_file.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::new(
                "REDIS_CA_FILE",
                format!("{}: not PEM certificates ({e})", ca_file.display()),
            )
        })?;
    // An empty trust store would refuse every server: say so now, not at the first request.
    if certs.is_empty() {
        return Err(ConfigError::new(
            "REDIS_CA_FILE",
            format!("{} holds no certificate", ca_file.display()),
        ));
    }
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .map_err(|e| ConfigError::new("REDIS_CA_FILE", format!("{}: {e}", ca_file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem()
    }

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("redis-ca-{}-{name}", uuid::Uuid::now_v7()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn without_a_ca_any_redis_url_opens_and_garbage_names_redis_url() {
        assert!(client("redis://127.0.0.1:6379", None).is_ok());
        assert!(client("rediss://localhost:6380", None).is_ok());
        assert_eq!(client("mysql://x", None).unwrap_err().name, "REDIS_URL");
    }

    #[test]
    fn a_ca_needs_rediss_and_a_readable_pem_with_a_certificate() {
        let good = file("good.pem", &ca_pem());
        assert!(client("rediss://localhost:6380", Some(&good)).is_ok());
        let plain = client("redis://localhost:6379", Some(&good)).unwrap_err();
        assert_eq!(plain.name, "REDIS_CA_FILE");
        assert!(plain.problem.contains("rediss://"), "{}", plain.problem);
        let missing = client("rediss://localhost", Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert_eq!(missing.name, "REDIS_CA_FILE");
        assert!(missing.problem.contains("cannot read"), "{}", missing.problem);
        let empty = file("empty.pem", "no certificates here\n");
        let err = client("rediss://localhost", Some(&empty)).unwrap_err();
        assert_eq!(err.name, "REDIS_CA_FILE");
        assert!(err.problem.contains("no certificate"), "{}", err.problem);
        let broken = file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        assert_eq!(
            client("rediss://localhost", Some(&broken)).unwrap_err().name,
            "REDIS_CA_FILE"
        );
        for f in [good, empty, broken] {
            let _ = std::fs::remove_file(f);
        }
    }
}
