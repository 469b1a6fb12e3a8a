//! The data of one plugin instance's wasmtime store: WASI with nothing
//! granted, the memory limiter, and the instance's capabilities.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;
use crate::capabilities::Capabilities;

/// What a plugin instance's store holds.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap, and whether the current call hit it.
    pub limiter: MemoryLimiter,
    /// What the plugin may use, and what its current call used.
    pub caps: Capabilities,
}

impl PluginState {
    /// State for one instance: WASI with nothing granted (no preopens, no
    /// environment, no arguments, no network), stdout and stderr captured.
    pub fn new(
        caps: Capabilities,
        memory_cap: usize,
        stdout: MemoryOutputPipe,
        stderr: MemoryOutputPipe,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_cap),
            caps,
        }
    }

    /// Clears what is counted per call, for an instance that serves another.
    pub fn begin_call(&mut self) {
        self.limiter.hit = false;
        self.caps.begin_call();
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
