//! The plugin runtime: one Engine, installed plugins loaded through a
//! precompile cache, and calls made in a fresh, limited store each.

pub mod engine;
pub mod inspect;
pub mod instance;
pub mod manifest;
pub mod registry;
pub mod signature;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::capabilities::{self, Grants, PluginState, Services};
use crate::outbound::{HostPattern, Policy};
use crate::store::{self, Quota};
use engine::EpochTicker;
use inspect::{InspectError, Inspection};
use instance::{PluginInstance, PluginPre};
use manifest::{KvRequest, Manifest};

/// Most of a plugin's stdout/stderr kept per instance for the log.
const OUTPUT_CAPTURE: usize = 64 * 1024;
/// An instance whose captured output passed this is not reused, so its
/// pipes never fill up (a full pipe would fail the guest's writes).
const OUTPUT_RECYCLE: usize = 32 * 1024;
/// Calls one instance serves before it is replaced: bounds what a slow leak
/// in a plugin can accumulate.
const RECYCLE_AFTER_CALLS: u32 = 10_000;
/// Calls running at once; beyond this they wait for a turn.
const MAX_CONCURRENT_CALLS: usize = (engine::POOL_INSTANCES / 2) as usize;
/// Idle instances kept warm across all plugins; with the running ones this
/// never exceeds the pool.
const MAX_IDLE: usize = (engine::POOL_INSTANCES / 2) as usize;

/// Limits every call runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub deadline: Duration,
    /// Linear memory cap of one instance, in bytes.
    pub memory: usize,
    /// kv-store quota of one plugin.
    pub kv: Quota,
    /// Serve calls from warm instances (see [`Warm`]); false gives every
    /// call a fresh store and instance.
    pub reuse_instances: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            memory: 64 << 20,
            kv: Quota::default(),
            reuse_instances: true,
        }
    }
}

/// Why a call failed. The host keeps serving after every one of these.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No such plugin.
    #[error("no plugin {0:?} is installed; install it with `pbx-host plugin install FILE`")]
    NotInstalled(String),
    /// The deadline expired.
    #[error("plugin {plugin} did not finish within its {}s deadline and was stopped", .deadline.as_secs_f64())]
    Deadline {
        /// The plugin.
        plugin: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The memory cap was hit.
    #[error("plugin {plugin} exceeded its memory limit of {} MiB and was stopped", .limit >> 20)]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The plugin trapped or panicked.
    #[error("plugin {plugin} failed: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The panic message or trap description.
        message: String,
    },
}

/// Why installing, activating, rolling back, removing or granting failed.
/// Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file was refused.
    #[error(transparent)]
    Refused(#[from] InspectError),
    /// The file is not the one the operator expected.
    #[error(
        "the file's SHA-256 is {actual}, not the expected {expected}: it is not the file you meant, or it was damaged on the way; download it again"
    )]
    HashMismatch {
        /// What the operator gave.
        expected: String,
        /// What the file has.
        actual: String,
    },
    /// The vendor signature is missing or wrong.
    #[error(transparent)]
    Signature(#[from] signature::SignatureError),
    /// The same version string with other content.
    #[error(
        "{id} {version} is already installed from another file; a vendor ships a new build under a new version (or remove the installed one first with `pbx-host plugin remove {id} {version}`)"
    )]
    VersionClash {
        /// The plugin.
        id: String,
        /// Its version.
        version: String,
    },
    /// No such plugin.
    #[error("no plugin {0:?} is installed; install it with `pbx-host plugin install FILE`")]
    NotInstalled(String),
    /// No such version.
    #[error("{id} has no version {version:?}; installed: {}", installed.join(", "))]
    UnknownVersion {
        /// The plugin.
        id: String,
        /// The version asked for.
        version: String,
        /// What is installed.
        installed: Vec<String>,
    },
    /// The version asks for hosts (or kv-store space) the operator has
    /// not granted.
    #[error(
        "{id} {version} requests {}, which the operator has not granted; it stays installed but inactive: grant with `pbx-host plugin grant {id} PATTERN` (or --kv-keys/--kv-mib), then activate it",
        hosts.join(", ")
    )]
    NeedsGrants {
        /// The plugin.
        id: String,
        /// The version.
        version: String,
        /// The requested patterns no grant covers.
        hosts: Vec<String>,
    },
    /// The active version cannot be removed.
    #[error(
        "{id} {version} is the active version; activate another version (or roll back) before removing it"
    )]
    ActiveVersion {
        /// The plugin.
        id: String,
        /// The version.
        version: String,
    },
    /// Nothing to roll back to.
    #[error("{0} has no previous version to roll back to")]
    NoPrevious(String),
    /// A grant that is no pattern.
    #[error("{0}")]
    BadGrant(String),
    /// The new version's `migrate` export failed; the old one stays active.
    #[error("{id} {version} was not activated: its migration from {from} failed: {reason}")]
    Migration {
        /// The plugin.
        id: String,
        /// The version that was to become active.
        version: String,
        /// The version active before.
        from: String,
        /// What the plugin said.
        reason: String,
    },
    /// Another change to the same plugin came first.
    #[error(
        "{0} was changed by someone else at the same time; look at `pbx-host plugin list` and try again"
    )]
    Conflict(String),
    /// Compilation or linking failed.
    #[error("the plugin cannot be loaded: {0}")]
    Load(String),
    /// Disk or store failure.
    #[error("the plugin could not be stored: {0}")]
    Storage(String),
}

