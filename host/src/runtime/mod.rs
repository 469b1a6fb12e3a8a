//! The plugin runtime: the installed plugins' active versions and calls
//! into them, on the process's one wasmtime Engine (`shared`). Callers hold a typed [`PluginHandle`]
//! (`runtime.plugin(id).save_settings(values).await`) and never see a
//! wasmtime store. One file per question:
//!
//! - `handle`: the typed handle, one method per export;
//! - `call`: making a call (deadline, memory cap, timing, errors);
//! - `pool`: warm instances and turns for running calls;
//! - `lifecycle`: install, activate, roll back, remove, migrate, load;
//! - `grants`: host and kv-store grants, and what a version waits for;
//! - `cache`: the precompile cache;
//! - `versions`: what installs, activations and listings report;
//! - `limits`, `state`, `engine`: what a call runs under and in;
//! - `shared`: the engine, pool and compiled components every runtime of
//!   the process shares;
//! - `wit`: the served contract versions, one file each;
//! - `inspect`, `manifest`, `signature`, `registry`: checking a file and
//!   recording what is installed.

mod cache;
mod call;
pub mod engine;
pub mod fleet;
mod grants;
mod handle;
pub mod inspect;
mod lifecycle;
mod limits;
pub mod manifest;
mod pool;
pub mod registry;
mod shared;
pub mod signature;
mod state;
mod versions;
pub mod wit;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use call::{CallError, CallTiming};
pub use handle::{PluginCall, PluginHandle};
pub use limits::{Limits, MemoryLimiter};
pub use shared::SharedEngine;
pub use state::PluginState;
pub use versions::{
    Activate, Activation, InstallError, InstallOptions, InstallReport, InstalledPlugin,
    PluginListing, VersionListing,
};

use crate::capabilities::Services;
use crate::outbound::HostPattern;
use crate::store::{self, Quota};
use pool::Loaded;

/// What the runtime reports about its work (for tests and operators).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Components compiled with Cranelift.
    pub compiled: u64,
    /// Components loaded from the precompile cache.
    pub cache_loads: u64,
    /// Plugin instances created (a call reuses an idle one when it can).
    #[serde(default)]
    pub instantiations: u64,
    /// Time spent creating them, in nanoseconds (with the store's set-up).
    #[serde(default)]
    pub instantiation_ns: u64,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed with a trap, deadline or memory limit.
    pub failed_calls: u64,
}

#[derive(Default)]
struct Counters {
    compiled: AtomicU64,
    cache_loads: AtomicU64,
    instantiations: AtomicU64,
    instantiation_ns: AtomicU64,
    calls: AtomicU64,
    failed_calls: AtomicU64,
}

/// The plugin runtime of one host process.
pub struct Runtime {
    /// The engine, pool and compiled components, shared with the process's
    /// other runtimes.
    shared: Arc<SharedEngine>,
    services: Arc<Services>,
    store: store::Store,
    registry: registry::Registry,
    trust: signature::Trust,
    /// Serializes changes to what is installed and active (install,
    /// activate, rollback, remove, grant); calls never take it.
    changes: std::sync::Mutex<()>,
    plugins_dir: PathBuf,
    cache_dir: PathBuf,
    /// The SHA-256 of each precompile cache file, by file name, recorded
    /// when the host wrote it (see `cache`).
    precompiled: store::Namespace,
    limits: Limits,
    grants: HashMap<String, Vec<HostPattern>>,
    /// The active version of each plugin id; a call holds the one it
    /// started with, so a swap never disturbs it.
    loaded: RwLock<HashMap<String, Arc<Loaded>>>,
    /// Plugins active in the registry whose first load here is under way
    /// (see `fleet`).
    lagging: std::sync::Mutex<std::collections::HashSet<String>>,
    counters: Counters,
}

impl Runtime {
    /// A runtime keeping plugins under `data_dir`, with the operator's grants
    /// (plugin id to patterns).
    pub fn new(
        data_dir: &Path,
        store: store::Store,
        services: Arc<Services>,
        limits: Limits,
        grants: HashMap<String, Vec<HostPattern>>,
    ) -> anyhow::Result<Self> {
        let shared = SharedEngine::new(&limits)?;
        Self::sharing(shared, data_dir, store, services, limits, grants)
    }

