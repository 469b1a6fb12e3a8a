//! Warm instances: a loaded version keeps the instances that finished a call
//! cleanly and hands them to the next calls, and calls take turns so no more
//! run at once than the engine's pool has slots for.
//!
//! Why not a fresh store per call: a plugin's memory starts from its
//! pre-initialized image, and with a fresh instance every call pays page
//! faults for every page of that image it touches (the phone metadata, the
//! allocator's heap): ~1.5 ms of kernel time per call event for the
//! Salesforce plugin, more than everything else together. A plugin is one
//! vendor's code working on one namespace, so nothing crosses a tenant
//! boundary by reusing it. What a call can leave behind is bounded: an
//! instance that trapped, hit its deadline or its memory cap, or was
//! cancelled is dropped, never reused; each serves at most
//! [`RECYCLE_AFTER_CALLS`] calls; the memory cap holds across its calls;
//! and a version swap starts from new instances, as the idle ones belong
//! to the old version's [`Loaded`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::state::PluginState;
use super::versions::InstalledPlugin;
use super::wit::{Exports, Prepared};
use super::{Runtime, engine};
use crate::capabilities::{Capabilities, Grants, log};

/// Most of a plugin's stdout/stderr kept per instance for the log.
const OUTPUT_CAPTURE: usize = 64 * 1024;
/// Lines of stdout (and of stderr) one call may put in the log, as the
/// `log` capability bounds its messages.
const OUTPUT_LINES_PER_CALL: usize = log::MAX_MESSAGES_PER_CALL as usize;
/// An instance whose captured output passed this is not reused, so its
/// pipes never fill up (a full pipe would fail the guest's writes).
const OUTPUT_RECYCLE: usize = 32 * 1024;
/// Calls one instance serves before it is replaced: bounds what a slow leak
/// in a plugin can accumulate.
const RECYCLE_AFTER_CALLS: u32 = 10_000;
/// Calls running at once; beyond this they wait for a turn.
const MAX_CONCURRENT_CALLS: usize = (engine::POOL_INSTANCES / 2) as usize;
/// Idle instances kept warm across all plugins; with the running ones this
/// never exceeds the engine's pool.
const MAX_IDLE: usize = (engine::POOL_INSTANCES / 2) as usize;

/// A version loaded and ready to serve calls, with its warm instances.
pub(super) struct Loaded {
    /// What was installed.
    pub info: InstalledPlugin,
    /// The linked component, of its contract version.
    pub prepared: Box<dyn Prepared>,
    /// What its instances may use.
    pub grants: Arc<Grants>,
    /// Instances of this version that finished a call cleanly.
    idle: std::sync::Mutex<Vec<Warm>>,
    /// The pool's count of idle instances across versions.
    idle_total: Arc<AtomicUsize>,
}

impl Loaded {
    /// A version ready to serve, counting its idle instances in `pool`.
    pub fn new(
        info: InstalledPlugin,
        prepared: Box<dyn Prepared>,
        grants: Arc<Grants>,
        pool: &Pool,
    ) -> Self {
        Self {
            info,
            prepared,
            grants,
            idle: std::sync::Mutex::new(Vec::new()),
            idle_total: pool.idle.clone(),
        }
    }
}

impl Drop for Loaded {
    // A version swapped out takes its idle instances with it: they no
    // longer count against the pool's warm set.
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |v| v.len());
        self.idle_total.fetch_sub(idle, Ordering::Relaxed);
    }
}

/// A plugin instance with its store, kept between calls.
pub(super) struct Warm {
    pub store: Store<PluginState>,
    /// Instantiated on the first call, inside that call's deadline.
    plugin: Option<Box<dyn Exports>>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// Output bytes already forwarded to the log.
    seen: (usize, usize),
    calls: u32,
}

impl Warm {
    /// The store and the instance (if made yet), borrowed apart.
    pub fn parts(&mut self) -> (&mut Store<PluginState>, &mut Option<Box<dyn Exports>>) {
        (&mut self.store, &mut self.plugin)
    }

    /// Counts the call and logs what it printed; returns its stderr (for
    /// panic messages).
    pub fn finish_call(&mut self, plugin: &str) -> String {
        self.calls += 1;
        let (out, err) = (self.stdout.contents(), self.stderr.contents());
        let new = |all: &[u8], seen: usize| {
            String::from_utf8_lossy(all.get(seen..).unwrap_or_default()).into_owned()
        };
        let (stdout, stderr) = (new(&out, self.seen.0), new(&err, self.seen.1));
        self.seen = (out.len(), err.len());
        // Each line escaped (a plugin must not forge log lines or drive a
        // terminal) and bounded, as the `log` capability's messages are.
        let lines = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(OUTPUT_LINES_PER_CALL + 1)
                .map(|l| log::bounded(l, log::MAX_MESSAGE))
                .collect();
            if lines.len() > OUTPUT_LINES_PER_CALL {
                lines.truncate(OUTPUT_LINES_PER_CALL);
                lines.push(format!(
                    "(more than {OUTPUT_LINES_PER_CALL} lines in one call; the rest are dropped)"
                ));
            }
            lines
        };
        for line in lines(&stdout) {
            tracing::info!(target: "plugin", plugin, "stdout: {line}");
        }
        for line in lines(&stderr) {
            tracing::warn!(target: "plugin", plugin, "stderr: {line}");
        }
        stderr
    }

    /// Whether it must not serve again: it has served its share, printed
    /// too much to keep, or never got an instance (its call failed first).
    fn spent(&self) -> bool {
        self.calls >= RECYCLE_AFTER_CALLS
            || self.seen.0 > OUTPUT_RECYCLE
            || self.seen.1 > OUTPUT_RECYCLE
            || self.plugin.is_none()
    }
}

/// Turns for running calls, and the count of idle instances.
pub(super) struct Pool {
    /// A call beyond [`MAX_CONCURRENT_CALLS`] waits for a turn instead of
    /// failing to find a free slot in the engine's pool.
    turns: Semaphore,
    idle: Arc<AtomicUsize>,
    /// Whether instances are kept at all (`Limits::reuse_instances`).
    reuse: bool,
}

impl Pool {
    pub fn new(reuse: bool) -> Self {
        Self {
            turns: Semaphore::new(MAX_CONCURRENT_CALLS),
            idle: Arc::new(AtomicUsize::new(0)),
            reuse,
        }
    }

    /// Wait for a turn to run a call; held until the call's instance is
    /// idle or dropped. The semaphore is never closed, so this only waits.
    pub async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        self.turns.acquire().await.ok()
    }

    /// An idle instance of `loaded`, if one is kept.
    pub fn take(&self, loaded: &Loaded) -> Option<Warm> {
        let warm = loaded
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()?;
        self.idle.fetch_sub(1, Ordering::Relaxed);
        Some(warm)
    }

    /// Keeps an instance that finished a call cleanly for the next call,
    /// unless it is spent or the warm set is full.
    pub fn keep(&self, loaded: &Loaded, warm: Warm) {
        if warm.spent() || !self.reuse {
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
}

impl Runtime {
    /// A new store for `loaded`, instantiated on its first call (inside
    /// that call's deadline).
    pub(super) fn new_warm(&self, loaded: &Loaded) -> Warm {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let state = PluginState::new(
            Capabilities::new(loaded.grants.clone(), self.services.clone()),
            self.limits.memory,
            stdout.clone(),
            stderr.clone(),
        );
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(engine::on_epoch_tick);
        Warm {
            store,
            plugin: None,
            stdout,
            stderr,
            seen: (0, 0),
            calls: 0,
        }
    }
}
