//! The data of one plugin instance's wasmtime store: WASI with nothing
//! granted, the memory limiter, the current call's hard stop, and the
//! instance's capabilities.

use std::time::Instant;

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
    /// When the current call's guest code is stopped (its deadline): the
    /// epoch callback yields to the executor on every tick before it and
    /// interrupts the guest after it.
    pub stop_at: Option<Instant>,
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
            stop_at: None,
        }
    }

    /// Clears what is counted per call, for an instance that serves
    /// another, and sets the call's hard stop.
    pub fn begin_call(&mut self, stop_at: Instant) {
        self.limiter.hit = false;
        self.stop_at = Some(stop_at);
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
