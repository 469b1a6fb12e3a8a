//! What every runtime of one host process shares, however many runtimes
//! it has (one per PBX it serves): the wasmtime engine with its pooling
//! allocator and epoch ticker, the linker, the warm-instance pool (its
//! turns and idle count stand for the engine's instance slots, which all
//! runtimes draw on), and the compiled components by file and grants, so a
//! plugin version is compiled and loaded once per process.
//!
//! What a runtime keeps of its own, its registry, store, services and
//! loaded versions with their warm instances, is its PBX's: an instance
//! belongs to one loaded version, whose grants carry that PBX's kv
//! namespace, so an instance never serves another runtime's call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::engine::{self, Allocation, EpochTicker};
use super::limits::Limits;
use super::pool::Pool;
use super::registry::Registry;
use super::state::PluginState;
use super::wit;
use crate::store::KvError;

/// The engine, linker, pool and compiled components of a host process.
pub struct SharedEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<PluginState>,
    pub(super) allocation: Allocation,
    pub(super) pool: Pool,
    /// Compiled components by `<sha256>-<grants digest>` (the precompile
    /// cache's key), for as long as a version of that file is installed.
    components: Mutex<HashMap<String, Component>>,
    /// The registry of every runtime on this engine, by store scope: a
    /// plugin file under the shared data directory is in use while any of
    /// them lists it.
    registries: Mutex<HashMap<String, Registry>>,
    _ticker: EpochTicker,
}

impl SharedEngine {
    /// An engine capping each instance's memory at `limits.memory`, and a
    /// pool reusing instances when `limits.reuse_instances`.
    pub fn new(limits: &Limits) -> anyhow::Result<Arc<SharedEngine>> {
        let (engine, allocation) = engine::new_engine(limits.memory)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        wit::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link the pbx:crm interfaces: {e}"))?;
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|e| anyhow::anyhow!("cannot start the deadline ticker: {e}"))?;
        Ok(Arc::new(SharedEngine {
            engine,
            linker,
            allocation,
            pool: Pool::new(limits.reuse_instances),
            components: Mutex::new(HashMap::new()),
            registries: Mutex::new(HashMap::new()),
            _ticker: ticker,
        }))
    }

    fn components(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        self.components.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The component compiled here before for `key`.
    pub(super) fn component(&self, key: &str) -> Option<Component> {
        self.components().get(key).cloned()
    }

    /// Keep `component` for `key` (a clone is a reference).
    pub(super) fn keep_component(&self, key: String, component: &Component) {
        self.components().insert(key, component.clone());
    }

    fn registries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registry>> {
        self.registries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count `registry` (of the runtime on store scope `scope`) among those
    /// whose files are in use.
    pub(super) fn add_registry(&self, scope: &str, registry: Registry) {
        self.registries().insert(scope.to_string(), registry);
    }

    /// Stop counting the registry of store scope `scope` (its tenant was
    /// removed).
    pub fn remove_registry(&self, scope: &str) {
        self.registries().remove(scope);
    }

    /// Whether any runtime on this engine has a version of file `sha256`
    /// installed.
    pub(super) fn file_in_use(&self, sha256: &str) -> Result<bool, KvError> {
        let registries: Vec<Registry> = self.registries().values().cloned().collect();
        for registry in registries {
            if registry.has_file(sha256)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Forget every compiled form of file `sha256`.
    pub(super) fn forget_components(&self, sha256: &str) {
        self.components().retain(|key, _| !key.starts_with(sha256));
    }
}