impl From<crate::store::KvError> for InstallError {
    fn from(e: crate::store::KvError) -> Self {
        match e {
            crate::store::KvError::Conflict(key) => InstallError::Conflict(key),
            other => InstallError::Storage(other.to_string()),
        }
    }
}

/// Whether `install` makes the new version active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activate {
    /// Only when no version of the plugin is active yet (the default).
    #[default]
    IfNoneActive,
    /// Yes (`--activate`), if the operator's grants cover what it requests.
    Yes,
    /// No: installed and verified, activated later.
    No,
}

/// How to install a file.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The SHA-256 the operator expects (hex), checked before anything else.
    pub sha256: Option<String>,
    /// Whether to activate it.
    pub activate: Activate,
}

/// One version of an installed plugin, as `plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionListing {
    /// The plugin's own version.
    pub version: String,
    /// SHA-256 of its file.
    pub sha256: String,
    /// The pbx:crm version it uses.
    pub api_version: String,
    /// Hosts its manifest requests.
    pub requested: Vec<String>,
    /// The vendor key that signed it.
    pub signed_by: Option<String>,
    /// Whether calls go to it.
    pub active: bool,
    /// Requested hosts no grant covers; it cannot be activated until they are.
    pub waiting_for_grants: Vec<String>,
}

/// An installed plugin with its versions, as `plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginListing {
    /// The plugin id.
    pub id: String,
    /// The active version's manifest, if one is active.
    pub manifest: Option<Manifest>,
    /// The active version.
    pub active: Option<String>,
    /// The version `plugin rollback` goes back to.
    pub previous: Option<String>,
    /// Hosts granted (configuration and `plugin grant`).
    pub granted: Vec<String>,
    /// Its kv-store quota: keys.
    pub kv_max_keys: u64,
    /// Its kv-store quota: bytes.
    pub kv_max_bytes: u64,
    /// Every installed version.
    pub versions: Vec<VersionListing>,
}

/// What `install` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallReport {
    /// The installed version (as the active plugin info, whether or not it
    /// became active).
    #[serde(flatten)]
    pub plugin: InstalledPlugin,
    /// Whether it is now the active version.
    pub activated: bool,
    /// Requested hosts no grant covers (why it was not activated).
    pub waiting_for_grants: Vec<String>,
    /// The vendor key that signed it.
    pub signed_by: Option<String>,
}

/// What an activation or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activation {
    /// The plugin.
    pub id: String,
    /// The version now active.
    pub active: String,
    /// The version active before, if any.
    pub previous: Option<String>,
    /// Whether the version's `migrate` export ran.
    pub migrated: bool,
    /// How long the switch took (loading the version, migrating, swapping),
    /// in microseconds.
    pub swap_us: u64,
}

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

/// Where the time of one call went, and which version served it.
#[derive(Debug, Clone, Default)]
pub struct CallTiming {
    /// The plugin version the call ran on (the active one when it started).
    pub version: Option<Arc<str>>,
    /// The whole call: instantiation, guest code, host calls.
    pub total: Duration,
    /// Time spent in `http-fetch` (the remote side, the network, TLS).
    pub http: Duration,
    /// How many `http-fetch` calls the plugin made.
    pub http_fetches: u32,
    /// CPU time the call used (thread CPU clock over each of its polls):
    /// the host's and the plugin's own work, without waiting for the
    /// remote side, the store's group commit, a turn, or a CPU the OS gave
    /// to another thread meanwhile.
    pub busy: Duration,
}

impl CallTiming {
    /// The host's and plugin's own share: the call minus outbound HTTP.
    pub fn overhead(&self) -> Duration {
        self.total.saturating_sub(self.http)
    }
}

/// An installed plugin as the operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstalledPlugin {
    /// Its manifest.
    pub manifest: Manifest,
    /// SHA-256 of the component file, hex.
    pub sha256: String,
    /// The pbx:crm version it uses.
    pub api_version: String,
    /// Hosts the operator granted it.
    pub granted: Vec<String>,
}

struct Loaded {
    info: InstalledPlugin,
    pre: PluginPre,
    grants: Arc<Grants>,
    /// Instances of this version that finished a call cleanly, ready for
    /// the next one (see [`Warm`]).
    idle: std::sync::Mutex<Vec<Warm>>,
    /// The runtime's count of idle instances across versions.
    idle_total: Arc<AtomicUsize>,
}

impl Drop for Loaded {
    // A version swapped out takes its idle instances with it: they no
    // longer count against the runtime's warm set.
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |v| v.len());
        self.idle_total.fetch_sub(idle, Ordering::Relaxed);
    }
}

