//! Where `serve` listens: plain HTTP, or HTTPS with `--tls-cert` and
//! `--tls-key` (rustls). Either way handlers can read the client's address
//! (`ConnectInfo<SocketAddr>`), and the start warns when the portal's login
//! and the admin token would cross a network in clear.
//!
//! A TLS handshake runs in its own task with a time limit, so a client that
//! stalls in it holds neither the accept loop nor other clients; at most
//! [`MAX_HANDSHAKES`] run at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::certificates::{Certificate, Certificates, provider};
pub use crate::config::TlsFiles;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many TLS handshakes may run at once.
pub const MAX_HANDSHAKES: usize = 256;

/// The warning `serve` logs at start, if any: listening beyond loopback
/// without TLS sends the admin token, session cookies and agent
/// passwords in clear.
pub fn plain_http_warning(listen: SocketAddr, tls: bool) -> Option<String> {
    if tls || listen.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "listening on {listen} without TLS: the admin token, portal and agent sessions and passwords cross the network in clear; serve with --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy"
    ))
}

/// Read the certificate chain and key into a rustls configuration that
/// serves them for every name a tenant has no certificate of its own for
/// (the [`Certificates`] returned); errors name the file and the fix.
pub fn server_config(
    files: &TlsFiles,
) -> anyhow::Result<(Arc<ServerConfig>, Vec<u8>, Arc<Certificates>)> {
    let cert_pem = std::fs::read(&files.cert)
        .with_context(|| format!("cannot read --tls-cert {}", files.cert.display()))?;
    // Not in any message: the key's bytes.
    let key_pem = std::fs::read(&files.key)
        .with_context(|| format!("cannot read --tls-key {}", files.key.display()))?;
    let own = Certificate::from_pem(
        &cert_pem,
        &key_pem,
        (
            &format!("--tls-cert {}", files.cert.display()),
            &format!("--tls-key {}", files.key.display()),
        ),
    )?;
    let certificates = Arc::new(Certificates::new(own));
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), cert_pem, certificates))
}

/// A listener that hands axum finished TLS connections.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    /// The server ended: stop accepting, and free the port.
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl TlsListener {
    /// Accept on `tcp`, each handshake in its own task.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match shake.await {
                        Ok(Ok(tls)) => {
                            drop(permit);
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            ready,
            accepting,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (it never does while serving): wait
            // for the graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_beyond_loopback_is_warned_about() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("address");
        let lan: SocketAddr = "192.168.1.5:8080".parse().expect("address");
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("address");
        let loopback6: SocketAddr = "[::1]:8080".parse().expect("address");
        for addr in [any, lan] {
            let warning = plain_http_warning(addr, false);
            assert!(
                warning.as_deref().is_some_and(|w| w.contains("--tls-cert")),
                "{addr}: {warning:?}"
            );
            assert_eq!(plain_http_warning(addr, true), None, "{addr} with TLS");
        }
        for addr in [loopback, loopback6] {
            assert_eq!(plain_http_warning(addr, false), None, "{addr}");
        }
    }

    #[test]
    fn bad_tls_files_name_the_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").expect("write");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let files = TlsFiles { cert, key };
        let message = format!("{:#}", server_config(&files).expect_err("refused"));
        assert!(message.contains("--tls-cert"), "{message}");
        let missing = TlsFiles {
            cert: dir.path().join("absent.pem"),
            key: files.key.clone(),
        };
        let message = format!("{:#}", server_config(&missing).expect_err("refused"));
        assert!(message.contains("cannot read --tls-cert"), "{message}");
    }
}
