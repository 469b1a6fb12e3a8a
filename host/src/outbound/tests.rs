//! Tests of [`Client::fetch`] against a tiny local HTTP/1.1 server: requests
//! sent, policy and address rules enforced, redirects, caps, errors.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::policy::tests::{allow, policy};
use super::*;

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

// --- a tiny HTTP/1.1 server that records requests and counts connections

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    /// Status, extra headers, body (sent with Content-Length).
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// Raw bytes, then close.
    Raw(Vec<u8>),
    /// Never answer; keep the connection open.
    Hang,
}

fn redirect(status: u16, location: &str) -> Reply {
    Reply::Full(
        status,
        vec![("location".into(), location.into())],
        Vec::new(),
    )
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        tokio::spawn(async move {
            let accepted = AtomicUsize::new(0);
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let index = accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(
                    socket,
                    index,
                    Arc::clone(&handler),
                    Arc::clone(&recorded),
                ));
            }
        });
        Server { addr, requests }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /` on this server by `client`, the server allowed exactly.
    async fn get_root(&self, client: &Client) -> Result<Response, FetchError> {
        client
            .fetch(
                &allow(&[&self.origin()]),
                Request::new(Method::Get, self.url("/")),
            )
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// How many connections were accepted so far. Connects a sentinel and
    /// asks the server its accept index: accepts are sequential and the
    /// backlog is FIFO, so every earlier connection has been counted.
    async fn connections(&self) -> usize {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(b"SENTINEL\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.trim().parse().unwrap()
    }
}

async fn serve(
    socket: TcpStream,
    index: usize,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) {
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    if line.trim() == "SENTINEL" {
        let _ = reader
            .get_mut()
            .write_all(index.to_string().as_bytes())
            .await;
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    let request = Recorded {
        method,
        path,
        headers,
        body,
    };
    let reply = handler(&request);
    recorded.lock().unwrap().push(request);
    let socket = reader.get_mut();
    match reply {
        Reply::Full(status, headers, body) => {
            let mut out = format!("HTTP/1.1 {status} X\r\n");
            for (n, v) in headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str(&format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            ));
            let _ = socket.write_all(out.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        }
        Reply::Raw(bytes) => {
            let _ = socket.write_all(&bytes).await;
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
        }
    }
    let _ = socket.shutdown().await;
}

fn ok(body: &str) -> Reply {
    Reply::Full(200, Vec::new(), body.as_bytes().to_vec())
}

// --- fetching

#[tokio::test]
async fn fetch_sends_request_and_returns_response() {
    let server = Server::start(|_| {
        Reply::Full(
            201,
            vec![("x-reply".into(), "yes".into())],
            b"created".to_vec(),
        )
    })
    .await;
    let mut request = Request::new(Method::Post, server.url("/api?q=1"));
    request.headers = vec![
        ("Authorization".into(), "Bearer tok".into()),
        ("X-Multi".into(), "a".into()),
        ("X-Multi".into(), "b".into()),
    ];
    request.body = Some(b"{\"a\":1}".to_vec());
    let response = client()
        .fetch(&allow(&[&server.origin()]), request)
        .await
        .unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.body, b"created");
    assert!(response.headers.contains(&("x-reply".into(), "yes".into())));

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/api?q=1");
    assert_eq!(seen[0].header("authorization"), Some("Bearer tok"));
    assert_eq!(seen[0].body, b"{\"a\":1}");
    let multi: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| n == "x-multi")
        .collect();
    assert_eq!(multi.len(), 2);
    assert!(
        seen[0]
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("pbx-host/"))
    );
}

#[tokio::test]
async fn denied_targets_get_no_connection() {
    let server = Server::start(|_| ok("hi")).await;
    let origin = server.origin();
    let cases = [
        // Not requested.
        policy(&[], &[&origin]),
        // Not granted.
        policy(&[&origin], &[]),
        // Granted for another port only.
        policy(&[&origin], &["http://127.0.0.1:1"]),
    ];
    for p in cases {
        let err = client()
            .fetch(&p, Request::new(Method::Get, server.url("/")))
            .await
            .unwrap_err();
        let FetchError::Denied { host, .. } = err else {
            panic!("expected Denied, got {err:?}");
        };
        assert_eq!(host, format!("http://127.0.0.1:{}", server.addr.port()));
    }
    assert_eq!(server.connections().await, 0);
}

#[tokio::test]
async fn host_name_resolving_to_loopback_needs_exact_grant() {
    let server = Server::start(|_| ok("internal")).await;
    let port = server.addr.port();
    let overrides = HashMap::from([(
        "api.example.test".to_owned(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]);
    let client = Client::build(ClientConfig::default(), overrides).unwrap();
    let target = format!("http://api.example.test:{port}/");

    let wildcard = allow(&[&format!("http://*.example.test:{port}")]);
    let err = client
        .fetch(&wildcard, Request::new(Method::Get, target.clone()))
        .await
        .unwrap_err();
    let FetchError::Denied { host, rule } = err else {
        panic!("expected Denied, got {err:?}");
    };
    assert_eq!(host, format!("http://api.example.test:{port}"));
    assert!(rule.contains("loopback"), "{rule}");
    assert_eq!(server.connections().await, 0);

    let exact = policy(
        &[&format!("http://*.example.test:{port}")],
        &[&format!("http://api.example.test:{port}")],
    );
    let response = client
        .fetch(&exact, Request::new(Method::Get, target))
        .await
        .unwrap();
    assert_eq!(response.body, b"internal");
}

#[tokio::test]
async fn redirects_are_followed_and_checked() {
    let other = Server::start(|_| ok("other")).await;
    let other_url = other.url("/landing");
    let server = Server::start(move |r| match r.path.as_str() {
        "/relative" => redirect(302, "/final"),
        "/cross" => redirect(307, &other_url),
        "/see-other" => redirect(303, "/final"),
        "/temporary" => redirect(307, "/final"),
        _ => ok("final"),
    })
    .await;
    let both = allow(&[&server.origin(), &other.origin()]);
    let with_secrets = |method, path: &str| {
        let mut r = Request::new(method, server.url(path));
        r.headers = vec![
            ("authorization".into(), "Bearer secret".into()),
            ("cookie".into(), "sid=secret".into()),
            ("content-type".into(), "application/json".into()),
            ("x-keep".into(), "1".into()),
        ];
        r.body = Some(b"payload".to_vec());
        r
    };

    // Relative Location, same origin: credentials kept, 302 POST -> GET.
    let response = client()
        .fetch(&both, with_secrets(Method::Post, "/relative"))
        .await
        .unwrap();
    assert_eq!(response.body, b"final");
    let seen = server.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("GET", "/final")
    );
    assert_eq!(last.header("authorization"), Some("Bearer secret"));
    assert!(last.body.is_empty());
    assert_eq!(last.header("content-type"), None);

    // 303: GET without body.
    client()
        .fetch(&both, with_secrets(Method::Put, "/see-other"))
        .await
        .unwrap();
    let last = server.requests().pop().unwrap();
    assert_eq!(last.method, "GET");
    assert!(last.body.is_empty());

    // 307: method and body kept.
    client()
        .fetch(&both, with_secrets(Method::Post, "/temporary"))
        .await
        .unwrap();
    let last = server.requests().pop().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.body, b"payload");

    // Cross-origin: Authorization and Cookie stripped, the rest kept.
    let response = client()
        .fetch(&both, with_secrets(Method::Post, "/cross"))
        .await
        .unwrap();
    assert_eq!(response.body, b"other");
    let seen = other.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, b"payload");
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[0].header("cookie"), None);
    assert_eq!(seen[0].header("x-keep"), Some("1"));
}

#[tokio::test]
async fn redirect_to_denied_host_sends_nothing_there() {
    let forbidden = Server::start(|_| ok("should not be reached")).await;
    let target = forbidden.url("/steal");
    let server = Server::start(move |_| redirect(302, &target)).await;
    let err = server.get_root(&client()).await.unwrap_err();
    let FetchError::Denied { host, .. } = err else {
        panic!("expected Denied, got {err:?}");
    };
    assert_eq!(host, format!("http://127.0.0.1:{}", forbidden.addr.port()));
    assert_eq!(forbidden.connections().await, 0);

    // The cloud metadata address is refused the same way.
    let server = Server::start(|_| redirect(301, "http://169.254.169.254/latest/meta-data/")).await;
    let err = server.get_root(&client()).await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Denied { host, .. } if host == "http://169.254.169.254:80"),
        "{err:?}"
    );
}

#[tokio::test]
async fn too_many_redirects() {
    let server = Server::start(|_| redirect(302, "/again")).await;
    let err = server.get_root(&client()).await.unwrap_err();
    assert_eq!(
        err,
        FetchError::Invalid("too many redirects (more than 5)".into())
    );
    // The first request plus five followed hops.
    assert_eq!(server.requests().len(), 6);
}

fn small_cap_client(cap: u64) -> Client {
    Client::new(ClientConfig {
        limits: Limits {
            max_response_bytes: cap,
            ..Limits::default()
        },
        ..ClientConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    // Announced by Content-Length (only a few bytes are actually sent).
    let announced = Server::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\nabc".to_vec())
    })
    .await;
    // Unannounced: streamed until the connection closes.
    let streamed = Server::start(|_| {
        let mut raw = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 64 * 1024));
        Reply::Raw(raw)
    })
    .await;
    let exact = Server::start(|_| ok(&"y".repeat(1024))).await;
    let client = small_cap_client(1024);
    for server in [&announced, &streamed] {
        let err = server.get_root(&client).await.unwrap_err();
        assert_eq!(err, FetchError::TooLarge(1024));
    }
    let response = exact.get_root(&client).await.unwrap();
    assert_eq!(response.body.len(), 1024);
}

#[tokio::test]
async fn silent_server_times_out() {
    let server = Server::start(|_| Reply::Hang).await;
    let mut request = Request::new(Method::Get, server.url("/"));
    request.timeout = Some(Duration::from_millis(200));
    let err = client()
        .fetch(&allow(&[&server.origin()]), request)
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::Timeout);

    // The operator's cap wins over a longer plugin timeout.
    let capped = Client::new(ClientConfig {
        limits: Limits {
            max_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..ClientConfig::default()
    })
    .unwrap();
    let mut request = Request::new(Method::Get, server.url("/"));
    request.timeout = Some(Duration::from_secs(3600));
    let err = capped
        .fetch(&allow(&[&server.origin()]), request)
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::Timeout);
}

#[tokio::test]
async fn refused_connection_is_unreachable_without_secrets() {
    // Bind then drop, so the port is (very likely) closed.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let origin = format!("http://127.0.0.1:{port}");
    let mut request = Request::new(Method::Post, format!("{origin}/x?code=querysecret"));
    request.headers = vec![("authorization".into(), "Bearer headersecret".into())];
    request.body = Some(b"bodysecret".to_vec());
    let err = client()
        .fetch(&allow(&[&origin]), request)
        .await
        .unwrap_err();
    let FetchError::Unreachable(reason) = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert!(reason.contains("connection refused"), "{reason}");
    let text = format!("{err} {err:?}");
    for secret in ["querysecret", "headersecret", "bodysecret"] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn invalid_requests() {
    let p = allow(&["https://example.com"]);
    let with_header = |name: &str, value: &str| {
        let mut r = Request::new(Method::Get, "https://example.com/");
        r.headers = vec![(name.into(), value.into())];
        r
    };
    let cases = [
        Request::new(Method::Get, "not a url"),
        Request::new(Method::Get, "/relative"),
        Request::new(Method::Get, "ftp://example.com/"),
        Request::new(Method::Get, "file:///etc/passwd"),
        Request::new(Method::Get, "https://user:pw@example.com/"),
        with_header("bad name", "v"),
        with_header("", "v"),
        with_header("x-ok", "line\nbreak-secret"),
        with_header("Host", "evil.com"),
        with_header("content-length", "5"),
    ];
    for request in cases {
        let shown = format!("{request:?}");
        let err = client().fetch(&p, request).await.unwrap_err();
        let FetchError::Invalid(reason) = &err else {
            panic!("{shown}: expected Invalid, got {err:?}");
        };
        assert!(!reason.contains("secret"), "{reason}");
    }
}

#[test]
fn bad_ca_pem_is_a_clear_error() {
    let config = |pem: &[u8]| ClientConfig {
        extra_roots_pem: vec![pem.to_vec()],
        ..ClientConfig::default()
    };
    let err = Client::new(config(b"hello")).unwrap_err().to_string();
    assert!(
        err.contains("#1") && err.contains("BEGIN CERTIFICATE"),
        "{err}"
    );
    let err = Client::new(config(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unusable"), "{err}");
    let err = Client::new(config(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("private key"), "{err}");
}
