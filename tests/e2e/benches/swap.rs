//! How long switching the Salesforce plugin's active version takes (load
//! the version from the precompile cache, build its pre-instance, swap it
//! in), over 20 activations back and forth while a loop of calls runs.
//! The activation reports its own time (`swap_us`); the wall time of the
//! admin request is printed beside it.
//!
//! Run: `cargo bench -p e2e-tests --bench swap` (after `cargo xtask build`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use e2e_tests::org::{Setup, World};
use e2e_tests::{component, install_bytes, with_manifest};
use serde_json::json;

const SWAPS: usize = 20;
const TARGET_MS: f64 = 10.0;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let listing = world.api.get("/plugins").await.expect("list");
    let mut manifest = listing["plugins"][0]["manifest"].clone();
    let old = manifest["version"].as_str().expect("version").to_string();
    let new = format!("{old}-bench");
    manifest["version"] = json!(new);
    let shipped = std::fs::read(component("salesforce_plugin")).expect("plugin");
    install_bytes(&world.api, with_manifest(&shipped, &manifest))
        .await
        .expect("second version");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let runtime = world.host.state.runtime.clone();
    let loop_task = {
        let (stop, calls, failures) = (stop.clone(), calls.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = runtime.plugin("salesforce").status().await;
                calls.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut swap_us = Vec::new();
    let mut request_us = Vec::new();
    for i in 0..SWAPS {
        let version = if i % 2 == 0 { &new } else { &old };
        let sent = Instant::now();
        let done = world
            .api
            .post("/plugins/salesforce/activate", &json!({"version": version}))
            .await
            .expect("activate");
        request_us.push(sent.elapsed().as_micros() as u64);
        swap_us.push(done["swap_us"].as_u64().expect("swap_us"));
    }
    stop.store(true, Ordering::Relaxed);
    loop_task.await.expect("calls");

    let stats = |v: &mut Vec<u64>| {
        v.sort_unstable();
        (v[v.len() / 2] as f64 / 1e3, v[v.len() - 1] as f64 / 1e3)
    };
    let (median, max) = stats(&mut swap_us);
    let (req_median, req_max) = stats(&mut request_us);
    println!(
        "swap: {SWAPS} activations of the Salesforce plugin: median {median:.2} ms, max {max:.2} ms (target <= {TARGET_MS} ms) {}",
        if max <= TARGET_MS { "OK" } else { "MISSED" }
    );
    println!(
        "swap: admin request wall time median {req_median:.2} ms, max {req_max:.2} ms; {} calls ran meanwhile, {} failed",
        calls.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );
}