/// A plugin instance with its store, kept between calls.
///
/// Why not a fresh store per call: a plugin's memory starts from its
/// pre-initialized image, and with a fresh instance every call pays page
/// faults for every page of that image it touches (the phone metadata, the
/// allocator's heap): ~1.5 ms of kernel time per call event for the
/// Salesforce plugin, more than everything else together. A plugin is one
/// vendor's code working on one namespace, so nothing crosses a tenant
/// boundary by reusing it. What a call can leave behind is bounded: an
/// instance that trapped, hit its deadline or its memory cap, or was
/// cancelled is dropped, never reused; each serves at most
/// [`RECYCLE_AFTER_CALLS`] calls; the memory cap holds across its calls;
/// and a version swap starts from new instances, as the idle ones belong
/// to the old version's `Loaded`.
struct Warm {
    store: Store<PluginState>,
    plugin: Option<PluginInstance>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// Output bytes already forwarded to the log.
    seen: (usize, usize),
    calls: u32,
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
    engine: Engine,
    linker: Linker<PluginState>,
    services: Arc<Services>,
    store: store::Store,
    registry: registry::Registry,
    trust: signature::Trust,
    /// Serializes changes to what is installed and active (install,
    /// activate, rollback, remove, grant); calls never take it.
    changes: std::sync::Mutex<()>,
    plugins_dir: PathBuf,
    cache_dir: PathBuf,
    limits: Limits,
    grants: HashMap<String, Vec<HostPattern>>,
    loaded: RwLock<HashMap<String, Arc<Loaded>>>,
    counters: Counters,
    allocation: engine::Allocation,
    /// Turns for running calls: a call beyond [`MAX_CONCURRENT_CALLS`] waits
    /// instead of failing to find a free pool slot.
    turns: tokio::sync::Semaphore,
    /// Idle instances across all plugins.
    idle: Arc<AtomicUsize>,
    _ticker: EpochTicker,
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
        let (engine, allocation) = engine::new_engine(limits.memory)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        capabilities::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link the pbx:crm interfaces: {e}"))?;
        let plugins_dir = data_dir.join("plugins");
        let cache_dir = data_dir.join("cache");
        for dir in [&plugins_dir, &cache_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|e| anyhow::anyhow!("cannot start the deadline ticker: {e}"))?;
        Ok(Self {
            registry: registry::Registry::new(
                store.namespace("host/plugins", Quota::UNLIMITED),
                store.namespace("host/grants", Quota::UNLIMITED),
            ),
            trust: signature::Trust::default(),
            changes: std::sync::Mutex::new(()),
            store,
            engine,
            linker,
            services,
            plugins_dir,
            cache_dir,
            limits,
            grants,
            loaded: RwLock::new(HashMap::new()),
            counters: Counters::default(),
            allocation,
            turns: tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS),
            idle: Arc::new(AtomicUsize::new(0)),
            _ticker: ticker,
        })
    }

    /// How instances are allocated (pooling unless it was unavailable).
    pub fn allocation(&self) -> engine::Allocation {
        self.allocation
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

    /// Every installed plugin with its versions.
    pub fn listing(&self) -> Result<Vec<PluginListing>, InstallError> {
        let mut out = Vec::new();
        for id in self.registry.ids()? {
            let Some((record, _)) = self.registry.get(&id)? else {
                continue;
            };
            let granted = self.effective_grants(&id)?;
            let kv_quota = self.kv_quota(&id)?;
            let active = self.loaded_version(&id);
            let versions = record
                .versions
                .iter()
                .map(|(version, v)| VersionListing {
                    version: version.clone(),
                    sha256: v.sha256.clone(),
                    api_version: v.api_version.clone(),
                    requested: v.requested.clone(),
                    signed_by: v.signed_by.clone(),
                    active: record.active.as_deref() == Some(version.as_str()),
                    waiting_for_grants: waiting_for_grants(&record, v, &granted, kv_quota),
                })
                .collect();
            out.push(PluginListing {
                manifest: active.map(|l| l.info.manifest.clone()),
                id,
                active: record.active.clone(),
                previous: record.previous.clone(),
                granted: granted.iter().map(ToString::to_string).collect(),
                kv_max_keys: kv_quota.max_keys,
                kv_max_bytes: kv_quota.max_bytes,
                versions,
            });
        }
        Ok(out)
    }

    /// Validate, store (content-addressed) and load a component, making it
    /// the active version of its plugin: what `POST /api/plugins` did
    /// before plugin versions, kept for embedders and benches.
    pub fn install(&self, bytes: &[u8]) -> Result<InstalledPlugin, InstallError> {
        let report = self.install_with(
            bytes,
            &InstallOptions {
                sha256: None,
                activate: Activate::Yes,
            },
        )?;
        match report.waiting_for_grants.is_empty() {
            true => Ok(report.plugin),
            false => Err(InstallError::NeedsGrants {
                id: report.plugin.manifest.id.clone(),
                version: report.plugin.manifest.version.clone(),
                hosts: report.waiting_for_grants,
            }),
        }
    }

    /// Verify a file (its hash when one is expected, component, API
    /// version, manifest, vendor signature), store it, compile it, record
    /// its version, and activate it as `options` say.
    pub fn install_with(
        &self,
        bytes: &[u8],
        options: &InstallOptions,
    ) -> Result<InstallReport, InstallError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(expected) = &options.sha256 {
            let expected = expected.trim().to_ascii_lowercase();
            if expected != sha256 {
                return Err(InstallError::HashMismatch {
                    expected,
                    actual: sha256,
                });
            }
        }
        let inspection = inspect::inspect(bytes)?;
        let signed_by = signature::verify(bytes, &self.trust)?;
        let id = inspection.manifest.id.clone();
        let version = inspection.manifest.version.clone();
        let path = self.plugins_dir.join(format!("{sha256}.wasm"));
        if !path.exists() {
            write_atomically(&path, bytes).map_err(InstallError::Storage)?;
        }
        // Compiled (and cached) now, so a file that cannot load is refused
        // at install, not at activation.
        let loaded = self.load(inspection.clone(), &sha256, bytes)?;

        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (mut record, raw) = match self.registry.get(&id)? {
            Some((record, raw)) => (record, Some(raw)),
            None => (registry::PluginRecord::default(), None),
        };
        if let Some(existing) = record.versions.get(&version)
            && existing.sha256 != sha256
        {
            return Err(InstallError::VersionClash { id, version });
        }
        let entry = registry::VersionRecord {
            sha256: sha256.clone(),
            api_version: inspection.api_version.clone(),
            requested: inspection.manifest.hosts.clone(),
            signed_by: signed_by.clone(),
            installed_at_ms: now_ms(),
            manifest: Some(inspection.manifest.clone()),
        };
        let granted = self.effective_grants(&id)?;
        let waiting = waiting_for_grants(&record, &entry, &granted, self.kv_quota(&id)?);
        let wanted = match options.activate {
            Activate::Yes => true,
            Activate::No => false,
            Activate::IfNoneActive => record.active.is_none(),
        };
        let already = record.active.as_deref() == Some(version.as_str());
        record.versions.insert(version.clone(), entry);
        let activate = wanted && waiting.is_empty() && !already;
        let loaded = Arc::new(loaded);
        let mut migrated = false;
        if activate {
            migrated = self.migrate(&loaded, record.active.as_deref())?;
            record.previous = record.active.replace(version.clone());
        }
        self.registry.put(&id, raw, &record)?;
        if activate || (already && self.loaded_version(&id).is_none()) {
            self.loaded
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), loaded.clone());
        }
        tracing::info!(
            plugin = %id, %version, %sha256, activated = activate, migrated,
            signed_by = signed_by.as_deref().unwrap_or("-"),
            "plugin installed"
        );
        Ok(InstallReport {
            plugin: loaded.info.clone(),
            activated: activate || already,
            waiting_for_grants: if wanted && !already {
                waiting
            } else {
                Vec::new()
            },
            signed_by,
        })
    }

    /// Make `version` the active version of `id`. Calls already running
    /// finish on the version they started on; calls from now on get the
    /// new one. Its `migrate` export, if any, runs first; if it fails the
    /// old version stays active.
    pub fn activate(&self, id: &str, version: &str) -> Result<Activation, InstallError> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        self.switch(id, version)
    }

    /// Go back to the version active before the last activation, the same
    /// way as [`Runtime::activate`].
    pub fn rollback(&self, id: &str) -> Result<Activation, InstallError> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        let previous = record
            .previous
            .ok_or_else(|| InstallError::NoPrevious(id.to_string()))?;
        self.switch(id, &previous)
    }

    fn switch(&self, id: &str, version: &str) -> Result<Activation, InstallError> {
        let started = std::time::Instant::now();
        let (mut record, raw) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        let entry =
            record
                .versions
                .get(version)
                .cloned()
                .ok_or_else(|| InstallError::UnknownVersion {
                    id: id.to_string(),
                    version: version.to_string(),
                    installed: record.versions.keys().cloned().collect(),
                })?;
        if record.active.as_deref() == Some(version) && self.loaded_version(id).is_some() {
            return Ok(Activation {
                id: id.to_string(),
                active: version.to_string(),
                previous: record.previous.clone(),
                migrated: false,
                swap_us: 0,
            });
        }
        let granted = self.effective_grants(id)?;
        let waiting = waiting_for_grants(&record, &entry, &granted, self.kv_quota(id)?);
        if !waiting.is_empty() {
            return Err(InstallError::NeedsGrants {
                id: id.to_string(),
                version: version.to_string(),
                hosts: waiting,
            });
        }
        let loaded = Arc::new(self.load_stored(&entry)?);
        let migrated = self.migrate(&loaded, record.active.as_deref())?;
        let from = record.active.replace(version.to_string());
        record.previous = from.clone().filter(|f| f != version);
        self.registry.put(id, Some(raw), &record)?;
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), loaded);
        let swap = started.elapsed();
        tracing::info!(plugin = %id, %version, from = from.as_deref().unwrap_or("-"), swap_us = swap.as_micros() as u64, "plugin version activated");
        Ok(Activation {
            id: id.to_string(),
            active: version.to_string(),
            previous: record.previous,
            migrated,
            swap_us: swap.as_micros() as u64,
        })
    }

    /// Remove an inactive version; its file and compiled forms go when no
    /// other version uses them.
    pub fn remove(&self, id: &str, version: &str) -> Result<(), InstallError> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (mut record, raw) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        if record.active.as_deref() == Some(version) {
            return Err(InstallError::ActiveVersion {
                id: id.to_string(),
                version: version.to_string(),
            });
        }
        let Some(entry) = record.versions.remove(version) else {
            return Err(InstallError::UnknownVersion {
                id: id.to_string(),
                version: version.to_string(),
                installed: record.versions.keys().cloned().collect(),
            });
        };
        if record.previous.as_deref() == Some(version) {
            record.previous = None;
        }
        self.registry.put(id, Some(raw), &record)?;
        if !self.sha_in_use(&entry.sha256)? {
            let _ = std::fs::remove_file(self.plugins_dir.join(format!("{}.wasm", entry.sha256)));
            if let Ok(dir) = std::fs::read_dir(&self.cache_dir) {
                for file in dir.flatten() {
                    if file
                        .file_name()
                        .to_string_lossy()
                        .starts_with(&entry.sha256)
                    {
                        let _ = std::fs::remove_file(file.path());
                    }
                }
            }
        }
        tracing::info!(plugin = %id, %version, "plugin version removed");
        Ok(())
    }

    /// Grant `id` a host pattern. The active version is loaded again with
    /// it (grants are part of the compiled form's cache key); versions that
    /// waited for it can now be activated.
    pub fn grant(&self, id: &str, pattern: &str) -> Result<Vec<String>, InstallError> {
        let parsed: HostPattern = pattern.parse().map_err(|e| {
            InstallError::BadGrant(format!(
                "{pattern:?} is not a host pattern ({e}); use scheme://host[:port], e.g. https://*.my.salesforce.com"
            ))
        })?;
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        self.registry.add_grant(id, &parsed.to_string())?;
        self.reload_active(id, &record)?;
        tracing::info!(plugin = %id, pattern = %parsed, "host granted");
        Ok(self
            .effective_grants(id)?
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Load every installed plugin's active version (at start). A plugin
    /// that fails to load is logged and skipped, so one bad file does not
    /// stop the PBX.
    pub fn load_installed(&self) -> Result<usize, InstallError> {
        let mut count = 0;
        for id in self.registry.ids()? {
            match self.load_installed_one(&id) {
                Ok(true) => count += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(plugin = %id, "plugin not loaded: {e}"),
            }
        }
        Ok(count)
    }

    fn load_installed_one(&self, id: &str) -> Result<bool, InstallError> {
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        let Some(entry) = record.active.as_ref().and_then(|v| record.versions.get(v)) else {
            return Ok(false);
        };
        let loaded = self.load_stored(entry)?;
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), Arc::new(loaded));
        Ok(true)
    }

    /// Load an installed version: straight from the precompile cache when
    /// it holds it (what install recorded stands for the file, which is not
    /// read again), else from its file, checking it still has its hash.
    fn load_stored(&self, entry: &registry::VersionRecord) -> Result<Loaded, InstallError> {
        if let Some(manifest) = &entry.manifest {
            let granted = self.effective_grants(&manifest.id)?;
            let key = grants_key(&granted, self.kv_quota(&manifest.id)?);
            if let Some(component) = self.cached_component(&entry.sha256, &key) {
                let inspection = Inspection {
                    manifest: manifest.clone(),
                    api_version: entry.api_version.clone(),
                    imports: Vec::new(),
                    exports: Vec::new(),
                };
                return self.load_component(inspection, &entry.sha256, &component, granted);
            }
        }
        let sha256 = &entry.sha256;
        let path = self.plugins_dir.join(format!("{sha256}.wasm"));
        let bytes = std::fs::read(&path)
            .map_err(|e| InstallError::Storage(format!("{}: {e}", path.display())))?;
        if hex::encode(Sha256::digest(&bytes)) != *sha256 {
            return Err(InstallError::Storage(format!(
                "{} does not match its hash; install the plugin again",
                path.display()
            )));
        }
        let inspection = inspect::inspect(&bytes)?;
        self.load(inspection, sha256, &bytes)
    }

    fn loaded_version(&self, id: &str) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn sha_in_use(&self, sha256: &str) -> Result<bool, InstallError> {
        for id in self.registry.ids()? {
            if let Some((record, _)) = self.registry.get(&id)?
                && record.versions.values().any(|v| v.sha256 == sha256)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The kv-store quota of `id`: the one granted with `plugin grant
    /// --kv-...`, else the host's default.
    fn kv_quota(&self, id: &str) -> Result<Quota, InstallError> {
        Ok(self
            .registry
            .kv_grant(id)?
            .map_or(self.limits.kv, |granted| granted.quota()))
    }

    /// Grant `id` a kv-store quota; the active version is loaded again with
    /// it, and versions that waited for it can now be activated.
    pub fn grant_kv(&self, id: &str, quota: KvRequest) -> Result<Quota, InstallError> {
        if quota.max_keys == 0 || quota.max_mib == 0 {
            return Err(InstallError::BadGrant(
                "a kv-store grant needs keys and MiB above 0".into(),
            ));
        }
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        self.registry.set_kv_grant(id, &quota)?;
        self.reload_active(id, &record)?;
        tracing::info!(plugin = %id, %quota, "kv-store quota granted");
        self.kv_quota(id)
    }

    /// Load the active version again (after a grant changed what it gets).
    fn reload_active(&self, id: &str, record: &registry::PluginRecord) -> Result<(), InstallError> {
        if let Some(entry) = record
            .active
            .as_ref()
            .and_then(|v| record.versions.get(v))
            .filter(|_| self.loaded_version(id).is_some())
        {
            let reloaded = Arc::new(self.load_stored(entry)?);
            self.loaded
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string(), reloaded);
        }
        Ok(())
    }

    /// The configuration's grants for `id` and those given with `plugin grant`.
    fn effective_grants(&self, id: &str) -> Result<Vec<HostPattern>, InstallError> {
        let mut granted = self.grants.get(id).cloned().unwrap_or_default();
        for pattern in self.registry.grants(id)? {
            match pattern.parse::<HostPattern>() {
                Ok(p) if !granted.contains(&p) => granted.push(p),
                Ok(_) => {}
                Err(e) => tracing::warn!(plugin = %id, %pattern, "stored grant ignored: {e}"),
            }
        }
        Ok(granted)
    }

    /// Runs the new version's `migrate(from-version)` export when it has
    /// one and a version was active before.
    fn migrate(&self, loaded: &Arc<Loaded>, from: Option<&str>) -> Result<bool, InstallError> {
        let Some(from) = from else {
            return Ok(false);
        };
        if !loaded.pre.exports_migrate() {
            return Ok(false);
        }
        let id = loaded.info.manifest.id.clone();
        let failed = |reason: String| InstallError::Migration {
            id: id.clone(),
            version: loaded.info.manifest.version.clone(),
            from: from.to_string(),
            reason,
        };
        // Install and activation are synchronous (the admin API runs them
        // on the blocking pool, embedders anywhere): the call runs on a
        // thread of its own with a small runtime, under the usual limits.
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("cannot start the migration: {e}"))?;
                    let from = from.to_string();
                    let mut timing = CallTiming::default();
                    runtime
                        .block_on(self.call_loaded(
                            &id,
                            loaded.clone(),
                            move |p, s| Box::pin(async move { p.migrate(s, &from).await }),
                            &mut timing,
                        ))
                        .map_err(|e| e.to_string())
                })
                .join()
                .unwrap_or_else(|_| Err("the migration stopped unexpectedly".into()))
        });
        match outcome {
            Ok(None) => Ok(false),
            Ok(Some(Ok(()))) => {
                tracing::info!(plugin = %id, %from, version = %loaded.info.manifest.version, "plugin state migrated");
                Ok(true)
            }
            Ok(Some(Err(e))) => Err(failed(e.message)),
            Err(reason) => Err(failed(reason)),
        }
    }

    fn load(
        &self,
        inspection: Inspection,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Loaded, InstallError> {
        let granted = self.effective_grants(&inspection.manifest.id)?;
        let key = grants_key(&granted, self.kv_quota(&inspection.manifest.id)?);
        let component = self.component(sha256, &key, bytes)?;
        self.load_component(inspection, sha256, &component, granted)
    }

    fn load_component(
        &self,
        inspection: Inspection,
        sha256: &str,
        component: &Component,
        granted: Vec<HostPattern>,
    ) -> Result<Loaded, InstallError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| InstallError::Load(format!("its imports cannot be satisfied: {e}")))?;
        // The memory image is made here rather than in the first call: for a
        // component compiled in this process that is a memfd written with
        // the whole image (~7 ms for the pre-initialized plugin's 15 MB);
        // one loaded from the precompile cache maps the file, which is cheap.
        component
            .initialize_copy_on_write_image()
            .map_err(|e| InstallError::Load(format!("its memory image cannot be made: {e}")))?;
        let pre = PluginPre::new(&inspection.api_version, pre)
            .map_err(|e| InstallError::Load(format!("it does not export the plugin world: {e}")))?;
        let manifest = inspection.manifest;
        let grants = Arc::new(Grants {
            plugin_id: manifest.id.clone(),
            kv: self.store.namespace(
                &format!("plugin/{}", manifest.id),
                self.kv_quota(&manifest.id)?,
            ),
            http: Policy {
                requested: manifest.host_patterns(),
                granted: granted.clone(),
            },
        });
        Ok(Loaded {
            info: InstalledPlugin {
                sha256: sha256.to_string(),
                api_version: inspection.api_version,
                granted: granted.iter().map(ToString::to_string).collect(),
                manifest,
            },
            pre,
            grants,
            idle: std::sync::Mutex::new(Vec::new()),
            idle_total: self.idle.clone(),
        })
    }

    /// The compiled component, from the precompile cache when it holds one
    /// for this content, this engine and these grants; compiled (and
    /// cached) otherwise.
    fn component(
        &self,
        sha256: &str,
        grants: &str,
        bytes: &[u8],
    ) -> Result<Component, InstallError> {
        if let Some(component) = self.cached_component(sha256, grants) {
            return Ok(component);
        }
        let cached = self.cache_path(sha256, grants);
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| InstallError::Load(format!("it does not compile: {e}")))?;
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%sha256, "plugin compiled");
        if let Err(e) = write_atomically(&cached, &compiled) {
            tracing::warn!("cannot write the precompile cache: {e}");
        }
        // SAFETY: the bytes come from `precompile_component` of this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(|e| InstallError::Load(e.to_string()))
    }

    fn compatibility_key(&self) -> String {
        compatibility_key(&self.engine)
    }

    fn cache_path(&self, sha256: &str, grants: &str) -> PathBuf {
        self.cache_dir.join(format!(
            "{sha256}-{}-{grants}.cwasm",
            self.compatibility_key()
        ))
    }

    /// The compiled component from the precompile cache, if it holds one
    /// for this content, engine and grants.
    fn cached_component(&self, sha256: &str, grants: &str) -> Option<Component> {
        let cached = self.cache_path(sha256, grants);
        if !cached.exists() {
            return None;
        }
        // SAFETY: the file is written only by this host (`component`) from
        // `precompile_component` of the same engine configuration, which
        // the compatibility key in its name guarantees.
        match unsafe { Component::deserialize_file(&self.engine, &cached) } {
            Ok(component) => {
                self.counters.cache_loads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%sha256, "plugin loaded from the precompile cache");
                Some(component)
            }
            Err(e) => {
                tracing::warn!(%sha256, "stale precompile cache entry, compiling again: {e}");
                None
            }
        }
    }

    /// A new store for `loaded`, instantiated on its first call (inside
    /// that call's deadline).
    fn new_warm(&self, loaded: &Loaded) -> Warm {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let state = PluginState::new(
            loaded.grants.clone(),
            self.services.clone(),
            self.limits.memory,
            stdout.clone(),
            stderr.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        Warm {
            store,
            plugin: None,
            stdout,
            stderr,
            seen: (0, 0),
            calls: 0,
        }
    }

    /// Keeps an instance that finished a call cleanly for the next call,
    /// unless it has served its share or the warm set is full.
    fn keep_warm(&self, loaded: &Loaded, warm: Warm) {
        let worn = warm.calls >= RECYCLE_AFTER_CALLS
            || warm.seen.0 > OUTPUT_RECYCLE
            || warm.seen.1 > OUTPUT_RECYCLE;
        if worn || warm.plugin.is_none() || !self.limits.reuse_instances {
            return;
        }
        if self
            .idle
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_IDLE).then_some(n + 1)
            })
            .is_ok()
        {
            loaded
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(warm);
        }
    }

    fn get(&self, plugin_id: &str) -> Result<Arc<Loaded>, CallError> {
        self.loaded_version(plugin_id)
            .ok_or_else(|| CallError::NotInstalled(plugin_id.to_string()))
    }

    /// Call into a plugin's active version, on a warm instance when one is
    /// idle (else a new one), under the deadline and memory cap.
    /// `f` calls one export; a trap, an expired deadline or an exceeded limit
    /// becomes a `CallError` and costs only this call.
    pub async fn call<R: Send>(
        &self,
        plugin_id: &str,
        f: impl for<'a> FnOnce(
            &'a PluginInstance,
            &'a mut Store<PluginState>,
        ) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send,
    ) -> Result<R, CallError> {
        self.call_timed(plugin_id, f).await.0
    }

    /// [`Runtime::call`], also telling how long the call took and how much
    /// of that the plugin spent waiting on outbound HTTP (`http-fetch`), so
    /// the host's and plugin's own overhead can be told from the remote
    /// side's time.
    pub async fn call_timed<R: Send>(
        &self,
        plugin_id: &str,
        f: impl for<'a> FnOnce(
            &'a PluginInstance,
            &'a mut Store<PluginState>,
        ) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send,
    ) -> (Result<R, CallError>, CallTiming) {
        let started = std::time::Instant::now();
        let mut timing = CallTiming::default();
        let mut busy = Duration::ZERO;
        let result = {
            let mut call = std::pin::pin!(self.call_inner(plugin_id, f, &mut timing));
            std::future::poll_fn(|cx| {
                // A poll runs on one thread from start to end.
                let before = thread_cpu_time();
                let poll = call.as_mut().poll(cx);
                busy += thread_cpu_time().saturating_sub(before);
                poll
            })
            .await
        };
        timing.total = started.elapsed();
        timing.busy = busy;
        (result, timing)
    }

    async fn call_inner<R: Send>(
        &self,
        plugin_id: &str,
        f: impl for<'a> FnOnce(
            &'a PluginInstance,
            &'a mut Store<PluginState>,
        ) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send,
        timing: &mut CallTiming,
    ) -> Result<R, CallError> {
        let loaded = self.get(plugin_id)?;
        self.call_loaded(plugin_id, loaded, f, timing).await
    }

    /// A call into a given loaded version (the active one, or one about to
    /// become active for its migration).
    async fn call_loaded<R: Send>(
        &self,
        plugin_id: &str,
        loaded: Arc<Loaded>,
        f: impl for<'a> FnOnce(
            &'a PluginInstance,
            &'a mut Store<PluginState>,
        ) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send,
        timing: &mut CallTiming,
    ) -> Result<R, CallError> {
        timing.version = Some(loaded.info.manifest.version.as_str().into());
        // Held until this call's instance is idle or dropped; the semaphore
        // is never closed, so acquiring only waits.
        let _turn = self.turns.acquire().await.ok();
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let reused = loaded.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut warm = match reused {
            Some(warm) => {
                self.idle.fetch_sub(1, Ordering::Relaxed);
                warm
            }
            None => {
                let started = std::time::Instant::now();
                let warm = self.new_warm(&loaded);
                self.counters
                    .instantiation_ns
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                warm
            }
        };
        warm.store.data_mut().begin_call();
        warm.store
            .set_epoch_deadline(engine::ticks(self.limits.deadline));

        let deadline = self.limits.deadline;
        let outcome = {
            let Warm { store, plugin, .. } = &mut warm;
            let pre = &loaded.pre;
            let counters = &self.counters;
            let run = async move {
                let plugin = match plugin {
                    Some(plugin) => &*plugin,
                    None => {
                        let started = std::time::Instant::now();
                        let instance = pre.instantiate_async(&mut *store).await?;
                        counters.instantiations.fetch_add(1, Ordering::Relaxed);
                        counters
                            .instantiation_ns
                            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        &*plugin.insert(instance)
                    }
                };
                f(plugin, store).await
            };
            // Epochs stop guest code; this stops a call stuck in a host call.
            tokio::time::timeout(deadline, run).await
        };
        let memory_hit = warm.store.data().limiter.hit;
        timing.http = warm.store.data().http_time;
        timing.http_fetches = warm.store.data().http_fetches;
        warm.calls += 1;
        let stderr = warm.forward_output(plugin_id);
        if matches!(outcome, Ok(Ok(_))) && !memory_hit {
            self.keep_warm(&loaded, warm);
        }

        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Err(_elapsed) => CallError::Deadline {
                plugin: plugin_id.to_string(),
                deadline,
            },
            Ok(Err(e)) => classify(
                plugin_id,
                e,
                memory_hit,
                self.limits.memory,
                deadline,
                &stderr,
            ),
        };
        self.counters.failed_calls.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %plugin_id, "plugin call failed: {error}");
        Err(error)
    }
}

