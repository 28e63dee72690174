//! How `serve` listens (DESIGN §8): plain HTTP on loopback, TLS (rustls with ring) with
//! `--tls-cert`/`--tls-key`, or plain HTTP on another address only when `--behind-proxy`
//! says TLS ends in front of it. Anything else refuses to start and says why.
//!
//! Connections are served by hyper directly ([`serve_http`]) so that a client has
//! [`HEADER_READ_TIMEOUT`] to send its request head: a connection that trickles its
//! headers (slowloris) is closed instead of holding a descriptor for ever (`axum::serve`
//! sets no timer, so hyper's own timeout never fires there).
//!
//! TLS handshakes run on tasks of their own (at most [`MAX_HANDSHAKES`] at once, each
//! given [`HANDSHAKE_TIMEOUT`]), so a slow or silent client never holds up the accept
//! loop; finished connections reach axum through [`TlsListener`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Handshakes in progress at most; more connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's head (on a new or kept-alive
/// connection) before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long requests in flight may take to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on every connection `listener` accepts (HTTP/1.1, with
/// [`HEADER_READ_TIMEOUT`]) until `shutdown`; then lets requests in flight finish, for
/// at most [`DRAIN_TIMEOUT`].
pub async fn serve_http<L: axum::serve::Listener>(
    mut listener: L,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (io, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight at shutdown were cut off");
    }
}

/// TLS material, as given on the command line.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the server would not listen.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: tokens and logs would cross the network in clear; give --tls-cert and --tls-key, or --behind-proxy if a proxy in front of this server ends TLS"
    )]
    Insecure { addr: SocketAddr },
    #[error(
        "--metrics-listen {addr} is not a loopback address; /metrics there needs no token, so it may only listen on 127.0.0.1 or ::1 (on the API listener /metrics takes an admin token)"
    )]
    MetricsNotLoopback { addr: SocketAddr },
    #[error("cannot read the TLS {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the TLS certificate and key do not make a valid server configuration")]
    Config(#[source] rustls::Error),
}

/// Refuses plain HTTP off loopback unless a proxy ends TLS.
pub fn check_listen(
    addr: SocketAddr,
    tls: Option<&TlsFiles>,
    behind_proxy: bool,
) -> Result<(), TransportError> {
    if tls.is_none() && !behind_proxy && !addr.ip().is_loopback() {
        return Err(TransportError::Insecure { addr });
    }
    Ok(())
}

/// A rustls server configuration from PEM files (ring as the provider).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TransportError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |what: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |e: rustls::pki_types::pem::Error| TransportError::Pem {
            what,
            path,
            reason: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem("certificate", &files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("certificate", &files.cert))?;
    if certs.is_empty() {
        return Err(TransportError::Pem {
            what: "certificate",
            path: files.cert.display().to_string(),
            reason: "no CERTIFICATE block in the file".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem("key", &files.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TransportError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TransportError::Config)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections whose TLS handshake finished, for `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `tcp` and shakes hands on tasks of its own until `shutdown`.
    pub fn start(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (send, ready) = tokio::sync::mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    a = tcp.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait a moment, as axum does.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let send = send.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = send.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_off_loopback_needs_tls_or_a_proxy() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(matches!(
            check_listen(any, None, false),
            Err(TransportError::Insecure { .. })
        ));
        assert!(check_listen(any, None, true).is_ok());
        assert!(check_listen(local, None, false).is_ok());
        assert!(check_listen(v6, None, false).is_ok());
        let files = TlsFiles {
            cert: "c".into(),
            key: "k".into(),
        };
        assert!(check_listen(any, Some(&files), false).is_ok());
        let message = check_listen(any, None, false).unwrap_err().to_string();
        assert!(message.contains("--tls-cert") && message.contains("--behind-proxy"));
    }

    #[test]
    fn unreadable_pem_files_are_named() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let Err(e) = acceptor(&files) else {
            panic!("a missing certificate was accepted");
        };
        let e = e.to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
