//! The one wasmtime Engine of a host process, its epoch ticker, and what
//! guest code does on a tick: yield to the executor, or stop at the
//! call's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, UpdateDeadline};

use super::state::PluginState;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Plugin instances that can be alive at once with the pooling allocator;
/// calls beyond this wait for a slot (see `Runtime`).
pub const POOL_INSTANCES: u32 = 128;

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Pre-reserved slots, reused call after call: instantiation maps
    /// nothing, and a slot is reset by copying back only the pages the last
    /// call dirtied (Linux `PAGEMAP_SCAN`), so the next call takes no page
    /// faults on the pre-initialized memory image.
    Pooling,
    /// Memory mapped and unmapped per instance: the fallback when the pool's
    /// address space cannot be reserved (e.g. under a tight `ulimit -v`).
    OnDemand,
}

/// An engine for async component calls with epoch interruption, with the
/// pooling allocator when it can be had. `memory` is the per-instance
/// linear memory cap.
pub fn new_engine(memory: usize) -> anyhow::Result<(Engine, Allocation)> {
    match Engine::new(&config(Some(memory))) {
        Ok(engine) => Ok((engine, Allocation::Pooling)),
        Err(e) => {
            tracing::warn!(
                "the pooling allocator could not reserve its slots ({e}); instances are allocated on demand"
            );
            let engine = Engine::new(&config(None))
                .map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e}"))?;
            Ok((engine, Allocation::OnDemand))
        }
    }
}

fn config(pool_memory: Option<usize>) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Keep a runaway recursion's cost small.
        .max_wasm_stack(1 << 20);
    if let Some(memory) = pool_memory {
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_INSTANCES)
            // A component is several core instances (its modules and the
            // adapters wit-component adds); most have one memory.
            .max_core_instances_per_component(32)
            .total_core_instances(POOL_INSTANCES * 8)
            .max_memories_per_component(4)
            .total_memories(POOL_INSTANCES * 2)
            .max_tables_per_component(8)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(memory)
            // Reset by copying back what a call dirtied, up to this much,
            // instead of dropping the pages and faulting them in again.
            .linear_memory_keep_resident(16 << 20)
            // Tables too: the element segment wit-component's fixup module
            // writes into the shim's table at every instantiation would
            // otherwise fault in a page that the last reset gave back with
            // `madvise` (and that `madvise` flushes every CPU's TLB). Only
            // the table's own size is reset, so this costs a few pages.
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(256 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(pool);
    }
    config
}

/// What a running call does on every epoch tick: past its hard stop
/// (`PluginState::stop_at`) the guest is interrupted (a `Trap::Interrupt`,
/// reported as the deadline); before it, it yields to the async executor
/// and runs on for one more tick. Without the yield, a CPU-bound call
/// would hold its tokio worker until the deadline, and a few of them would
/// stall every request of the host. `tokio::task::yield_now` (rather than
/// a plain wake) puts the call behind the I/O driver and the other tasks.
pub fn on_epoch_tick(
    store: wasmtime::StoreContextMut<'_, PluginState>,
) -> wasmtime::Result<UpdateDeadline> {
    match store.data().stop_at {
        Some(stop_at) if Instant::now() < stop_at => Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        )),
        _ => Ok(UpdateDeadline::Interrupt),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Start ticking `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
