//! The journal's ticker: every interval (and right after an `ended` event)
//! it delivers due queued events again, then asks each plugin to deliver
//! its pending work (`run-pending`) and keeps the count it answers.

use std::sync::{Arc, Weak};

use serde::Serialize;
use tokio::task::JoinHandle;

use super::{Journal, Pending, Queued, expired};
use crate::call_input::phase_name;
use crate::now_ms;

/// What a tick did, for `POST /api/calls/run-pending`.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    /// Whether this replica redelivers the retry queue (it holds the
    /// journal's lease; always on an unshared store).
    pub redelivering: bool,
    /// Queued events delivered again (taken by the plugin, or refused by it).
    pub redelivered: usize,
    /// Queued events that failed again and stay queued.
    pub still_queued: usize,
    /// Queued events moved to the dead letters (out of attempts or time).
    pub dead_lettered: usize,
    /// Per plugin: its pending count and queue.
    pub plugins: Vec<PluginPending>,
    /// The PBX is suspended: nothing was delivered, and nothing is until
    /// it is resumed.
    pub paused: bool,
}

/// What `redeliver` did.
#[derive(Default)]
struct Redelivery {
    redelivered: usize,
    still_queued: usize,
    dead_lettered: usize,
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

impl Journal {
    /// One tick: deliver due queued events again (all of them with
    /// `all_due`), then let every plugin deliver its pending work. Ticks
    /// never overlap.
    pub async fn tick(&self, all_due: bool) -> TickReport {
        let _one = self.tick.lock().await;
        if self.paused.load(std::sync::atomic::Ordering::Relaxed) {
            return TickReport {
                redelivering: false,
                redelivered: 0,
                still_queued: 0,
                dead_lettered: 0,
                plugins: Vec::new(),
                paused: true,
            };
        }
        let redelivering = match &self.lease {
            None => true,
            Some(lease) => match lease.hold(now_ms()) {
                Ok(fence) => fence.is_some(),
                Err(e) => {
                    tracing::warn!("cannot hold the journal's lease: {e}");
                    false
                }
            },
        };
        let Redelivery {
            redelivered,
            still_queued,
            dead_lettered,
        } = if redelivering {
            self.redeliver(all_due).await
        } else {
            Redelivery::default()
        };
        let mut plugins = Vec::new();
        for id in self.runtime.plugin_ids() {
            let pending = match self.runtime.plugin(&id).run_pending().await {
                Ok(count) => Pending {
                    count: Some(count),
                    checked_at_ms: now_ms(),
                    error: None,
                },
                Err(e) => {
                    tracing::debug!(plugin = %id, "run-pending: {e}");
                    Pending {
                        count: self.pending(&id).count,
                        checked_at_ms: now_ms(),
                        error: Some(e.to_string()),
                    }
                }
            };
            plugins.push(PluginPending {
                plugin: id.clone(),
                pending_call_logs: pending.count,
                queued_call_events: self.queued(&id),
                error: pending.error.clone(),
            });
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, pending);
        }
        TickReport {
            redelivering,
            redelivered,
            still_queued,
            dead_lettered,
            plugins,
            paused: false,
        }
    }

    /// Deliver queued events that are due (or all of them), oldest call
    /// first and in phase order within a call; events past the journal's
    /// age limit (also those of a plugin no longer installed) become dead
    /// letters.
    async fn redeliver(&self, all_due: bool) -> Redelivery {
        let mut counts = Redelivery::default();
        let keys = match self.queue.list_keys("") {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!("cannot read the call-event retry queue: {e}");
                return counts;
            }
        };
        let mut entries: Vec<Queued> = keys
            .iter()
            .filter_map(|k| self.queue.get(k).ok().flatten())
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
        let installed = self.runtime.plugin_ids();
        for q in entries {
            if let Some(reason) = expired(&self.limits, &q, now) {
                let key = Self::key(&q.plugin, &q.event);
                self.bury(&key, q, reason);
                counts.dead_lettered += 1;
                continue;
            }
            if !installed.contains(&q.plugin) || (!all_due && q.next_at_ms > now) {
                continue;
            }
            let delivery = self.deliver_to(&q.plugin, &q.event).await;
            if delivery.queued {
                counts.still_queued += 1;
            } else if delivery.dead_letter.is_some() {
                counts.dead_lettered += 1;
            } else {
                counts.redelivered += 1;
                tracing::info!(
                    plugin = %q.plugin, call_id = %q.event.call_id, phase = phase_name(q.event.phase),
                    attempts = q.attempts + 1, "queued call event delivered again"
                );
            }
        }
        if counts.redelivered > 0 {
            self.kick();
        }
        counts
    }

    /// Start the ticker; it stops when the journal is gone.
    pub fn spawn_ticker(self: &Arc<Self>) -> JoinHandle<()> {
        let weak: Weak<Journal> = Arc::downgrade(self);
        let interval = self.interval;
        tokio::spawn(async move {
            // A first tick right away: events queued before a restart go
            // out now, and the status has a count.
            let mut first = true;
            loop {
                if !first {
                    let Some(journal) = weak.upgrade() else {
                        return;
                    };
                    let kicked = async { journal.kick.notified().await };
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        () = kicked => {}
                    }
                }
                first = false;
                let Some(journal) = weak.upgrade() else {
                    return;
                };
                journal.tick(false).await;
            }
        })
    }
}
