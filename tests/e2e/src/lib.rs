//! Helpers for the end-to-end tests in `tests/`: start a real host on a free
//! port with its own data directory, find the components xtask built, drive
//! the probe plugin, and count connections on local listeners.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pbx_host::cli::AdminClient;
use pbx_host::config::{FileConfig, HostConfig};
use pbx_host::server::RunningHost;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A component built by `cargo xtask build`, e.g. `salesforce_plugin`: the
/// shipped (pre-initialized) form in `target/plugins` when there is one,
/// else cargo's output (the test fixtures).
pub fn component(name: &str) -> PathBuf {
    let target = target_dir();
    let shipped = target.join("plugins").join(format!("{name}.wasm"));
    if shipped.exists() {
        return shipped;
    }
    let path = target
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test` (it builds the components first)",
        path.display()
    );
    path
}

/// A binary built by `cargo xtask build`, e.g. `pbx-host`.
pub fn binary(name: &str) -> PathBuf {
    let target = target_dir();
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test` (it builds the binaries first)",
        path.display()
    );
    path
}

/// The release build of a binary, e.g. `pbx-host` (for the benchmarks;
/// `cargo xtask bench` builds it).
pub fn release_binary(name: &str) -> PathBuf {
    let path = target_dir().join("release").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release -p pbx-host` (cargo xtask bench does)",
        path.display()
    );
    path
}

/// Host settings for a test.
#[derive(Default, Clone)]
pub struct Options {
    /// `PLUGIN_ID=PATTERN` grants.
    pub grants: Vec<String>,
    /// `--store`: a Redis URL, or the embedded store when `None`.
    pub store: Option<String>,
    /// Per-call deadline.
    pub deadline_ms: Option<u64>,
    /// Outbound response cap.
    pub max_response_mib: Option<u64>,
    /// Memory cap.
    pub memory_mib: Option<usize>,
    /// Extra trusted CA files.
    pub trust_ca: Vec<PathBuf>,
    /// Outbound HTTP time limit.
    pub http_timeout_ms: Option<u64>,
    /// Trusted vendor keys, `KEY_ID=BASE64`.
    pub trusted_keys: Vec<String>,
    /// Refuse unsigned plugins.
    pub require_signature: bool,
    /// How often the call journal ticks (`--journal-interval-ms`).
    pub journal_interval_ms: Option<u64>,
    /// The call journal's bounds (`--journal-queue-max`, …).
    pub journal_queue_max: Option<usize>,
    /// `--journal-max-attempts`.
    pub journal_max_attempts: Option<u32>,
    /// `--journal-dead-letters-max`.
    pub journal_dead_letters_max: Option<usize>,
    /// The PBX's time zone (`--time-zone`), an IANA name.
    pub time_zone: Option<String>,
}

/// Start a host serving `data_dir`.
pub async fn start_host(data_dir: &Path, options: Options) -> RunningHost {
    let config = HostConfig::from_file(FileConfig {
        data_dir: Some(data_dir.to_path_buf()),
        store: options.store,
        listen: Some("127.0.0.1:0".parse().expect("static address")),
        grant: options.grants,
        deadline_ms: options.deadline_ms,
        max_response_mib: options.max_response_mib,
        memory_mib: options.memory_mib,
        trust_ca: options.trust_ca,
        http_timeout_ms: options.http_timeout_ms,
        trusted_key: options.trusted_keys,
        require_signature: Some(options.require_signature),
        journal_interval_ms: options.journal_interval_ms,
        journal_queue_max: options.journal_queue_max,
        journal_max_attempts: options.journal_max_attempts,
        journal_dead_letters_max: options.journal_dead_letters_max,
        time_zone: options.time_zone,
        ..FileConfig::default()
    })
    .expect("test host config is valid");
    pbx_host::server::start(config)
        .await
        .expect("the host starts")
}

/// A host in its own temp data directory with the probe fixture installed:
/// (the directory, kept alive; the host; its admin API).
pub async fn probe_host(options: Options) -> (tempfile::TempDir, RunningHost, AdminClient) {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), options).await;
    let api = admin(&host);
    install(&api, "fixture_probe")
        .await
        .expect("probe installs");
    (dir, host, api)
}

/// The admin API client of `host`.
pub fn admin(host: &RunningHost) -> AdminClient {
    AdminClient::new(host.url(), host.admin_token.clone()).expect("the admin client builds")
}

/// Install a built component; returns the API's answer or its error text.
pub async fn install(client: &AdminClient, name: &str) -> Result<Value, String> {
    let bytes = std::fs::read(component(name)).map_err(|e| e.to_string())?;
    install_bytes(client, bytes).await
}

/// Install raw bytes.
pub async fn install_bytes(client: &AdminClient, bytes: Vec<u8>) -> Result<Value, String> {
    client
        .post_bytes("/plugins", bytes)
        .await
        .map_err(|e| format!("{e:#}"))
}

/// Run one probe command (see tests/fixtures/probe); Ok is the probe's
/// answer, Err the host's error message.
pub async fn probe(
    client: &AdminClient,
    plugin: &str,
    command: &str,
    arg: &str,
) -> Result<String, String> {
    client
        .put(
            &format!("/crm/{plugin}/settings"),
            &json!({"settings": [{"key": command, "value": arg}]}),
        )
        .await
        .map(|v| {
            v["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .map_err(|e| format!("{e:#}"))
}

/// The SHA-256 of `bytes` in hex, as vendors publish it for `--sha256`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A copy of `component` with a manifest section appended at the top level,
/// which the host prefers over the embedded one (a vendor's packaging step).
pub fn with_manifest(component: &[u8], manifest: &Value) -> Vec<u8> {
    pbx_host::runtime::inspect::append_custom_section(
        component,
        pbx_host::runtime::manifest::SECTION,
        manifest.to_string().as_bytes(),
    )
}

/// A local HTTP listener that numbers the connections it accepts and answers
/// each with a fixed response. `connections_before_now` tells, without
/// sleeping, how many connections arrived before the call.
pub struct CountingServer {
    /// Its address.
    pub port: u16,
    accepted: Arc<AtomicU64>,
}

impl CountingServer {
    /// Answer every request with `status`, extra header lines and `body_len` bytes.
    pub async fn start(status: &str, headers: &[String], body_len: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let head = format!(
            "HTTP/1.1 {status}\r\n{}content-length: {body_len}\r\nconnection: close\r\n",
            headers
                .iter()
                .map(|h| format!("{h}\r\n"))
                .collect::<String>()
        );
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let head = head.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let response = format!("{head}x-accept-number: {n}\r\n\r\n");
                    let _ = socket.write_all(response.as_bytes()).await;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if socket.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        Self { port, accepted }
    }

    /// The number of connections accepted before this check. It connects
    /// once more itself: accepts are in arrival order, so the number this
    /// connection gets, minus one, counts every earlier connection.
    pub async fn connections_before_now(&self) -> u64 {
        let mut socket = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to the counting server");
        socket
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&head);
        let n: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("x-accept-number: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("the counting server numbers its answers");
        let _ = self.accepted.load(Ordering::SeqCst);
        n - 1
    }
}

pub mod browser;
pub mod hubspot;
pub mod org;

/// Every file below `dir`, recursively (for "no secret in the data directory").
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Where tests keep artifacts (screenshots): target/artifacts.
pub fn artifacts_dir() -> PathBuf {
    target_dir().join("artifacts")
}

/// The workspace's target directory (a relative CARGO_TARGET_DIR is taken
/// from the workspace root, as cargo does).
fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `pbx-host ARGS`, with `--data-dir` when one is given.
pub fn pbx_at(data_dir: Option<&Path>, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut command = Command::new(binary("pbx-host"));
    command.args(args);
    if let Some(dir) = data_dir {
        command.arg("--data-dir").arg(dir);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pbx-host runs");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("pbx-host ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `METHOD /api{path}` with the admin token and an optional JSON body, for
/// tests that check the status and the error's `kind` and `field` (which
/// `AdminClient` folds into its message); (HTTP status, body or null).
pub async fn api_call(
    host: &RunningHost,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/api{path}", host.url()))
        .bearer_auth(&host.admin_token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the host answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The administrator's portal login at `host` with the admin token: a
/// client that follows no redirect, and the session cookie (`name=value`)
/// to send along.
pub async fn portal_session(host: &RunningHost) -> (reqwest::Client, String) {
    let portal = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = portal
        .post(format!("{}/login", host.url()))
        .form(&[("token", host.admin_token.as_str())])
        .send()
        .await
        .expect("login");
    let session = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    (portal, session)
}