/// Requested patterns of `entry` that neither the active version already
/// requested nor a grant covers. A plugin's first version is never held
/// back: what it may reach is still only what is granted, checked on every
/// request; a later version that asks for more waits for the operator.
fn waiting_for_grants(
    record: &registry::PluginRecord,
    entry: &registry::VersionRecord,
    granted: &[HostPattern],
    kv_quota: Quota,
) -> Vec<String> {
    let Some(active) = record.active.as_ref().and_then(|v| record.versions.get(v)) else {
        return Vec::new();
    };
    let mut waiting: Vec<String> = entry
        .requested
        .iter()
        .filter(|wanted| !active.requested.contains(wanted))
        .filter(|wanted| {
            wanted
                .parse::<HostPattern>()
                .map_or(true, |p| !granted.iter().any(|g| g.covers(&p)))
        })
        .cloned()
        .collect();
    let kv_request = |v: &registry::VersionRecord| v.manifest.as_ref().and_then(|m| m.kv);
    if let Some(wanted) = kv_request(entry)
        && !wanted.fits(kv_quota)
        && kv_request(active).is_none_or(|had| !wanted.fits(had.quota()))
    {
        waiting.push(wanted.to_string());
    }
    waiting
}

/// The engine's part of the precompile cache's file names: compiled code
/// loads only into an engine of the same version and configuration.
fn compatibility_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A short digest of the grants, for the precompile cache's file names.
fn grants_key(granted: &[HostPattern], kv: Quota) -> String {
    let mut patterns: Vec<String> = granted.iter().map(ToString::to_string).collect();
    patterns.sort();
    patterns.push(format!("kv {} {}", kv.max_keys, kv.max_bytes));
    hex::encode(&Sha256::digest(patterns.join("\n").as_bytes())[..8])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// CPU time the current thread has used.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn classify(
    plugin: &str,
    error: wasmtime::Error,
    memory_hit: bool,
    memory: usize,
    deadline: Duration,
    stderr: &str,
) -> CallError {
    let plugin = plugin.to_string();
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return CallError::Deadline { plugin, deadline };
    }
    if memory_hit {
        return CallError::MemoryLimit {
            plugin,
            limit: memory,
        };
    }
    let message = match panic_message(stderr) {
        Some(panic) => format!("it panicked: {panic}"),
        None => match error.downcast_ref::<Trap>() {
            Some(trap) => format!("it trapped: {trap}"),
            None => format!("{error:#}"),
        },
    };
    CallError::Trap { plugin, message }
}

