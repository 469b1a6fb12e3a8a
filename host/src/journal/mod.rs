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
//!
//! The queue is bounded (`JournalLimits`): at most `queue_max` entries, each
//! tried at most `max_attempts` times within `max_age`. What does not fit or
//! runs out goes to the dead letters (`dead`), never silently away.

mod dead;
mod deliver;
mod lease;
mod ticker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use dead::{DEAD_LETTER_NAMESPACE, DeadLetter, RetryError};
pub use deliver::Delivery;
pub use lease::{LEASES_NAMESPACE, Lease};
pub use ticker::{PluginPending, TickReport};

use crate::call_input::phase_name;
use crate::runtime::Runtime;
use crate::runtime::wit::CallEvent;
use crate::store::{Namespace, Quota, Store};

/// The store namespace of the retry queue.
pub const QUEUE_NAMESPACE: &str = "host/call-events";
/// Longest wait between two attempts of a queued event.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The bounds of the retry queue and of the dead letters (`serve` flags
/// `--journal-queue-max`, `--journal-max-attempts`, `--journal-max-age-s`,
/// `--journal-dead-letters-max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalLimits {
    /// Events the retry queue holds at most; a new failed event beyond
    /// that is a dead letter at once.
    pub queue_max: usize,
    /// Deliveries of one event at most (the first included); then it is a
    /// dead letter.
    pub max_attempts: u32,
    /// How long an event stays queued at most; then it is a dead letter.
    pub max_age: Duration,
    /// Dead letters kept at most; beyond that the oldest is dropped, with
    /// an error in the log.
    pub dead_letters_max: usize,
}

impl Default for JournalLimits {
    fn default() -> Self {
        Self {
            queue_max: 10_000,
            max_attempts: 20,
            max_age: Duration::from_secs(24 * 3600),
            dead_letters_max: 1_000,
        }
    }
}

/// How long the journal's lease lasts after a tick renewed it: three
/// ticks, and never under 5 s, so a busy replica keeps it and a dead one
/// hands it over within seconds.
fn lease_time(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(5))
}

/// One entry of the retry queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Queued {
    plugin: String,
    #[serde(deserialize_with = "crate::call_input::stored_event")]
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
    dead: Namespace,
    limits: JournalLimits,
    pending: Mutex<HashMap<String, Pending>>,
    kick: Notify,
    tick: tokio::sync::Mutex<()>,
    interval: Duration,
    /// On a shared store, only the replica holding it redelivers the queue.
    lease: Option<Lease>,
    /// Set while the PBX is suspended: its ticks deliver nothing.
    paused: std::sync::atomic::AtomicBool,
}

