//! The host's call journal: call events from the PBX go to every CRM
//! plugin's `on-call-event` (`deliver`), and a ticker lets each plugin
//! deliver its pending work (`ticker`).
//!
//! A plugin that answers (yes or no) has the event: it keeps its own outbox.
//! A call that fails on the host's side of the contract (a trap, the
//! deadline, the memory cap) is kept here, in the store's
//! `host/call-events` (one entry per plugin, call and phase), and delivered
//! again by the ticker; the call id makes that safe. The ticker also keeps
//! each plugin's answer to `run-pending`, for the status.

mod deliver;
mod ticker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use deliver::Delivery;
pub use ticker::{PluginPending, TickReport};

use crate::call_input::phase_name;
use crate::runtime::Runtime;
use crate::runtime::wit::CallEvent;
use crate::store::{Namespace, Quota, Store};

/// The store namespace of the retry queue.
pub const QUEUE_NAMESPACE: &str = "host/call-events";
/// Longest wait between two attempts of a queued event.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

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
    runtime: Arc<Runtime>,
    queue: Namespace,
    pending: Mutex<HashMap<String, Pending>>,
    kick: Notify,
    tick: tokio::sync::Mutex<()>,
    interval: Duration,
}

impl Journal {
    /// The journal delivering to `runtime`'s plugins, its queue in `store`,
    /// ticking every `interval`.
    pub fn new(runtime: Arc<Runtime>, store: &Store, interval: Duration) -> Self {
        Self {
            runtime,
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
        let now = crate::now_ms();
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
