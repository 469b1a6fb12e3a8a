//! Runtime benchmarks, printed side by side in one run:
//! compile vs precompile-cache load of the Salesforce plugin, and the cost
//! of one call (fresh store + instantiate + a trivial export).
//!
//! Run with `cargo xtask bench` (it builds the components first).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_host::capabilities::Services;
use pbx_host::capabilities::browser::BrowserRequests;
use pbx_host::capabilities::directory::Directory;
use pbx_host::outbound;
use pbx_host::runtime::{Limits, Runtime};
use pbx_host::store::{Quota, Store};

fn component(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

fn runtime(dir: &Path) -> anyhow::Result<Runtime> {
    let store = Store::open(dir)?;
    let services = Arc::new(Services {
        http: outbound::Client::new(outbound::ClientConfig::default())?,
        browser: BrowserRequests::new(false),
        directory: Directory::new(store.namespace("host/extensions", Quota::UNLIMITED)),
    });
    Runtime::new(dir, store, services, Limits::default(), Default::default())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let plugin = std::fs::read(component("salesforce_plugin"))
        .map_err(|e| anyhow::anyhow!("build the components first (cargo xtask build): {e}"))?;

    // Compile (fresh data dir each time) vs load from the cache.
    let mut compiles = Vec::new();
    let mut loads = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir()?;
        {
            let rt = runtime(dir.path())?;
            let started = Instant::now();
            rt.install(&plugin)?;
            compiles.push(started.elapsed());
        }
        let rt = runtime(dir.path())?;
        let started = Instant::now();
        rt.load_installed()?;
        loads.push(started.elapsed());
        assert_eq!(rt.stats().cache_loads, 1);
    }
    let (compile, load) = (median(compiles), median(loads));
    println!(
        "runtime: install+compile {:.1} ms, load from precompile cache {:.2} ms, ratio 1/{:.0} (target <= 1/100)",
        compile.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
        compile.as_secs_f64() / load.as_secs_f64()
    );

    // One call: a fresh store, instantiate, get-status.
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path())?;
    rt.install(&plugin)?;
    let calls = 2_000;
    for _ in 0..100 {
        rt.call("salesforce", |p, s| Box::pin(p.describe(s)))
            .await?;
    }
    let started = Instant::now();
    for _ in 0..calls {
        rt.call("salesforce", |p, s| Box::pin(p.describe(s)))
            .await?;
    }
    let per_call = started.elapsed() / calls;
    println!(
        "runtime: fresh store + instantiate + describe: {:.1} us per call over {calls} calls",
        per_call.as_secs_f64() * 1e6
    );
    Ok(())
}