    /// A runtime on `shared`, the engine, pool and compiled components of
    /// the process, which other runtimes (other PBXs) use too: a version
    /// installed in several is compiled once. The engine's memory cap and
    /// instance reuse are `shared`'s; `limits` gives the rest.
    pub fn sharing(
        shared: Arc<SharedEngine>,
        data_dir: &Path,
        store: store::Store,
        services: Arc<Services>,
        limits: Limits,
        grants: HashMap<String, Vec<HostPattern>>,
    ) -> anyhow::Result<Self> {
        let plugins_dir = data_dir.join("plugins");
        let cache_dir = data_dir.join("cache");
        for dir in [&plugins_dir, &cache_dir] {
            crate::files::create_private_dir(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let registry = registry::Registry::new(
            store.namespace("host/plugins", Quota::UNLIMITED),
            store.namespace("host/grants", Quota::UNLIMITED),
        );
        // The files and the compiled forms under `data_dir` are the
        // process's, whichever runtime installed them: what is in use is
        // asked of every runtime on `shared`, and their records are the
        // host's own, not one tenant's.
        shared.add_registry(store.scope(), registry.clone());
        Ok(Self {
            registry,
            precompiled: store.root().namespace(
                &cache::records_namespace(&cache_dir, store.is_shared())
                    .map_err(|e| anyhow::anyhow!("cannot keep {}: {e}", cache_dir.display()))?,
                Quota::UNLIMITED,
            ),
            trust: signature::Trust::default(),
            changes: std::sync::Mutex::new(()),
            store,
            shared,
            services,
            plugins_dir,
            cache_dir,
            limits,
            grants,
            loaded: RwLock::new(HashMap::new()),
            lagging: Default::default(),
            counters: Counters::default(),
        })
    }

    /// How instances are allocated (pooling unless it was unavailable).
    pub fn allocation(&self) -> engine::Allocation {
        self.shared.allocation
    }

    /// The limits calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counters for operators and tests.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            compiled: self.counters.compiled.load(Ordering::Relaxed),
            cache_loads: self.counters.cache_loads.load(Ordering::Relaxed),
            instantiations: self.counters.instantiations.load(Ordering::Relaxed),
            instantiation_ns: self.counters.instantiation_ns.load(Ordering::Relaxed),
            calls: self.counters.calls.load(Ordering::Relaxed),
            failed_calls: self.counters.failed_calls.load(Ordering::Relaxed),
        }
    }

    /// The vendor keys trusted and whether files must be signed (from the
    /// configuration; set before serving).
    pub fn set_trust(&mut self, trust: signature::Trust) {
        self.trust = trust;
    }

    /// The active plugins, by id.
    pub fn plugins(&self) -> Vec<InstalledPlugin> {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = loaded.values().map(|l| l.info.clone()).collect();
        list.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
        list
    }

    /// The ids of the active plugins, in order.
    pub fn plugin_ids(&self) -> Vec<String> {
        self.plugins().into_iter().map(|p| p.manifest.id).collect()
    }

    /// Whether the active version of plugin `id` has `user-sign-in` (it is
    /// built against pbx:crm 0.3.0 or newer); false when none is active.
    pub fn supports_user_sign_in(&self, id: &str) -> bool {
        self.loaded_version(id)
            .is_some_and(|loaded| api_at_least(&loaded.info.api_version, (0, 3, 0)))
    }

    /// The active version of `id`, if one is loaded.
    fn loaded_version(&self, id: &str) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Make `loaded` the active version of `id`: calls from now on get it.
    fn set_active(&self, id: &str, loaded: Arc<Loaded>) {
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), loaded);
    }
}

/// Whether contract version `api` ("0.3.0") is `min` or newer; a version
/// that does not parse is not.
fn api_at_least(api: &str, min: (u64, u64, u64)) -> bool {
    let mut parts = api.split('.').map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => (major, minor, patch) >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::api_at_least;

    #[test]
    fn contract_versions_compare_as_numbers() {
        assert!(api_at_least("0.3.0", (0, 3, 0)));
        assert!(api_at_least("0.10.0", (0, 3, 0)));
        assert!(api_at_least("1.0.0", (0, 3, 0)));
        assert!(!api_at_least("0.2.0", (0, 3, 0)));
        assert!(!api_at_least("0.1.0", (0, 3, 0)));
        assert!(!api_at_least("0.3", (0, 3, 0)));
        assert!(!api_at_least("x.y.z", (0, 3, 0)));
    }
}
