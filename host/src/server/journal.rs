//! Call events to the plugins, and the call ticker.
//!
//! Every event goes to every installed CRM plugin's `on-call-event`. A plugin
//! that answers (yes or no) has it: it keeps its own outbox. A call that
//! fails on the host's side of the contract (a trap, the deadline, the
//! memory cap) is kept in the store (`host/call-events`, one entry per
//! plugin, call and phase) and delivered again by the ticker; the call id
//! makes that safe. The ticker also calls each plugin's `run-pending` and
//! keeps the count it answers, for the status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::AppState;
use super::call_input::phase_name;
use crate::capabilities::calls_export::{CallEvent, Phase};
use crate::runtime::CallError;
use crate::store::{Namespace, Quota, Store};

/// The store namespace of the retry queue.
pub const QUEUE_NAMESPACE: &str = "host/call-events";
/// Longest wait between two attempts of a queued event.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What happened to an event at one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The plugin.
    pub plugin: String,
    /// The plugin took the event.
    pub ok: bool,
    /// Kept in the host's retry queue (the call itself failed).
    pub queued: bool,
    /// The plugin's or the runtime's error kind, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Why not, naming the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The whole plugin call, in microseconds.
    pub call_us: u64,
    /// Of that, time spent in the plugin's outbound HTTP (the CRM's time).
    pub http_us: u64,
    /// Of that, time the call ran on a CPU (host and plugin work, no
    /// waiting), in microseconds.
    pub busy_us: u64,
}

/// One entry of the retry queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Queued {
    plugin: String,
    event: CallEvent,
    attempts: u32,
    queued_at_ms: u64,
    next_at_ms: u64,
    last_error: String,
}

/// The last `run-pending` answer of a plugin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pending {
    /// Items the plugin still has to deliver (its call logs).
    pub count: Option<u32>,
    /// When it was asked, ms since the epoch.
    pub checked_at_ms: u64,
    /// Why the last run failed, if it did.
    pub error: Option<String>,
}

/// The call journal of the host: retry queue, pending counts, ticker.
pub struct Journal {
    queue: Namespace,
    pending: Mutex<HashMap<String, Pending>>,
    kick: Notify,
    tick: tokio::sync::Mutex<()>,
    interval: Duration,
}

impl Journal {
    /// The journal over `store`, ticking every `interval`.
    pub fn new(store: &Store, interval: Duration) -> Self {
        Self {
            queue: store.namespace(QUEUE_NAMESPACE, Quota::UNLIMITED),
            pending: Mutex::new(HashMap::new()),
            kick: Notify::new(),
            tick: tokio::sync::Mutex::new(()),
            interval,
        }
    }

    /// Run a tick soon (after an `ended` event).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// The last pending count of `plugin`.
    pub fn pending(&self, plugin: &str) -> Pending {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .cloned()
            .unwrap_or_default()
    }

    /// Events of `plugin` waiting in the host's retry queue.
    pub fn queued(&self, plugin: &str) -> usize {
        self.queue
            .list_keys(&format!("{plugin}/"))
            .map_or(0, |k| k.len())
    }

    fn key(plugin: &str, event: &CallEvent) -> String {
        // One entry per plugin, call and phase: the same event failing twice
        // (the PBX sent it again) is kept once.
        format!("{plugin}/{}/{}", event.call_id, phase_name(event.phase))
    }

