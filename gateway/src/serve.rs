//! Serving connections: hyper-util's HTTP/1 + h2c builder with the timeouts axum's `serve`
//! does not expose, and the connection caps of [`crate::edge::conn_limit`]. A connection over a
//! cap is closed at once (and counted) while the open ones keep being served.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use referral_common::tls::LiveTls;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::edge::conn_limit::ConnectionLimits;

/// How each connection is served.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// A client must send its first byte, and then each request's headers, within this; on
    /// HTTP/1 hyper restarts it whenever a keep-alive connection goes idle, so it is also
    /// the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// HTTP/2: ping an idle peer this often, and drop it if the ping is not answered within
    /// the same time.
    pub http2_keep_alive: Duration,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the kernel's default soft limit of
/// 1,024 is far below what a gateway holds), and returns the soft limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-files limit to the hard limit");
            return limit.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Accepts until `stop` completes, then stops accepting, asks every connection to finish
/// its requests and close, and waits for them at most `drain`.
pub async fn serve<F>(
    listener: TcpListener,
    https: Option<Arc<LiveTls>>,
    app: Router,
    limits: ConnectionLimits,
    settings: ConnectionSettings,
    stop: F,
    drain: Duration,
) where
    F: Future<Output = ()>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keep_alive)
        .keep_alive_timeout(settings.http2_keep_alive);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: the connections already open keep being served;
                    // back off a little instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let guard = match limits.try_acquire(peer.ip()) {
            Ok(guard) => guard,
            Err(reason) => {
                metrics::counter!("gateway_connections_refused_total", "reason" => reason.label())
                    .increment(1);
                // Dropping the socket closes it at once; nothing is read or written.
                drop(tcp);
                continue;
            }
        };
        // TCP_NODELAY: small JSON answers must not wait on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |mut req: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` would add: the client IP logic reads it.
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let timeout = settings.header_read_timeout;
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let https = https.clone();
        tokio::spawn(async move {
            let _guard = guard;
            // hyper's header timer starts once the protocol is known, which needs a first
            // byte: a socket that never sends one is closed here after the same timeout.
            if !first_byte_within(&tcp, timeout).await {
                return;
            }
            let served = match https {
                // HTTPS: the handshake takes the certificate current now (reloaded on change)
                // and must finish within the same timeout as a request's headers.
                Some(live) => {
                    let acceptor = TlsAcceptor::from(live.server_config());
                    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, peer_network = %referral_common::pii::truncate_ip(&peer.ip().to_string()), "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer_network = %referral_common::pii::truncate_ip(&peer.ip().to_string()), "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, peer_network = %referral_common::pii::truncate_ip(&peer.ip().to_string()), "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!("connections still open after the drain timeout; stopping anyway");
        }
    }
}

/// Whether the client sent something (or closed) within `timeout`.
async fn first_byte_within(tcp: &TcpStream, timeout: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(timeout, tcp.peek(&mut byte)).await,
        Ok(Ok(n)) if n > 0
    )
}
