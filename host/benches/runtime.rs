//! Runtime benchmarks, printed side by side in one run: compile vs
//! precompile-cache load of the Salesforce plugin (as shipped,
//! pre-initialized), instantiation per call with a fresh store per call,
//! and a call on a warm instance (the default).
//!
//! Run with `cargo xtask bench` (it builds the components first).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_host::capabilities::Services;
use pbx_host::capabilities::browser::BrowserRequests;
use pbx_host::directory::Directory;
use pbx_host::outbound;
use pbx_host::runtime::{Limits, Runtime};
use pbx_host::store::{Quota, Store};

fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The shipped plugin (`cargo xtask build` writes it to target/plugins).
fn shipped_plugin() -> PathBuf {
    target_dir().join("plugins").join("salesforce_plugin.wasm")
}

/// A component as cargo built it (not pre-initialized).
fn built(name: &str) -> PathBuf {
    target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

fn runtime(dir: &Path) -> anyhow::Result<Runtime> {
    runtime_with(dir, Limits::default())
}

fn runtime_with(dir: &Path, limits: Limits) -> anyhow::Result<Runtime> {
    let store = Store::open(dir)?;
    let services = Arc::new(Services {
        http: outbound::Client::new(outbound::ClientConfig::default())?,
        browser: BrowserRequests::new(false),
        directory: Directory::new(store.namespace("host/extensions", Quota::UNLIMITED)),
    });
    Runtime::new(dir, store, services, limits, Default::default())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let plugin = std::fs::read(shipped_plugin())
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

    let mut alone_us: Vec<f64> = Vec::new();
    // A fresh store and instance per call (`reuse_instances: false`): what
    // instantiation costs, for the shipped plugin and for components
    // without a pre-initialized memory image.
    for (name, bytes) in [
        (
            "shipped salesforce_plugin (pre-initialized)",
            plugin.clone(),
        ),
        (
            "salesforce_plugin as built, not pre-initialized",
            std::fs::read(built("salesforce_plugin"))?,
        ),
        ("fixture_probe", std::fs::read(built("fixture_probe"))?),
    ] {
        let dir = tempfile::tempdir()?;
        let fresh = runtime_with(
            dir.path(),
            Limits {
                reuse_instances: false,
                ..Limits::default()
            },
        )?;
        let id = fresh.install(&bytes)?.manifest.id;
        for _ in 0..200 {
            describe(&fresh, &id).await?;
        }
        // Instantiation on its own: a fresh store and instance per call,
        // with a call that does nothing, as wasmtime's instantiation
        // benchmarks measure it.
        let (alone, _) = fresh_calls(&fresh, &id, false).await?;
        // The same with a describe call between instantiations: the call's
        // page faults and the slot's reset leave the caches cold for the
        // next instantiation, which the figure shows.
        let (beside, whole) = fresh_calls(&fresh, &id, true).await?;
        alone_us.push(alone);
        println!(
            "runtime: instantiation per call with a fresh store per call ({:?} allocator), {name}: {alone:.1} us (target <= 10 us); between describe calls {beside:.1} us, whole call with describe {whole:.1} us",
            fresh.allocation(),
        );
    }

    // Side by side: the shipped plugin against a component that holds
    // next to nothing, whose instantiation is this machine's floor (the
    // WASI imports both bind and the pool's slot), in the same run.
    if let [shipped, _, probe] = alone_us[..] {
        println!(
            "runtime: instantiation, shipped plugin / fixture_probe = {:.2} ({shipped:.1} us / {probe:.1} us)",
            shipped / probe
        );
    }

    // The default: calls reuse a warm instance.
    let dir = tempfile::tempdir()?;
    let warm = runtime(dir.path())?;
    warm.install(&plugin)?;
    for _ in 0..200 {
        describe(&warm, "salesforce").await?;
    }
    let started = Instant::now();
    for _ in 0..CALLS {
        describe(&warm, "salesforce").await?;
    }
    let warm_call = started.elapsed() / CALLS;
    let stats = warm.stats();
    println!(
        "runtime: call on a warm instance (the default), describe: {:.1} us per call; {} instance(s) for {} calls, so instantiation per call amortizes to {:.3} us",
        warm_call.as_secs_f64() * 1e6,
        stats.instantiations,
        stats.calls,
        stats.instantiation_ns as f64 / stats.calls.max(1) as f64 / 1e3
    );
    Ok(())
}

const CALLS: u32 = 2_000;

/// Instantiation per call in µs over `CALLS` fresh-store calls, and the
/// whole call in µs; with `describe` each call runs `integration.describe`,
/// else nothing.
async fn fresh_calls(rt: &Runtime, id: &str, describe_too: bool) -> anyhow::Result<(f64, f64)> {
    let before = rt.stats();
    let started = Instant::now();
    for _ in 0..CALLS {
        if describe_too {
            describe(rt, id).await?;
        } else {
            rt.plugin(id).prewarm().await?;
        }
    }
    let whole = started.elapsed() / CALLS;
    let after = rt.stats();
    let made = after.instantiations - before.instantiations;
    let instantiate_us =
        (after.instantiation_ns - before.instantiation_ns) as f64 / made.max(1) as f64 / 1e3;
    Ok((instantiate_us, whole.as_secs_f64() * 1e6))
}

async fn describe(rt: &Runtime, id: &str) -> anyhow::Result<()> {
    rt.plugin(id).describe().await?;
    Ok(())
}