impl Journal {
    /// The journal delivering to `runtime`'s plugins, its queue and dead
    /// letters in `store` (bounded by `limits`), ticking every `interval`.
    pub fn new(
        runtime: Arc<Runtime>,
        store: &Store,
        interval: Duration,
        limits: JournalLimits,
    ) -> Self {
        Self {
            runtime,
            // Bounded by `limits` here, not by a store quota: a full queue
            // must become dead letters, not a store error.
            queue: store.namespace(QUEUE_NAMESPACE, Quota::UNLIMITED),
            dead: store.namespace(DEAD_LETTER_NAMESPACE, Quota::UNLIMITED),
            limits,
            pending: Mutex::new(HashMap::new()),
            kick: Notify::new(),
            tick: tokio::sync::Mutex::new(()),
            interval,
            lease: store
                .is_shared()
                .then(|| Lease::new(store, "journal", lease_time(interval))),
            paused: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Hold every delivery (the operator suspended the PBX: nothing goes
    /// to its CRM on its behalf), or let them go again, at once.
    pub fn pause(&self, paused: bool) {
        let was = self
            .paused
            .swap(paused, std::sync::atomic::Ordering::Relaxed);
        if was && !paused {
            self.kick.notify_one();
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

    /// Keep an event whose delivery failed in the runtime: in the retry
    /// queue, or as a dead letter when the queue is full or the event has
    /// run out of attempts or time.
    fn enqueue(&self, plugin: &str, event: &CallEvent, error: &str) -> Kept {
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
            queued_at_ms: previous.as_ref().map_or(now, |q| q.queued_at_ms),
            next_at_ms: now + backoff(self.interval, attempts).as_millis() as u64,
            last_error: error.to_string(),
        };
        if let Some(reason) = self.why_dead(&entry, previous.is_none(), now) {
            return self.bury(&key, entry, reason);
        }
        let stored = serde_json::to_vec(&entry)
            .map_err(|e| e.to_string())
            .and_then(|bytes| self.queue.set(&key, &bytes).map_err(|e| e.to_string()));
        match stored {
            Ok(()) => {
                tracing::warn!(
                    %plugin, call_id = %event.call_id, phase = phase_name(event.phase), attempts,
                    "call event kept for another delivery: {error}"
                );
                Kept::Queued
            }
            // The store failing too is the one way an event can be lost:
            // say so loudly.
            Err(e) => {
                tracing::error!(
                    %plugin, call_id = %event.call_id, phase = phase_name(event.phase),
                    "call event LOST: the plugin call failed ({error}) and the retry queue cannot store it: {e}"
                );
                Kept::Lost
            }
        }
    }

    /// Why `entry` must not (or no longer) wait in the queue, if so.
    fn why_dead(&self, entry: &Queued, new: bool, now: u64) -> Option<String> {
        // Counting the queue costs a key scan: only for a new entry.
        let queued = if new {
            self.queue.list_keys("").map_or(0, |k| k.len())
        } else {
            0
        };
        dead_reason(&self.limits, new.then_some(queued), entry, now)
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

/// Why an event that just failed must become a dead letter, if it must:
/// `queued` is the queue's length when the event is new to it (it would
/// take one more place).
fn dead_reason(
    limits: &JournalLimits,
    queued: Option<usize>,
    entry: &Queued,
    now: u64,
) -> Option<String> {
    if queued.is_some_and(|n| n >= limits.queue_max) {
        return Some(format!(
            "the retry queue is full ({} events; raise --journal-queue-max or fix the plugin)",
            limits.queue_max
        ));
    }
    if entry.attempts >= limits.max_attempts {
        return Some(format!(
            "delivery failed {} times (--journal-max-attempts)",
            entry.attempts
        ));
    }
    expired(limits, entry, now)
}

/// Why an event has waited too long, if it has.
fn expired(limits: &JournalLimits, entry: &Queued, now: u64) -> Option<String> {
    let age = Duration::from_millis(now.saturating_sub(entry.queued_at_ms));
    (age >= limits.max_age).then(|| {
        format!(
            "not delivered within {} s (--journal-max-age-s)",
            limits.max_age.as_secs()
        )
    })
}

/// Where a failed event went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kept {
    /// Into the retry queue.
    Queued,
    /// To the dead letters, with this id.
    Dead(String),
    /// Nowhere: the store failed (logged as an error).
    Lost,
}

fn backoff(interval: Duration, attempts: u32) -> Duration {
    interval
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attempts: u32, queued_at_ms: u64) -> Queued {
        Queued {
            plugin: "p".into(),
            event: crate::call_input::parse_event(
                br#"{"call_id": "c", "phase": "ringing", "direction": "inbound",
                     "external_number": "+14155550100", "extension": "1001",
                     "started_at_ms": 1}"#,
                "US",
                &jiff::tz::TimeZone::UTC,
            )
            .expect("a call event"),
            attempts,
            queued_at_ms,
            next_at_ms: 0,
            last_error: "trap".into(),
        }
    }

    #[test]
    fn an_event_is_a_dead_letter_when_the_queue_is_full_or_it_runs_out() {
        let limits = JournalLimits {
            queue_max: 2,
            max_attempts: 3,
            max_age: Duration::from_secs(60),
            dead_letters_max: 5,
        };
        let now = 1_000_000;
        // Room, attempts and time left: it waits.
        assert_eq!(dead_reason(&limits, Some(1), &entry(1, now), now), None);
        assert_eq!(
            dead_reason(&limits, None, &entry(2, now - 59_999), now),
            None
        );
        // A new event and a full queue.
        let full = dead_reason(&limits, Some(2), &entry(1, now), now);
        assert!(full.is_some_and(|r| r.contains("--journal-queue-max")));
        // An event already queued is never refused for the queue's length.
        assert_eq!(dead_reason(&limits, None, &entry(2, now), now), None);
        // Out of attempts.
        let tired = dead_reason(&limits, None, &entry(3, now), now);
        assert!(tired.is_some_and(|r| r.contains("--journal-max-attempts")));
        // Out of time.
        let old = dead_reason(&limits, None, &entry(2, now - 60_000), now);
        assert!(old.is_some_and(|r| r.contains("--journal-max-age-s")));
        assert!(expired(&limits, &entry(1, now - 60_000), now).is_some());
        assert!(expired(&limits, &entry(1, now - 1), now).is_none());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let i = Duration::from_secs(5);
        assert_eq!(backoff(i, 1), Duration::from_secs(5));
        assert_eq!(backoff(i, 2), Duration::from_secs(10));
        assert_eq!(backoff(i, 3), Duration::from_secs(20));
        assert_eq!(backoff(i, 30), MAX_BACKOFF);
    }
}