    fn enqueue(&self, plugin: &str, event: &CallEvent, error: &str) {
        let key = Self::key(plugin, event);
        let now = now_ms();
        let previous: Option<Queued> = self
            .queue
            .get(&key)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok());
        let attempts = previous.as_ref().map_or(1, |q| q.attempts + 1);
        let entry = Queued {
            plugin: plugin.to_string(),
            event: event.clone(),
            attempts,
            queued_at_ms: previous.map_or(now, |q| q.queued_at_ms),
            next_at_ms: now + backoff(self.interval, attempts).as_millis() as u64,
            last_error: error.to_string(),
        };
        let stored = serde_json::to_vec(&entry)
            .map_err(|e| e.to_string())
            .and_then(|bytes| self.queue.set(&key, &bytes).map_err(|e| e.to_string()));
        match stored {
            Ok(()) => tracing::warn!(
                %plugin, call_id = %event.call_id, phase = phase_name(event.phase), attempts,
                "call event kept for another delivery: {error}"
            ),
            // The store failing too is the one way an event can be lost:
            // say so loudly.
            Err(e) => tracing::error!(
                %plugin, call_id = %event.call_id, phase = phase_name(event.phase),
                "call event LOST: the plugin call failed ({error}) and the retry queue cannot store it: {e}"
            ),
        }
    }

    fn dequeue(&self, plugin: &str, event: &CallEvent) {
        let key = Self::key(plugin, event);
        if matches!(self.queue.get(&key), Ok(Some(_)))
            && let Err(e) = self.queue.delete(&key)
        {
            tracing::warn!(%plugin, "cannot remove a delivered call event from the retry queue: {e}");
        }
    }
}

fn backoff(interval: Duration, attempts: u32) -> Duration {
    interval
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Deliver `event` to every installed plugin; a failed call is queued.
pub async fn deliver(st: &AppState, event: &CallEvent) -> Vec<Delivery> {
    let mut out = Vec::new();
    for plugin in st.runtime.plugins() {
        let id = plugin.manifest.id;
        out.push(deliver_to(st, &id, event).await);
    }
    if event.phase == Phase::Ended {
        st.journal.kick();
    }
    out
}

async fn deliver_to(st: &AppState, plugin: &str, event: &CallEvent) -> Delivery {
    let call = event.clone();
    let (result, timing) = st
        .runtime
        .call_timed(plugin, move |p, s| {
            Box::pin(async move { p.on_call_event(s, &call).await })
        })
        .await;
    let mut delivery = Delivery {
        plugin: plugin.to_string(),
        ok: false,
        queued: false,
        kind: None,
        error: None,
        call_us: timing.total.as_micros() as u64,
        http_us: timing.http.as_micros() as u64,
        busy_us: timing.busy.as_micros() as u64,
    };
    match result {
        Ok(Ok(())) => {
            delivery.ok = true;
            st.journal.dequeue(plugin, event);
        }
        Ok(Err(e)) => {
            // The plugin answered: it has seen the event and decided.
            tracing::warn!(
                %plugin, call_id = %event.call_id, phase = phase_name(event.phase),
                "the plugin refused a call event: {}", e.message
            );
            st.journal.dequeue(plugin, event);
            let api: super::api::ApiError = e.into();
            delivery.kind = Some(api.kind().to_string());
            delivery.error = Some(api.message().to_string());
        }
        Err(e @ CallError::NotInstalled(_)) => {
            delivery.kind = Some("not-installed".into());
            delivery.error = Some(e.to_string());
        }
        Err(e) => {
            let message = e.to_string();
            st.journal.enqueue(plugin, event, &message);
            delivery.queued = true;
            delivery.kind = Some(
                match e {
                    CallError::Deadline { .. } => "deadline",
                    CallError::MemoryLimit { .. } => "memory-limit",
                    _ => "plugin-failed",
                }
                .into(),
            );
            delivery.error = Some(format!(
                "{message}; the host keeps the event and delivers it again"
            ));
        }
    }
    delivery
}

/// What a tick did, for `POST /api/calls/run-pending`.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    /// Queued events delivered again (taken by the plugin, or refused by it).
    pub redelivered: usize,
    /// Queued events that failed again and stay queued.
    pub still_queued: usize,
    /// Per plugin: its pending count and queue.
    pub plugins: Vec<PluginPending>,
}

