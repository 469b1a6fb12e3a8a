//! Automatic association of 100,000 users × 100,000 extensions: the plugin's
//! matching inside a component on the host's engine, side by side with the
//! same code compiled natively. Targets: wasm ≤ 1.3 × native and ≤ 100 ms.

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

const USERS: u32 = 100_000;
const EXTENSIONS: u32 = 100_000;
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bytes = std::fs::read(e2e_tests::component("fixture_assoc_bench"))?;
    let (engine, _) = pbx_host::runtime::engine::new_engine(64 << 20)?;
    let component = Component::new(&engine, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut native = Vec::new();
    let mut wasm = Vec::new();
    let mut matches = (0, 0);
    for _ in 0..RUNS {
        let (ns, n) = fixture_assoc_bench::run(USERS, EXTENSIONS);
        native.push(Duration::from_nanos(ns));
        matches.0 = n;

        let mut store = Store::new(
            &engine,
            State {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let run = instance
            .get_typed_func::<(u32, u32), ((u64, u64),)>(&mut store, "run")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ((ns, n),) = run
            .call_async(&mut store, (USERS, EXTENSIONS))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        wasm.push(Duration::from_nanos(ns));
        matches.1 = n;
    }
    assert_eq!(matches.0, matches.1, "wasm and native must agree");
    let (native, wasm) = (median(native), median(wasm));
    println!(
        "association: {USERS} users x {EXTENSIONS} extensions, {} matches: native {:.1} ms, in the plugin (wasm) {:.1} ms, ratio {:.2} (target <= 1.30, and <= 100 ms)",
        matches.0,
        native.as_secs_f64() * 1e3,
        wasm.as_secs_f64() * 1e3,
        wasm.as_secs_f64() / native.as_secs_f64()
    );
    Ok(())
}
