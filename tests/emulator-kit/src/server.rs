//! The HTTP(S) server both emulators run: binding, the accept loop with
//! graceful shutdown, going off the network and back, the connection-level
//! faults (dropped connections, latency), and the body limit. What a
//! request means is the emulator's handler's business.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::http::{Req, Resp};
use crate::tls::{self, TlsError};

/// The connection is closed without an answer (fault injection).
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
pub struct Dropped;

/// The request body was over the emulator's limit (or could not be read).
#[derive(Debug, thiserror::Error)]
#[error("the request body is too large")]
pub struct BodyTooLarge;

/// Starting failed; the texts are those the emulators always gave.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] TlsError),
}

/// Takes one from a countdown; true when it was positive. The fault
/// switches are countdowns ("the next N requests ...").
pub fn take_one(c: &AtomicU32) -> bool {
    c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// The connection-level faults, applied before a request is read: drop
/// the connection if `drop_next` counts down, else wait `latency_ms`.
pub async fn connection_faults(
    drop_next: &AtomicU32,
    latency_ms: &AtomicU64,
) -> Result<(), Dropped> {
    if take_one(drop_next) {
        return Err(Dropped);
    }
    let latency = latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    Ok(())
}

/// Reads a request's body, at most `max_body` bytes, into a [`Req`].
pub async fn read_request(req: Request<Incoming>, max_body: usize) -> Result<Req, BodyTooLarge> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Err(BodyTooLarge),
    };
    Ok(Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    })
}

/// A [`Resp`] as hyper wants it; a status hyper refuses becomes 500.
pub fn to_hyper<D>(resp: Resp<D>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &resp.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// How the test CA introduces itself, so a client's certificate error
/// names the emulator it does not trust.
#[derive(Debug, Clone, Copy)]
pub struct CaName {
    pub common_name: &'static str,
    pub organization: &'static str,
}

/// A bound listening socket with its TLS set-up, not serving yet, so the
/// emulator can build its state around [`Bound::base_url`] first.
pub struct Bound {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    addr: SocketAddr,
    base_url: String,
    ca_pem: String,
}

/// Binds `listen`; with `ca`, makes a CA and a certificate for the bound
/// address and serves HTTPS, else plain HTTP.
pub async fn bind(listen: SocketAddr, ca: Option<CaName>) -> Result<Bound, StartError> {
    let bind_error = |source| StartError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let (tls, ca_pem) = match ca {
        Some(ca) => {
            let t = tls::generate(ca.common_name, ca.organization, Some(addr.ip()))?;
            (Some(TlsAcceptor::from(t.config)), t.ca_pem)
        }
        None => (None, String::new()),
    };
    let scheme = if ca.is_some() { "https" } else { "http" };
    Ok(Bound {
        listener,
        tls,
        addr,
        base_url: format!("{scheme}://{host}:{}", addr.port()),
        ca_pem,
    })
}

impl Bound {
    /// `https://127.0.0.1:PORT` and the like: what clients are given.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves every request with `handler` on the current tokio runtime.
    pub fn serve<H, F>(self, handler: H) -> Server
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<Full<Bytes>>, Dropped>> + Send + 'static,
    {
        let (stop, stop_rx) = watch::channel(false);
        let (online, online_rx) = watch::channel(true);
        let (listening_tx, listening) = watch::channel(true);
        let task = tokio::spawn(accept_loop(
            self.listener,
            self.tls,
            handler,
            stop_rx,
            online_rx,
            listening_tx,
        ));
        Server {
            addr: self.addr,
            ca_pem: self.ca_pem,
            stop,
            online,
            listening,
            task: Some(task),
            runtime: None,
        }
    }
}

/// A running server. Dropping it stops the server without waiting;
/// [`Server::shutdown`] / [`Server::shutdown_blocking`] wait.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    ca_pem: String,
    stop: watch::Sender<bool>,
    online: watch::Sender<bool>,
    listening: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// A runtime of its own for a server started from sync code (two workers,
/// threads named after the emulator).
pub fn own_runtime(thread_name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(thread_name)
        .enable_all()
        .build()
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that signed the server certificate (empty
    /// without TLS).
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Makes the server own `runtime` (see [`own_runtime`]), which then
    /// lives and dies with it.
    pub fn keep_runtime(&mut self, runtime: tokio::runtime::Runtime) {
        self.runtime = Some(runtime);
    }

    /// Takes the server off the network (`false`: the listening socket
    /// closes and open connections are cut, so clients get "connection
    /// refused") or back on (`true`: the same address is bound again).
    /// Returns once that is in effect.
    pub async fn set_online(&self, up: bool) {
        let _ = self.online.send(up);
        let mut listening = self.listening.clone();
        // An error means the server stopped (e.g. the port was taken while
        // down); a test then fails on its next request, which says more.
        let _ = listening.wait_for(|l| *l == up).await;
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops a server that owns its runtime and waits.
    pub fn shutdown_blocking(mut self) {
        let _ = self.stop.send(true);
        if let (Some(task), Some(rt)) = (self.task.take(), self.runtime.take()) {
            let _ = rt.block_on(task);
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Accepts connections until `shutdown` turns true. While `online` is
/// false the listening socket is closed and every open connection is cut,
/// so clients get "connection refused" (a service that is down); when it
/// turns true again the same address is bound again. `listening` reports
/// which of the two is in effect.
async fn accept_loop<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    mut online: watch::Receiver<bool>,
    listening: watch::Sender<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Dropped>> + Send + 'static,
{
    let addr = listener.local_addr().ok();
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Some(current) = listener.as_ref() else {
            // Offline: wait to come back (or stop), then bind the same address.
            tokio::select! {
                closed = async { online.wait_for(|up| *up).await.is_err() } => if closed { break },
                _ = shutdown.changed() => break,
            }
            let Some(addr) = addr else { break };
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    let _ = listening.send(true);
                }
                // The port was taken meanwhile: nothing to serve on.
                Err(_) => break,
            }
            continue;
        };
        let accepted = tokio::select! {
            r = current.accept() => r,
            _ = shutdown.changed() => break,
            closed = async { online.wait_for(|up| !*up).await.is_err() } => {
                if closed {
                    break;
                }
                listener = None;
                conns.shutdown().await;
                let _ = listening.send(false);
                continue;
            }
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off a little.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let svc = service_fn(handler);
            let builder = http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
    conns.shutdown().await;
}