/// One plugin's line of a tick report.
#[derive(Debug, Clone, Serialize)]
pub struct PluginPending {
    /// The plugin.
    pub plugin: String,
    /// Its `run-pending` answer.
    pub pending_call_logs: Option<u32>,
    /// Events in the host's retry queue for it.
    pub queued_call_events: usize,
    /// Why `run-pending` failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One tick: deliver due queued events again, then let every plugin deliver
/// its pending work. Ticks never overlap.
pub async fn tick(st: &AppState, all_due: bool) -> TickReport {
    let _one = st.journal.tick.lock().await;
    let (redelivered, still_queued) = redeliver(st, all_due).await;
    let mut plugins = Vec::new();
    for plugin in st.runtime.plugins() {
        let id = plugin.manifest.id;
        let result = st
            .runtime
            .call(&id, |p, s| Box::pin(p.run_pending(s)))
            .await;
        let pending = match result {
            Ok(Ok(count)) => Pending {
                count: Some(count),
                checked_at_ms: now_ms(),
                error: None,
            },
            Ok(Err(e)) => {
                tracing::debug!(plugin = %id, "run-pending: {}", e.message);
                Pending {
                    count: st.journal.pending(&id).count,
                    checked_at_ms: now_ms(),
                    error: Some(e.message),
                }
            }
            Err(e) => Pending {
                count: st.journal.pending(&id).count,
                checked_at_ms: now_ms(),
                error: Some(e.to_string()),
            },
        };
        plugins.push(PluginPending {
            plugin: id.clone(),
            pending_call_logs: pending.count,
            queued_call_events: st.journal.queued(&id),
            error: pending.error.clone(),
        });
        st.journal
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, pending);
    }
    TickReport {
        redelivered,
        still_queued,
        plugins,
    }
}

/// Deliver queued events that are due (or all of them), oldest call first
/// and in phase order within a call.
async fn redeliver(st: &AppState, all_due: bool) -> (usize, usize) {
    let keys = match st.journal.queue.list_keys("") {
        Ok(keys) => keys,
        Err(e) => {
            tracing::error!("cannot read the call-event retry queue: {e}");
            return (0, 0);
        }
    };
    let mut entries: Vec<Queued> = keys
        .iter()
        .filter_map(|k| st.journal.queue.get(k).ok().flatten())
        .filter_map(|v| serde_json::from_slice(&v).ok())
        .collect();
    entries.sort_by_key(|q| {
        (
            q.event.started_at_ms,
            q.event.call_id.clone(),
            q.event.phase as u8,
        )
    });
    let now = now_ms();
    let installed: Vec<String> = st
        .runtime
        .plugins()
        .into_iter()
        .map(|p| p.manifest.id)
        .collect();
    let (mut done, mut again) = (0, 0);
    for q in entries {
        if !installed.contains(&q.plugin) || (!all_due && q.next_at_ms > now) {
            continue;
        }
        let delivery = deliver_to(st, &q.plugin, &q.event).await;
        if delivery.queued {
            again += 1;
        } else {
            done += 1;
            tracing::info!(
                plugin = %q.plugin, call_id = %q.event.call_id, phase = phase_name(q.event.phase),
                attempts = q.attempts + 1, "queued call event delivered again"
            );
        }
    }
    if done > 0 {
        st.journal.kick();
    }
    (done, again)
}

/// Start the ticker; it stops when the host's state is gone.
pub fn spawn_ticker(state: &Arc<AppState>) -> JoinHandle<()> {
    let weak: Weak<AppState> = Arc::downgrade(state);
    let interval = state.journal.interval;
    tokio::spawn(async move {
        // A first tick right away: events queued before a restart go out
        // now, and the status has a count.
        let mut first = true;
        loop {
            if !first {
                let Some(st) = weak.upgrade() else { return };
                let kicked = async { st.journal.kick.notified().await };
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = kicked => {}
                }
            }
            first = false;
            let Some(st) = weak.upgrade() else { return };
            tick(&st, false).await;
        }
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let i = Duration::from_secs(5);
        assert_eq!(backoff(i, 1), Duration::from_secs(5));
        assert_eq!(backoff(i, 2), Duration::from_secs(10));
        assert_eq!(backoff(i, 3), Duration::from_secs(20));
        assert_eq!(backoff(i, 30), MAX_BACKOFF);
    }
}
