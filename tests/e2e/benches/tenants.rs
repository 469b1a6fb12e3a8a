//! 1,000 tenants on one host, each with the Salesforce plugin installed and
//! configured: the idle memory each adds (RSS growth divided by tenants)
//! and the host's start-up with all of them, side by side with the same
//! host holding no tenant, in one run.
//!
//! A `pbx-host serve` process (the release build) on a fresh data
//! directory gets the tenants through the operator API; it is then stopped
//! and started again, and timed from its spawn until a request to the last
//! tenant is answered. Its RSS is read from /proc after the start-up and
//! after every tenant's first journal tick. The same is done with an empty
//! host for the baseline.
//!
//! Run: `cargo bench -p e2e-tests --bench tenants` (after `cargo xtask
//! build` and `cargo build --release -p pbx-host`; `cargo xtask bench`
//! does both).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const TENANTS: usize = 1_000;
/// Tenants set up at once.
const SET_UP_IN_FLIGHT: usize = 4;
const TARGET_MIB_PER_TENANT: f64 = 2.0;
const TARGET_START_S: f64 = 2.0;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

/// The release `pbx-host`.
fn host_binary() -> PathBuf {
    e2e_tests::release_binary("pbx-host")
}

/// A running `pbx-host serve`, stopped when dropped.
struct Host {
    child: Child,
    url: String,
    operator_token: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    /// Start it on `data_dir`; returns once it listens.
    async fn start(data_dir: &Path) -> Host {
        let url_file = data_dir.join(pbx_host::server::ADMIN_URL_FILE);
        let _ = std::fs::remove_file(&url_file);
        let child = Command::new(host_binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pbx-host serve starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !url_file.exists() {
            assert!(Instant::now() < deadline, "the host never listened");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let url = std::fs::read_to_string(&url_file)
            .expect("admin-url")
            .trim()
            .to_string();
        let operator_token =
            std::fs::read_to_string(data_dir.join(pbx_host::server::OPERATOR_TOKEN_FILE))
                .expect("operator token")
                .trim()
                .to_string();
        Host {
            child,
            url,
            operator_token,
        }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kib / 1024.0
    }

    /// Stop it (SIGTERM, as an operator would) and wait.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Add tenant `name` with the plugin installed and configured.
async fn add_tenant(
    client: &reqwest::Client,
    host_url: &str,
    token: &str,
    name: &str,
    plugin: Vec<u8>,
) {
    let ok = |r: reqwest::Response, what: &str| {
        assert!(r.status().is_success(), "{what} of {name}: {}", r.status());
    };
    let added = client
        .post(format!("{host_url}/operator/tenants"))
        .bearer_auth(token)
        .json(&json!({"name": name, "public_url": format!("https://{name}.pbx.example")}))
        .send()
        .await
        .expect("add");
    ok(added, "add");
    let api = format!("{host_url}/operator/tenants/{name}/api");
    let installed = client
        .post(format!("{api}/plugins"))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(plugin)
        .send()
        .await
        .expect("install");
    ok(installed, "install");
    let saved = client
        .put(format!("{api}/crm/salesforce/settings"))
        .bearer_auth(token)
        .json(&json!({"settings": [
            {"key": "consumer-key", "value": format!("3MVG9.{name}")},
            {"key": "consumer-secret", "value": "bench-secret-0123456789"},
            {"key": "login-host", "value": "my-domain"},
            {"key": "my-domain-url", "value": format!("https://{name}.my.salesforce.com")},
        ]}))
        .send()
        .await
        .expect("settings");
    ok(saved, "settings");
}

/// Start the host on `data_dir` again: (seconds until the last tenant
/// answers, RSS after start-up, RSS once idle).
async fn restart(data_dir: &Path, last: Option<&str>) -> (f64, f64, f64, Host) {
    let started = Instant::now();
    let host = Host::start(data_dir).await;
    let client = client();
    // The listener is bound before the tenants are opened and served after:
    // this answer comes once every tenant is open.
    let path = match last {
        Some(name) => format!("{}/operator/tenants/{name}/api/host", host.url),
        None => format!("{}/operator/tenants/default/api/host", host.url),
    };
    let answer = client
        .get(path)
        .bearer_auth(&host.operator_token)
        .send()
        .await
        .expect("the host answers");
    assert!(answer.status().is_success(), "{}", answer.status());
    let start_s = started.elapsed().as_secs_f64();
    let at_start = host.rss_mib();
    // Every tenant's journal ticks once at start (and calls its plugin);
    // then the host idles.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let idle = host.rss_mib();
    (start_s, at_start, idle, host)
}

async fn bench() {
    let plugin = std::fs::read(e2e_tests::component("salesforce_plugin")).expect("plugin");
    let dir = tempfile::tempdir().expect("tempdir");

    // Baseline: the host with no tenant.
    let empty = dir.path().join("empty");
    Host::start(&empty).await.stop();
    let (empty_start, empty_rss_start, empty_rss_idle, host) = restart(&empty, None).await;
    host.stop();

    // 1,000 tenants.
    let full = dir.path().join("full");
    let host = Host::start(&full).await;
    let set_up = Instant::now();
    let names: Vec<String> = (0..TENANTS).map(|n| format!("t{n:04}")).collect();
    for batch in names.chunks(SET_UP_IN_FLIGHT) {
        let client = client();
        let jobs = batch.iter().map(|name| {
            add_tenant(
                &client,
                &host.url,
                &host.operator_token,
                name,
                plugin.clone(),
            )
        });
        futures::future::join_all(jobs).await;
    }
    let set_up_s = set_up.elapsed().as_secs_f64();
    host.stop();
    let last = names.last().map(String::as_str);
    let (full_start, full_rss_start, full_rss_idle, host) = restart(&full, last).await;
    // Every tenant is served, with its plugin.
    let listed: serde_json::Value = client()
        .get(format!(
            "{}/operator/tenants/{}/api/plugins",
            host.url,
            names[TENANTS / 2]
        ))
        .bearer_auth(&host.operator_token)
        .send()
        .await
        .expect("plugins")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["plugins"][0]["active"],
        json!(listed["plugins"][0]["versions"][0]["version"]),
        "{listed}"
    );
    host.stop();

    let per_tenant_start = (full_rss_start - empty_rss_start) / TENANTS as f64;
    let per_tenant_idle = (full_rss_idle - empty_rss_idle) / TENANTS as f64;
    println!(
        "tenants: {TENANTS} tenants, each with the Salesforce plugin installed and configured (set up in {set_up_s:.0} s)"
    );
    println!("| host | start-up | RSS after start | RSS idle |");
    println!("|---|---|---|---|");
    println!(
        "| no tenant | {empty_start:.2} s | {empty_rss_start:.0} MiB | {empty_rss_idle:.0} MiB |"
    );
    println!(
        "| {TENANTS} tenants | {full_start:.2} s | {full_rss_start:.0} MiB | {full_rss_idle:.0} MiB |"
    );
    println!(
        "memory per tenant: {per_tenant_idle:.2} MiB idle ({per_tenant_start:.2} MiB right after start-up; target <= {TARGET_MIB_PER_TENANT} MiB): {}",
        verdict(per_tenant_idle <= TARGET_MIB_PER_TENANT)
    );
    println!(
        "start-up with {TENANTS} tenants: {full_start:.2} s ({:.1}x the empty host's; target <= {TARGET_START_S} s): {}",
        full_start / empty_start,
        verdict(full_start <= TARGET_START_S)
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