/// The message of a Rust panic as printed on stderr:
/// "thread '…' panicked at src/lib.rs:1:2:\nMESSAGE\nnote: …".
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    let at = lines.find(|l| l.contains("panicked at"))?;
    let location = at
        .split_once("panicked at ")
        .map(|(_, l)| l.trim_end_matches(':'))
        .unwrap_or_default();
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note:")).collect();
    Some(format!("{} (at {location})", message.join("\n").trim()))
}

impl Warm {
    /// Logs what the last call printed; returns its stderr (for panic
    /// messages).
    fn forward_output(&mut self, plugin: &str) -> String {
        let (out, err) = (self.stdout.contents(), self.stderr.contents());
        let new = |all: &[u8], seen: usize| {
            String::from_utf8_lossy(all.get(seen..).unwrap_or_default()).into_owned()
        };
        let (stdout, stderr) = (new(&out, self.seen.0), new(&err, self.seen.1));
        self.seen = (out.len(), err.len());
        forward_output(plugin, &stdout, &stderr);
        stderr
    }
}

fn forward_output(plugin: &str, stdout: &str, stderr: &str) {
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(target: "plugin", plugin, "stdout: {line}");
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        tracing::warn!(target: "plugin", plugin, "stderr: {line}");
    }
}

/// Write `bytes` to `path` so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_changes_with_the_engine_and_the_grants() {
        let (pooled, _) = engine::new_engine(64 << 20).expect("engine");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let plain = Engine::new(&config).expect("engine");
        assert_ne!(compatibility_key(&pooled), compatibility_key(&plain));
        assert_eq!(
            compatibility_key(&pooled),
            compatibility_key(&pooled.clone())
        );
        let a: HostPattern = "https://*.example.com".parse().expect("pattern");
        let b: HostPattern = "https://api.example.org".parse().expect("pattern");
        let kv = Quota::default();
        assert_ne!(
            grants_key(&[], kv),
            grants_key(std::slice::from_ref(&a), kv)
        );
        assert_ne!(grants_key(&[], kv), grants_key(&[], Quota::UNLIMITED));
        assert_eq!(
            grants_key(&[a.clone(), b.clone()], kv),
            grants_key(&[b, a], kv),
            "the order grants were given in does not matter"
        );
    }

    #[test]
    fn a_version_asking_for_more_than_granted_waits() {
        let version = |hosts: &[&str]| registry::VersionRecord {
            sha256: String::new(),
            api_version: "0.1.0".into(),
            requested: hosts.iter().map(|h| h.to_string()).collect(),
            signed_by: None,
            installed_at_ms: 0,
            manifest: None,
        };
        let mut record = registry::PluginRecord::default();
        let first = version(&["https://login.example.com"]);
        assert!(
            waiting_for_grants(&record, &first, &[], Quota::default()).is_empty(),
            "a first version is not held back"
        );
        record.versions.insert("1".into(), first);
        record.active = Some("1".into());
        let more = version(&["https://login.example.com", "https://api.other.org"]);
        assert_eq!(
            waiting_for_grants(&record, &more, &[], Quota::default()),
            vec!["https://api.other.org".to_string()]
        );
        let wildcard: HostPattern = "https://*.other.org".parse().expect("pattern");
        assert!(waiting_for_grants(&record, &more, &[wildcard], Quota::default()).is_empty());
    }

    #[test]
    fn panic_messages_are_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom: it broke\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom: it broke (at src/lib.rs:10:5)")
        );
        assert_eq!(panic_message("nothing here"), None);
    }
}
