//! TLS on the gRPC hops, with real servers and clients on loopback and a throwaway CA:
//! mutual TLS serves a mesh client, refuses callers without a certificate, with one from
//! another CA or in plaintext, and a replaced certificate reaches new connections without a
//! restart (a broken replacement is not loaded).

mod support;

use std::{path::Path, sync::Arc, time::Duration};

use referral_common::{
    server::{self, ShutdownTrigger},
    tls::{ClientAuth, GrpcTls, GrpcTlsArgs},
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use support::certs::{self, Ca, Leaf};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const RELOAD: Duration = Duration::from_millis(100);

fn args(dir: &Path, leaf: &Leaf, ca_pem: &str, client_auth: ClientAuth) -> GrpcTlsArgs {
    let (cert, key, ca) = certs::write(dir, leaf, ca_pem);
    GrpcTlsArgs {
        cert: Some(cert),
        key: Some(key),
        ca: Some(ca),
        client_auth,
        reload_every: RELOAD,
    }
}

/// The gRPC health service over `tls` on 127.0.0.1.
struct Server {
    port: u16,
    _stop: ShutdownTrigger,
}

async fn serve(tls: &GrpcTls) -> Server {
    let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (_reporter, health) = server::health().await;
    let (stop, shutdown) = server::shutdown_pair();
    let incoming = server::incoming(listener, tls);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, shutdown.wait()),
    );
    Server {
        port: addr.port(),
        _stop: stop,
    }
}

async fn check(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    let mut client = HealthClient::new(channel);
    let call = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(answer) => answer.map(|_| ()),
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer in 5 s")),
    }
}

/// A tonic client with TLS settings of the test's choosing (not the mesh's own channel).
async fn check_with(port: u16, config: ClientTlsConfig) -> Result<(), tonic::Status> {
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .tls_config(config)
        .unwrap();
    check(endpoint.connect_lazy()).await
}

#[tokio::test]
async fn a_mesh_client_calls_a_service_over_mutual_tls() {
    let ca = Ca::new("mesh CA");
    let server_tls = args(
        &certs::temp_dir("srv"),
        &ca.leaf("fraud-svc"),
        &ca.pem(),
        ClientAuth::Required,
    )
    .load()
    .unwrap();
    let srv = serve(&server_tls).await;
    let client_tls = args(
        &certs::temp_dir("cli"),
        &ca.leaf("invite-svc"),
        &ca.pem(),
        ClientAuth::Required,
    )
    .load()
    .unwrap();
    // The mesh's own channel: by name (one endpoint) and balanced over DNS answers.
    let direct = server::channel(&format!("localhost:{}", srv.port), &client_tls).unwrap();
    check(direct).await.expect("mTLS call by name");
    let balanced = server::channel(&format!("dns:///localhost:{}", srv.port), &client_tls).unwrap();
    check(balanced).await.expect("mTLS call over the balancer");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_only_when_client_auth_is_required() {
    let ca = Ca::new("mesh CA");
    let no_identity = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.pem()))
            .domain_name("localhost")
    };

    let required = args(
        &certs::temp_dir("req"),
        &ca.leaf("svc"),
        &ca.pem(),
        ClientAuth::Required,
    )
    .load()
    .unwrap();
    let srv = serve(&required).await;
    let refused = check_with(srv.port, no_identity()).await;
    assert!(refused.is_err(), "a caller without a certificate was served");

    // The same caller against a server that does not ask: served (so the refusal above is
    // the client-certificate requirement, not something else).
    let optional = args(
        &certs::temp_dir("opt"),
        &ca.leaf("svc"),
        &ca.pem(),
        ClientAuth::None,
    )
    .load()
    .unwrap();
    let srv = serve(&optional).await;
    check_with(srv.port, no_identity())
        .await
        .expect("encrypted call without client auth");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let ca = Ca::new("mesh CA");
    let other = Ca::new("someone else's CA");
    let tls = args(
        &certs::temp_dir("ca"),
        &ca.leaf("svc"),
        &ca.pem(),
        ClientAuth::Required,
    )
    .load()
    .unwrap();
    let srv = serve(&tls).await;
    let foreign = other.leaf("intruder");
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .identity(Identity::from_pem(&foreign.cert_pem, &foreign.key_pem))
        .domain_name("localhost");
    assert!(
        check_with(srv.port, config).await.is_err(),
        "a foreign CA's certificate was accepted"
    );

    // And the mesh client refuses a server whose certificate is not from its CA.
    let impostor = args(
        &certs::temp_dir("imp"),
        &other.leaf("svc"),
        &other.pem(),
        ClientAuth::Required,
    )
    .load()
    .unwrap();
    let srv = serve(&impostor).await;
    let client_tls = args(
        &certs::temp_dir("cli2"),
        &ca.leaf("invite-svc"),
        &ca.pem(),
        ClientAuth::Required,
    )
    .load()
    .unwrap();
    let channel = server::channel(&format!("localhost:{}", srv.port), &client_tls).unwrap();
    assert!(
        check(channel).await.is_err(),
        "a server from another CA was trusted"
    );
}

