//! `plugin-preinit IN OUT`: the vendor's last build step for a plugin.
//!
//! Runs the component's `wizer-initialize` export in a sandbox with no
//! capabilities (WASI with nothing granted; every `pbx:crm` import traps, so
//! nothing host-specific can leak into the snapshot), and writes a component
//! whose memory starts where the initializer left it (Wizer).
//!
//! The output must be reproducible (vendors publish its SHA-256): the
//! initializer runs twice, in two sandboxes with their own random seeds and
//! clocks, and the tool fails unless both snapshots are the same bytes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, Instance, Lift, Linker, ResourceTable, ResourceType, WasmList,
};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wizer::{ComponentContext, ComponentInstanceState, Wizer};

/// The export the initializer goes by (Wizer's convention).
const INIT: &str = "wizer-initialize";

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The plugin component as built (it must export `wizer-initialize: func()`).
    input: PathBuf,
    /// Where to write the pre-initialized component.
    output: PathBuf,
}

struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let wasm = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut wizer = Wizer::new();
    // Wizer 48 drops the core export but not the component's lift of it,
    // which leaves an invalid component; kept, calling it again only
    // re-warms what is already warm.
    wizer.keep_init_func(true);
    let (cx, instrumented) = wizer
        .instrument_component(&wasm)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| {
            format!(
                "{} is not a component Wizer can instrument",
                args.input.display()
            )
        })?;

    let engine = Engine::new(&Config::new()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let component = Component::new(&engine, &instrumented)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("compiling the instrumented component")?;
    if component.get_export_index(None, INIT).is_none() {
        bail!(
            "{} does not export `{INIT}: func()`; add it to the plugin's world",
            args.input.display()
        );
    }
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    trap_host_calls(&mut linker, &component, &engine)?;

    // Twice, each sandbox with its own random seeds and clocks read at
    // another time: a vendor publishes the SHA-256 of the snapshot, so it
    // may depend on nothing but the component.
    let init_started = Instant::now();
    let snapshot = initialize(&wizer, &cx, &linker, &component).await?;
    let init_time = init_started.elapsed();
    let again = initialize(&wizer, &cx, &linker, &component).await?;
    if snapshot != again {
        let at = snapshot
            .iter()
            .zip(&again)
            .position(|(a, b)| a != b)
            .unwrap_or(snapshot.len().min(again.len()));
        bail!(
            "two runs of `{INIT}` left different memory ({} and {} bytes, first difference at byte {at}): \
             the initializer read something that changes between runs (wasi:random, which std's \
             HashMap::new() seeds from, or a clock); warm up without it, so that the published \
             SHA-256 can be reproduced",
            snapshot.len(),
            again.len()
        );
    }
    // What is written must still be a component this engine accepts.
    Component::new(&engine, &snapshot)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("the snapshot does not compile")?;
    let tmp = args.output.with_extension("wasm.tmp");
    std::fs::write(&tmp, &snapshot).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "plugin-preinit: {} ({} KiB) -> {} ({} KiB); `{INIT}` and its snapshot took {:.0} ms, {:.1} s in all (twice)",
        args.input.display(),
        wasm.len() / 1024,
        args.output.display(),
        snapshot.len() / 1024,
        init_time.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Instantiates the instrumented component in a fresh sandbox, runs
/// `wizer-initialize` and snapshots the memory it leaves.
async fn initialize(
    wizer: &Wizer,
    cx: &ComponentContext<'_>,
    linker: &Linker<Sandbox>,
    component: &Component,
) -> anyhow::Result<Vec<u8>> {
    // A sandbox draws its random seeds when it is built.
    let mut store = Store::new(
        component.engine(),
        Sandbox {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    let instance = linker
        .instantiate_async(&mut store, component)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("instantiating the plugin")?;
    instance
        .get_typed_func::<(), ()>(&mut store, INIT)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("`{INIT}` must be `func()`"))?
        .call_async(&mut store, ())
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("`{INIT}` failed (it may not call the host)"))?;
    wizer
        .snapshot_component(
            cx,
            &mut Snapshotter {
                store: &mut store,
                instance,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("snapshotting the initialized plugin")
}

/// Every import outside WASI (the PBX's host calls) traps when called: a
/// snapshot must not hold anything one host gave it. (Linker's own
/// `define_unknown_imports_as_traps` would shadow WASI interfaces that are
/// only matched by semver, e.g. `wasi:io@0.2.12` against the host's 0.2.x.)
fn trap_host_calls(
    linker: &mut Linker<Sandbox>,
    component: &Component,
    engine: &Engine,
) -> anyhow::Result<()> {
    let wrap = |e: wasmtime::Error| anyhow::anyhow!("{e:?}");
    for (name, item) in component.component_type().imports(engine) {
        if name.starts_with("wasi:") {
            continue;
        }
        let ComponentItem::ComponentInstance(interface) = item.ty else {
            bail!("the plugin imports `{name}`, which is not an interface");
        };
        let mut instance = linker.instance(name).map_err(wrap)?;
        for (export, item) in interface.exports(engine) {
            let qualified = format!("{name}#{export}");
            match item.ty {
                ComponentItem::ComponentFunc(_) => instance
                    .func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("`{qualified}` was called during pre-initialization")
                    })
                    .map_err(wrap)?,
                ComponentItem::Resource(_) => instance
                    .resource(export, ResourceType::host::<Stub>(), |_, _| Ok(()))
                    .map_err(wrap)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The host type behind stubbed resources; never constructed.
struct Stub;

/// Lets Wizer read the instance's memories and globals through the accessor
/// exports its instrumentation added.
struct Snapshotter<'a> {
    store: &'a mut Store<Sandbox>,
    instance: Instance,
}

impl Snapshotter<'_> {
    async fn call<R: Lift + Send + Sync + 'static, O>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<Sandbox>, R) -> O,
    ) -> O {
        // The accessors are generated by Wizer's own instrumentation, so a
        // missing or mistyped one is a bug in Wizer, not bad input.
        let parent = self
            .instance
            .get_export_index(&mut *self.store, None, instance)
            .unwrap_or_else(|| panic!("Wizer's accessor instance {instance} is missing"));
        let index = self
            .instance
            .get_export_index(&mut *self.store, Some(&parent), func)
            .unwrap_or_else(|| panic!("Wizer's accessor {instance}#{func} is missing"));
        let typed = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, index)
            .unwrap_or_else(|e| panic!("Wizer's accessor {func} has another type: {e:?}"));
        let (value,) = typed
            .call_async(&mut *self.store, ())
            .await
            .unwrap_or_else(|e| panic!("Wizer's accessor {func} trapped: {e:?}"));
        read(self.store, value)
    }
}

impl ComponentInstanceState for Snapshotter<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.call(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(store))
        })
        .await
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, v: i32| v).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, v: i64| v).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, v: f32| v.to_bits()).await
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, v: f64| v.to_bits()).await
    }
}
