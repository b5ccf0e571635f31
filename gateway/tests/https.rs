//! The gateway's optional HTTPS (GATEWAY_TLS_CERT/KEY): a request over TLS is answered, a
//! plaintext one on the same port is not, and half the settings is a named error.

#[path = "../../common/tests/support/certs.rs"]
mod certs;

use std::{sync::Arc, time::Duration};

use gateway::GatewayConfig;
use referral_common::{config::Secret, server};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> GatewayConfig {
    GatewayConfig {
        web_tokens: referral_common::auth::WebTokenArgs::secret(&Secret::new(
            "test-secret-0123456789-abcdefghijkl",
        )),
        service_jwt_secret: Secret::new("service-secret-0123456789-abcdefghijkl"),
        click_signing_keys: Secret::new("k1:https-test-click-key-0123456789abcdef"),
        invite_addr: "127.0.0.1:1".into(),
        fraud_addr: "127.0.0.1:1".into(),
        incentive_addr: "127.0.0.1:1".into(),
        analytics_addr: "127.0.0.1:1".into(),
        ..GatewayConfig::default()
    }
}

async fn get(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin), path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn the_gateway_answers_over_https_and_not_in_plaintext() {
    let ca = certs::Ca::new("ingress CA");
    let dir = certs::temp_dir("gw");
    let (cert, key, _) = certs::write(&dir, &ca.leaf("gateway"), &ca.pem());
    let config = GatewayConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..config()
    };
    let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let gw = gateway::build(config, listener).await.unwrap();
    let (stop, shutdown) = server::shutdown_pair();
    let task = tokio::spawn(gw.run_until_stopped(shutdown));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the gateway");
    let answer = get(&mut tls, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = get(&mut plain, "/healthz").await;
    assert!(!answer.contains("HTTP/1.1 200"), "plaintext was served: {answer}");

    stop.trigger();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the gateway stops")
        .unwrap()
        .unwrap();
}

#[test]
fn half_the_https_settings_is_a_named_error() {
    let only_cert = GatewayConfig {
        tls_cert: Some("/nonexistent/cert.pem".into()),
        ..config()
    };
    let e = only_cert.validate().unwrap_err().to_string();
    assert!(e.contains("GATEWAY_TLS_KEY"), "{e}");
    let only_key = GatewayConfig {
        tls_key: Some("/nonexistent/key.pem".into()),
        ..config()
    };
    let e = only_key.validate().unwrap_err().to_string();
    assert!(e.contains("GATEWAY_TLS_CERT"), "{e}");
}
