//! The host side of the WIT contract: generated bindings, the per-call store
//! data, and one file per host interface the plugin imports.

pub mod browser;
pub mod directory;
pub mod http;
pub mod kv;
pub mod log;
pub mod v0_1_0;

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::StoreLimits;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::outbound;
use crate::store::Namespace;

// The newest contract: these bindings are the host's implementation of
// every capability. Older versions are served by shims that convert and
// delegate to it (`v0_1_0`), and `runtime::instance` calls either version's
// exports.
wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit/v0.2.0",
    // A directory that cannot be read fails the call instead of looking
    // empty: an empty directory would make a plugin mark associations stale.
    imports: { "pbx:crm/directory": async | trappable, default: async },
    exports: { default: async },
    // The admin API speaks these types as JSON (docs/API.md).
    additional_derives: [serde::Serialize, serde::Deserialize],
});

pub use exports::pbx::crm::{calls as calls_export, integration as integration_export};

/// Adds the imports of every served `pbx:crm` version to `linker`; each
/// version's names carry their version, so they sit side by side.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_1_0::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

/// Host services shared by every plugin and every call.
pub struct Services {
    /// The outbound HTTP client.
    pub http: outbound::Client,
    /// Pages plugins asked to open.
    pub browser: browser::BrowserRequests,
    /// The PBX's extensions.
    pub directory: directory::Directory,
}

/// What one plugin may use; built at load time from its manifest and the
/// operator's grants, shared by all of its calls.
pub struct Grants {
    /// The plugin id.
    pub plugin_id: String,
    /// Its kv-store namespace.
    pub kv: Namespace,
    /// Where it may send HTTP.
    pub http: outbound::Policy,
}

/// The data of one call's wasmtime store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) grants: Arc<Grants>,
    pub(crate) services: Arc<Services>,
    /// Time this call spent in `http-fetch`.
    pub(crate) http_time: std::time::Duration,
    /// How many `http-fetch` calls it made.
    pub(crate) http_fetches: u32,
}

impl PluginState {
    /// State for one call: WASI with nothing granted (no preopens, no
    /// environment, no arguments, no network), stdout and stderr captured.
    pub fn new(
        grants: Arc<Grants>,
        services: Arc<Services>,
        memory_cap: usize,
        stdout: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
        stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
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
            grants,
            services,
            http_time: std::time::Duration::ZERO,
            http_fetches: 0,
        }
    }
}

impl PluginState {
    /// Clears what is counted per call, for a store that serves another.
    pub(crate) fn begin_call(&mut self) {
        self.limiter.hit = false;
        self.http_time = std::time::Duration::ZERO;
        self.http_fetches = 0;
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

impl pbx::crm::types::Host for PluginState {}

/// `StoreLimits` plus a note of whether it refused a memory growth, so a
/// failed call can be reported as "memory limit" whatever way the guest
/// died of it (an allocation-failure abort, or a trap).
pub struct MemoryLimiter {
    limits: StoreLimits,
    /// The cap in bytes.
    pub cap: usize,
    /// Whether a growth was refused during this call.
    pub hit: bool,
}

impl MemoryLimiter {
    fn new(cap: usize) -> Self {
        Self {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(cap)
                .instances(16)
                .tables(64)
                .memories(4)
                .build(),
            cap,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
