//! The plugin runtime: one Engine, installed plugins loaded through a
//! precompile cache, and calls made in a fresh, limited store each.

pub mod engine;
pub mod inspect;
pub mod instance;
pub mod manifest;

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
use crate::store::{self, Namespace, Quota};
use engine::EpochTicker;
use inspect::{InspectError, Inspection};
use instance::{PluginInstance, PluginPre};
use manifest::Manifest;

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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            memory: 64 << 20,
            kv: Quota::default(),
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

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file was refused.
    #[error(transparent)]
    Refused(#[from] InspectError),
    /// Compilation or linking failed.
    #[error("the plugin cannot be loaded: {0}")]
    Load(String),
    /// Disk or store failure.
    #[error("the plugin could not be stored: {0}")]
    Storage(String),
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
    /// Calls made.
    pub calls: u64,
    /// Calls that failed with a trap, deadline or memory limit.
    pub failed_calls: u64,
}

/// Where the time of one call went.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallTiming {
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
    calls: AtomicU64,
    failed_calls: AtomicU64,
}

/// The plugin runtime of one host process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    services: Arc<Services>,
    store: store::Store,
    registry: Namespace,
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
    idle: AtomicUsize,
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
            registry: store.namespace("host/plugins", Quota::UNLIMITED),
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
            idle: AtomicUsize::new(0),
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
            calls: self.counters.calls.load(Ordering::Relaxed),
            failed_calls: self.counters.failed_calls.load(Ordering::Relaxed),
        }
    }

    /// The installed plugins, by id.
    pub fn plugins(&self) -> Vec<InstalledPlugin> {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = loaded.values().map(|l| l.info.clone()).collect();
        list.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
        list
    }

    /// Validate, store (content-addressed) and load a component, replacing any
    /// installed plugin with the same id.
    pub fn install(&self, bytes: &[u8]) -> Result<InstalledPlugin, InstallError> {
        let inspection = inspect::inspect(bytes)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let path = self.plugins_dir.join(format!("{sha256}.wasm"));
        if !path.exists() {
            write_atomically(&path, bytes).map_err(InstallError::Storage)?;
        }
        let loaded = self.load(inspection, &sha256, bytes)?;
        let record = serde_json::to_vec(&loaded.info.sha256)
            .map_err(|e| InstallError::Storage(e.to_string()))?;
        self.registry
            .set(&loaded.info.manifest.id, &record)
            .map_err(|e| InstallError::Storage(e.to_string()))?;
        let info = loaded.info.clone();
        tracing::info!(
            plugin = %info.manifest.id, version = %info.manifest.version, sha256 = %info.sha256,
            "plugin installed"
        );
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.manifest.id.clone(), Arc::new(loaded));
        Ok(info)
    }

    /// Load every installed plugin (at start). A plugin that fails to load is
    /// logged and skipped, so one bad file does not stop the PBX.
    pub fn load_installed(&self) -> Result<usize, InstallError> {
        let ids = self
            .registry
            .list_keys("")
            .map_err(|e| InstallError::Storage(e.to_string()))?;
        let mut count = 0;
        for id in ids {
            match self.load_installed_one(&id) {
                Ok(()) => count += 1,
                Err(e) => tracing::error!(plugin = %id, "plugin not loaded: {e}"),
            }
        }
        Ok(count)
    }

    fn load_installed_one(&self, id: &str) -> Result<(), InstallError> {
        let record = self
            .registry
            .get(id)
            .map_err(|e| InstallError::Storage(e.to_string()))?
            .ok_or_else(|| InstallError::Storage(format!("{id} vanished from the registry")))?;
        let sha256: String = serde_json::from_slice(&record)
            .map_err(|e| InstallError::Storage(format!("registry entry unreadable: {e}")))?;
        let path = self.plugins_dir.join(format!("{sha256}.wasm"));
        let bytes = std::fs::read(&path)
            .map_err(|e| InstallError::Storage(format!("{}: {e}", path.display())))?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(InstallError::Storage(format!(
                "{} does not match its hash; install the plugin again",
                path.display()
            )));
        }
        let inspection = inspect::inspect(&bytes)?;
        let loaded = self.load(inspection, &sha256, &bytes)?;
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), Arc::new(loaded));
        Ok(())
    }

    fn load(
        &self,
        inspection: Inspection,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Loaded, InstallError> {
        let component = self.component(sha256, bytes)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| InstallError::Load(format!("its imports cannot be satisfied: {e}")))?;
        let pre = PluginPre::new(&inspection.api_version, pre)
            .map_err(|e| InstallError::Load(format!("it does not export the plugin world: {e}")))?;
        let manifest = inspection.manifest;
        let granted = self.grants.get(&manifest.id).cloned().unwrap_or_default();
        let grants = Arc::new(Grants {
            plugin_id: manifest.id.clone(),
            kv: self
                .store
                .namespace(&format!("plugin/{}", manifest.id), self.limits.kv),
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
        })
    }

    /// The compiled component, from the precompile cache when it holds one
    /// for this content and this engine; compiled (and cached) otherwise.
    fn component(&self, sha256: &str, bytes: &[u8]) -> Result<Component, InstallError> {
        let cached = self
            .cache_dir
            .join(format!("{sha256}-{}.cwasm", self.compatibility_key()));
        if cached.exists() {
            // SAFETY: the file is written only by this host (below) from
            // `precompile_component` of the same engine configuration, which
            // the compatibility key in its name guarantees.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => {
                    self.counters.cache_loads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%sha256, "plugin loaded from the precompile cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(%sha256, "stale precompile cache entry, compiling again: {e}")
                }
            }
        }
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
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
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
        if worn || warm.plugin.is_none() {
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
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin_id)
            .cloned()
            .ok_or_else(|| CallError::NotInstalled(plugin_id.to_string()))
    }

    /// Call into a plugin in a fresh store under the deadline and memory cap.
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
            None => self.new_warm(&loaded),
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
                        counters.instantiations.fetch_add(1, Ordering::Relaxed);
                        &*plugin.insert(pre.instantiate_async(&mut *store).await?)
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
    fn panic_messages_are_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom: it broke\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom: it broke (at src/lib.rs:10:5)")
        );
        assert_eq!(panic_message("nothing here"), None);
    }
}
