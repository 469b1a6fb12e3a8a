//! The HTTP(S) server: accept loop, TLS, faults, routing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::error::RestError;
use crate::http::{Req, Resp};
use crate::ids;
use crate::oauth;
use crate::pages;
use crate::rest;
use crate::state::{Shared, take_one};

const MAX_BODY: usize = 32 * 1024 * 1024;

/// The connection is closed without an answer (fault injection).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

/// Accepts connections until `shutdown` turns true. While `online` is
/// false the listening socket is closed and every open connection is cut,
/// so clients get "connection refused" (an org that is down); when it turns
/// true again the same address is bound again. `listening` reports which of
/// the two is in effect.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut online: watch::Receiver<bool>,
    listening: watch::Sender<bool>,
) {
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
        let shared = shared.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
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

fn to_hyper(resp: Resp, extra: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &resp.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    for (k, v) in extra {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// A short name of the endpoint for request counts: version and ids
/// replaced, e.g. `GET query`, `POST sobjects/Task`, `GET sobjects/Task/{id}`.
pub fn endpoint_key(method: &str, path: &str) -> String {
    let trimmed = path.trim_start_matches("/services/");
    let mut parts: Vec<String> = Vec::new();
    for (i, seg) in trimmed.split('/').filter(|s| !s.is_empty()).enumerate() {
        if i == 1 && trimmed.starts_with("data/") && rest::parse_version(seg).is_some() {
            continue;
        }
        let looks_like_locator = seg.starts_with("01g") && seg.contains('-');
        if looks_like_locator {
            parts.push("{locator}".into());
        } else if ids::normalize(seg).is_some() && seg.starts_with('0') {
            parts.push("{id}".into());
        } else {
            parts.push(seg.to_string());
        }
    }
    let p = parts.join("/");
    let p = p.strip_prefix("data/").map(str::to_string).unwrap_or(p);
    let p = if p == "data" { "versions".into() } else { p };
    format!("{method} {p}")
}

fn fault_response(status: u16) -> Resp {
    let (code, msg) = match status {
        500 => (
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
        ),
        502 => ("BAD_GATEWAY", "Bad Gateway"),
        503 => (
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable. Please try again later.",
        ),
        504 => ("GATEWAY_TIMEOUT", "Gateway Timeout"),
        _ => ("UNKNOWN_EXCEPTION", "An unexpected error occurred."),
    };
    RestError::new(status, code, msg).into()
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let is_admin = path.starts_with("/__admin/") || path == "/__admin";
    if !is_admin {
        if take_one(&shared.faults.drop_next) {
            return Err(Dropped);
        }
        let latency = shared.faults.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            let r: Resp =
                RestError::new(413, "REQUEST_TOO_LARGE", "The request body is too large").into();
            return Ok(to_hyper(r, &[]));
        }
    };
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    if is_admin {
        return Ok(to_hyper(admin::handle(&shared, &req), &[]));
    }
    shared.count_request(endpoint_key(&req.method, &path));
    // Every REST answer says the org's API use, but the version list, which
    // is not counted either (as Salesforce documents).
    let is_rest = path.starts_with("/services/data/") && !rest::segments(&path).is_empty();
    if take_one(&shared.faults.fail_next) {
        let status = shared.faults.fail_status.load(Ordering::SeqCst) as u16;
        let extra = if is_rest {
            vec![("sforce-limit-info", shared.limit_info())]
        } else {
            vec![]
        };
        return Ok(to_hyper(fault_response(status), &extra));
    }
    let shared2 = shared.clone();
    let resp = tokio::task::spawn_blocking(move || route(&shared2, &req)).await;
    let resp = match resp {
        Ok(r) => r,
        Err(_) => RestError::new(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.").into(),
    };
    let extra = if is_rest {
        vec![("sforce-limit-info", shared.limit_info())]
    } else {
        vec![]
    };
    Ok(to_hyper(resp, &extra))
}

fn route(shared: &Shared, req: &Req) -> Resp {
    let path = req.path.as_str();
    let m = req.method.as_str();
    if path == "/services/data" || path.starts_with("/services/data/") {
        return rest::handle(shared, req);
    }
    match (m, path) {
        ("GET", "/services/oauth2/authorize") => oauth::authorize(shared, req),
        ("POST", "/services/oauth2/authorize/consent") => oauth::consent(shared, req),
        ("POST", "/services/oauth2/token") => oauth::token(shared, req),
        ("POST" | "GET", "/services/oauth2/revoke") => oauth::revoke(shared, req),
        ("GET" | "POST", "/services/oauth2/userinfo") => oauth::userinfo(shared, req),
        ("GET", "/.well-known/openid-configuration") => oauth::openid_configuration(shared),
        ("POST", "/login") => oauth::login(shared, req),
        ("GET", "/" | "/login") => oauth::home(shared, req),
        (_, "/services/oauth2/token") => {
            Resp::oauth_error(405, "invalid_request", "must use HTTP POST")
        }
        ("GET", "/id/keys") => Resp::json(200, &crate::id_token::jwks()),
        ("GET", p) if p.starts_with("/id/") => {
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            match segs.as_slice() {
                ["id", org, user] => oauth::identity(shared, req, org, user),
                _ => Resp::text(404, "Bad_Id"),
            }
        }
        _ if path.starts_with("/services/") => RestError::not_found().into(),
        ("GET", _) => pages::record_page(shared, req)
            .or_else(|| pages::new_record_page(shared, req))
            .unwrap_or_else(pages::not_found),
        _ => pages::not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys() {
        let id = ids::make_id("00T", 3);
        assert_eq!(
            endpoint_key("GET", "/services/data/v67.0/query"),
            "GET query"
        );
        assert_eq!(
            endpoint_key("GET", "/services/data/v67.0/query/"),
            "GET query"
        );
        assert_eq!(
            endpoint_key(
                "GET",
                &format!("/services/data/v67.0/query/{}-2000", ids::make_id("01g", 1))
            ),
            "GET query/{locator}"
        );
        assert_eq!(
            endpoint_key("PATCH", &format!("/services/data/v58.0/sobjects/Task/{id}")),
            "PATCH sobjects/Task/{id}"
        );
        assert_eq!(
            endpoint_key("POST", "/services/oauth2/token"),
            "POST oauth2/token"
        );
        assert_eq!(endpoint_key("GET", "/services/data/"), "GET versions");
        assert_eq!(
            endpoint_key(
                "GET",
                &format!("/id/{}/{}", ids::make_id("00D", 1), ids::make_id("005", 1))
            ),
            "GET id/{id}/{id}"
        );
    }
}
