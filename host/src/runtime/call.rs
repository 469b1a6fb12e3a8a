//! Making one call into a plugin: a turn, a warm instance (or a new one),
//! the deadline and the memory cap, where the time went, and what a failure
//! means. A trap, an expired deadline or an exceeded limit costs only the
//! call: the host keeps serving, and the instance is dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use wasmtime::{Store, Trap};

use super::Runtime;
use super::pool::Loaded;
use super::state::PluginState;
use super::wit::{ErrorKind, Exports, PluginError, Unsupported};

/// One export call, as the handle builds it: given an instance and its
/// store, call an export; the answer is the plugin's yes or no.
pub(super) type ExportFn<T> = Box<
    dyn for<'a> FnOnce(
            &'a dyn Exports,
            &'a mut Store<PluginState>,
        ) -> BoxFuture<'a, wasmtime::Result<Result<T, PluginError>>>
        + Send,
>;

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
    /// The plugin is built against a contract version without the export
    /// asked for (e.g. agent sign-in before 0.3.0); nothing ran.
    #[error(
        "plugin {plugin} is built against pbx:crm@{api}, which has no {what}; ask its vendor for a version built against 0.3.0 or newer"
    )]
    Unsupported {
        /// The plugin.
        plugin: String,
        /// What it lacks, e.g. "agent sign-in".
        what: String,
        /// The contract version it is built against, e.g. "0.2.0".
        api: String,
    },
    /// The plugin ran and answered no; its message names the fix.
    #[error("{}", .error.message)]
    Refused {
        /// The plugin.
        plugin: String,
        /// What it answered.
        error: PluginError,
    },
}

impl CallError {
    /// The error's kind as the admin API names it (`deadline`,
    /// `invalid-input`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::NotInstalled(_) => "not-installed",
            CallError::Deadline { .. } => "deadline",
            CallError::MemoryLimit { .. } => "memory-limit",
            CallError::Trap { .. } => "plugin-failed",
            CallError::Unsupported { .. } => "unsupported",
            CallError::Refused { error, .. } => match error.kind {
                ErrorKind::InvalidInput => "invalid-input",
                ErrorKind::NotConfigured => "not-configured",
                ErrorKind::NotConnected => "not-connected",
                ErrorKind::AuthorizationFailed => "authorization-failed",
                ErrorKind::CrmUnavailable => "crm-unavailable",
                ErrorKind::RateLimited => "rate-limited",
                ErrorKind::Conflict => "conflict",
                ErrorKind::NotFound => "not-found",
                ErrorKind::Internal => "internal",
            },
        }
    }

    /// Whether the call failed on the host's side of the contract (a trap,
    /// the deadline, the memory cap): the plugin never decided, so what was
    /// asked may be asked again.
    pub fn failed_in_runtime(&self) -> bool {
        matches!(
            self,
            CallError::Deadline { .. } | CallError::MemoryLimit { .. } | CallError::Trap { .. }
        )
    }
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

impl Runtime {
    /// A call into a plugin's active version, also telling how long it took
    /// and how much of that the plugin spent waiting on outbound HTTP, so
    /// the host's and plugin's own overhead can be told from the remote
    /// side's time.
    pub(super) async fn call_timed<T: Send>(
        &self,
        plugin_id: &str,
        export: ExportFn<T>,
    ) -> (Result<T, CallError>, CallTiming) {
        let started = std::time::Instant::now();
        let mut timing = CallTiming::default();
        let mut busy = Duration::ZERO;
        let result = {
            let call = async {
                let loaded = self
                    .loaded_version(plugin_id)
                    .ok_or_else(|| CallError::NotInstalled(plugin_id.to_string()))?;
                self.call_loaded(plugin_id, loaded, export, &mut timing)
                    .await
            };
            let mut call = std::pin::pin!(call);
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

    /// A call into a given loaded version (the active one, or one about to
    /// become active for its migration), on a warm instance when one is
    /// idle (else a new one), under the deadline and memory cap.
    pub(super) async fn call_loaded<T: Send>(
        &self,
        plugin_id: &str,
        loaded: Arc<Loaded>,
        export: ExportFn<T>,
        timing: &mut CallTiming,
    ) -> Result<T, CallError> {
        timing.version = Some(loaded.info.manifest.version.as_str().into());
        // Held until this call's instance is idle or dropped.
        let _turn = self.shared.pool.turn().await;
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut warm = match self.shared.pool.take(&loaded) {
            Some(warm) => warm,
            None => {
                let started = std::time::Instant::now();
                let warm = self.new_warm(&loaded);
                self.counters
                    .instantiation_ns
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                warm
            }
        };
        let deadline = self.limits.deadline;
        warm.store
            .data_mut()
            .begin_call(std::time::Instant::now() + deadline);
        // The guest yields to the executor on every epoch tick (so a
        // CPU-bound call never holds a worker) and is interrupted at the
        // deadline: `engine::on_epoch_tick`.
        warm.store.set_epoch_deadline(1);

        let outcome = {
            let (store, plugin) = warm.parts();
            let prepared = &*loaded.prepared;
            let counters = &self.counters;
            let run = async move {
                let plugin = match plugin {
                    Some(plugin) => &**plugin,
                    None => {
                        let started = std::time::Instant::now();
                        let instance = prepared.instantiate(&mut *store).await?;
                        counters.instantiations.fetch_add(1, Ordering::Relaxed);
                        counters
                            .instantiation_ns
                            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        &**plugin.insert(instance)
                    }
                };
                export(plugin, store).await
            };
            // Epochs stop guest code; this stops a call stuck in a host call
            // (and, as guest code yields on every tick, a running one too).
            tokio::time::timeout(deadline, run).await
        };
        let state = warm.store.data();
        let memory_hit = state.limiter.hit;
        timing.http = state.caps.http_time();
        timing.http_fetches = state.caps.http_fetches();
        let stderr = warm.finish_call(plugin_id);
        // An export the version lacks ran no guest code: the instance is as
        // good as before.
        let unsupported = match &outcome {
            Ok(Err(e)) => e.downcast_ref::<Unsupported>().map(|u| u.what),
            _ => None,
        };
        if (matches!(outcome, Ok(Ok(_))) || unsupported.is_some()) && !memory_hit {
            self.shared.pool.keep(&loaded, warm);
        }
        if let Some(what) = unsupported {
            return Err(CallError::Unsupported {
                plugin: plugin_id.to_string(),
                what: what.to_string(),
                api: loaded.info.api_version.clone(),
            });
        }

        let error = match outcome {
            Ok(Ok(Ok(value))) => return Ok(value),
            // The plugin answered: a refusal, not a failure of the call.
            Ok(Ok(Err(error))) => {
                return Err(CallError::Refused {
                    plugin: plugin_id.to_string(),
                    error,
                });
            }
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
        // A panic's message is the plugin's text: escaped like its log.
        let logged = crate::capabilities::log::bounded(
            &error.to_string(),
            crate::capabilities::log::MAX_MESSAGE,
        );
        tracing::warn!(plugin = %plugin_id, "plugin call failed: {logged}");
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