#[tokio::test]
async fn plaintext_to_a_tls_port_fails() {
    let ca = Ca::new("mesh CA");
    let tls = args(
        &certs::temp_dir("plain"),
        &ca.leaf("svc"),
        &ca.pem(),
        ClientAuth::None,
    )
    .load()
    .unwrap();
    let srv = serve(&tls).await;
    let plain = server::channel(&format!("127.0.0.1:{}", srv.port), &GrpcTls::plaintext()).unwrap();
    assert!(
        check(plain).await.is_err(),
        "a plaintext call was served on a TLS port"
    );
}

/// The certificate the server at `port` presents to a new connection.
async fn served_certificate(port: u16, ca_pem: &str, client: &Leaf) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap()],
                rustls_pki_types::PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(leaf: &Leaf) -> Vec<u8> {
    CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_and_a_broken_one_is_not_loaded() {
    let ca = Ca::new("mesh CA");
    let dir = certs::temp_dir("reload");
    let first = ca.leaf("fraud-svc");
    let tls = args(&dir, &first, &ca.pem(), ClientAuth::Required)
        .load()
        .unwrap();
    let srv = serve(&tls).await;
    let client_dir = certs::temp_dir("reload-cli");
    let client = ca.leaf("invite-svc");
    let client_tls = args(&client_dir, &client, &ca.pem(), ClientAuth::Required)
        .load()
        .unwrap();
    let channel = server::channel(&format!("localhost:{}", srv.port), &client_tls).unwrap();
    check(channel.clone()).await.expect("before the renewal");
    assert_eq!(
        served_certificate(srv.port, &ca.pem(), &client).await,
        der(&first)
    );

    // Renewal (same CA, new key), on both sides, as cert-manager does it.
    let second = ca.leaf("fraud-svc");
    certs::write(&dir, &second, &ca.pem());
    let client_second = ca.leaf("invite-svc");
    certs::write(&client_dir, &client_second, &ca.pem());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while served_certificate(srv.port, &ca.pem(), &client).await != der(&second) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(RELOAD).await;
    }
    // Let the client side see its own renewal too and redial; calls go on working.
    tokio::time::sleep(RELOAD * 5).await;
    assert!(
        client_tls.get().unwrap().generation() >= 1,
        "the client never reloaded"
    );
    check(channel.clone()).await.expect("after the renewal");

    // A broken replacement (a key that is not the certificate's) is refused: the server
    // keeps serving the last good certificate.
    let third = ca.leaf("fraud-svc");
    let broken = Leaf {
        cert_pem: third.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
    };
    certs::write(&dir, &broken, &ca.pem());
    tokio::time::sleep(RELOAD * 5).await;
    assert_eq!(
        served_certificate(srv.port, &ca.pem(), &client).await,
        der(&second)
    );
    check(channel).await.expect("after a broken replacement");
}

#[tokio::test]
async fn half_configured_or_unreadable_tls_is_a_named_error() {
    let ca = Ca::new("mesh CA");
    let dir = certs::temp_dir("bad");
    let leaf = ca.leaf("svc");
    let full = args(&dir, &leaf, &ca.pem(), ClientAuth::Required);

    let no_key = GrpcTlsArgs {
        key: None,
        ..full.clone()
    };
    assert!(no_key.load().err().unwrap().to_string().contains("GRPC_TLS_KEY"));
    let no_ca = GrpcTlsArgs {
        ca: None,
        ..full.clone()
    };
    assert!(no_ca.load().err().unwrap().to_string().contains("GRPC_TLS_CA"));

    let other = ca.leaf("svc");
    std::fs::write(dir.join("other-key.pem"), &other.key_pem).unwrap();
    let wrong_key = GrpcTlsArgs {
        key: Some(dir.join("other-key.pem")),
        ..full.clone()
    };
    assert!(
        wrong_key
            .load()
            .err()
            .unwrap()
            .to_string()
            .contains("GRPC_TLS_KEY")
    );

    std::fs::write(dir.join("garbage.pem"), "not a certificate").unwrap();
    let garbage = GrpcTlsArgs {
        ca: Some(dir.join("garbage.pem")),
        ..full.clone()
    };
    assert!(garbage.load().err().unwrap().to_string().contains("GRPC_TLS_CA"));
    let missing = GrpcTlsArgs {
        cert: Some(dir.join("nope.pem")),
        ..full.clone()
    };
    assert!(
        missing
            .load()
            .err()
            .unwrap()
            .to_string()
            .contains("GRPC_TLS_CERT")
    );

    assert!(
        !GrpcTlsArgs::default().load().unwrap().is_on(),
        "no settings is plaintext"
    );
    assert!(full.load().unwrap().is_on());
}
