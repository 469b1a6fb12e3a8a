//! The journal's dead letters: call events the host gave up delivering (the
//! retry queue was full, or the event ran out of attempts or time). They are
//! kept in the store's `host/call-dead-letters`, at most
//! `JournalLimits::dead_letters_max` of them (the oldest goes first, with an
//! error in the log), until the administrator retries or discards them
//! (`/api/calls/dead-letters`, `pbx-host call dead-letters`, the portal).

use serde::{Deserialize, Serialize};

use super::{Delivery, Journal, Kept, Queued};
use crate::call_input::phase_name;
use crate::now_ms;
use crate::runtime::wit::CallEvent;
use crate::store::KvError;

/// The store namespace of the dead letters.
pub const DEAD_LETTER_NAMESPACE: &str = "host/call-dead-letters";

/// The longest dead letter id (`{ms:013}-{8 hex}` is 22 characters).
const MAX_ID_LEN: usize = 40;

/// A call event the host gave up delivering to one plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its id (time-ordered), for retry and discard.
    pub id: String,
    /// The plugin it was for.
    pub plugin: String,
    /// The call.
    pub call_id: String,
    /// The event's phase (`ringing`, `answered`, `ended`).
    pub phase: String,
    /// The event itself, as it is delivered again.
    #[serde(deserialize_with = "crate::call_input::stored_event")]
    pub event: CallEvent,
    /// Deliveries tried.
    pub attempts: u32,
    /// When it first failed, ms since the epoch.
    pub queued_at_ms: u64,
    /// When the host gave up, ms since the epoch.
    pub dead_at_ms: u64,
    /// Why the host gave up, naming the limit.
    pub reason: String,
    /// The last delivery's error.
    pub last_error: String,
}

/// Why a dead letter could not be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No dead letter has this id.
    #[error("no dead letter has the id {0:?}; `pbx-host call dead-letters` lists them")]
    NotFound(String),
    /// Its plugin is not installed (any more).
    #[error("the plugin {0:?} is not installed: install it again, or discard the dead letter")]
    NotInstalled(String),
    /// The delivery failed again; the dead letter stays.
    #[error("the delivery failed again ({0}); the dead letter is kept")]
    FailedAgain(String),
    /// The store failed.
    #[error("the dead letters cannot be read or written: {0}")]
    Store(#[from] KvError),
}

impl Journal {
    /// Move `entry` (queued under `queue_key`, or about to be) to the dead
    /// letters, keeping them bounded.
    pub(super) fn bury(&self, queue_key: &str, entry: Queued, reason: String) -> Kept {
        let now = now_ms();
        let id = format!("{now:013}-{}", hex::encode(rand::random::<[u8; 4]>()));
        let letter = DeadLetter {
            id: id.clone(),
            plugin: entry.plugin,
            call_id: entry.event.call_id.clone(),
            phase: phase_name(entry.event.phase).to_string(),
            event: entry.event,
            attempts: entry.attempts,
            queued_at_ms: entry.queued_at_ms,
            dead_at_ms: now,
            reason,
            last_error: entry.last_error,
        };
        let stored = serde_json::to_vec(&letter)
            .map_err(|e| e.to_string())
            .and_then(|bytes| self.dead.set(&id, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = stored {
            tracing::error!(
                plugin = %letter.plugin, call_id = %letter.call_id, phase = %letter.phase,
                "call event LOST: the host gave up delivering it ({}) and cannot keep it as a dead letter: {e}",
                letter.reason
            );
            let _ = self.queue.delete(queue_key);
            return Kept::Lost;
        }
        // Written first, removed second: a crash in between leaves it in
        // both places, never in neither.
        if let Err(e) = self.queue.delete(queue_key) {
            tracing::warn!(plugin = %letter.plugin, "cannot remove a dead letter from the retry queue: {e}");
        }
        tracing::error!(
            plugin = %letter.plugin, call_id = %letter.call_id, phase = %letter.phase,
            attempts = letter.attempts, dead_letter = %id,
            "call event moved to the dead letters: {}; last error: {}; `pbx-host call dead-letters` lists them, `call retry {id}` delivers it again",
            letter.reason, letter.last_error
        );
        self.trim_dead_letters();
        Kept::Dead(id)
    }

    /// Drop the oldest dead letters beyond the bound, loudly.
    fn trim_dead_letters(&self) {
        let Ok(mut ids) = self.dead.list_keys("") else {
            return;
        };
        if ids.len() <= self.limits.dead_letters_max {
            return;
        }
        ids.sort();
        let excess = ids.len() - self.limits.dead_letters_max;
        for id in &ids[..excess] {
            match self.dead.delete(id) {
                Ok(()) => tracing::error!(
                    dead_letter = %id,
                    "dead letter dropped: more than {} are kept (--journal-dead-letters-max)",
                    self.limits.dead_letters_max
                ),
                Err(e) => tracing::warn!(dead_letter = %id, "cannot drop a dead letter: {e}"),
            }
        }
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, KvError> {
        let mut ids = self.dead.list_keys("")?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(letter) = self.dead_letter(&id)? {
                out.push(letter);
            }
        }
        Ok(out)
    }

    /// The dead letter `id`, if there is one (an unreadable one is none).
    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, KvError> {
        if !valid_id(id) {
            return Ok(None);
        }
        Ok(self
            .dead
            .get(id)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Deliver the dead letter `id` again, once. Taken by the plugin or
    /// refused by it (it has seen the event), it is removed; failing in
    /// the runtime again, it stays.
    pub async fn retry_dead_letter(&self, id: &str) -> Result<Delivery, RetryError> {
        let letter = self
            .dead_letter(id)?
            .ok_or_else(|| RetryError::NotFound(id.to_string()))?;
        if !self.runtime.plugin_ids().contains(&letter.plugin) {
            return Err(RetryError::NotInstalled(letter.plugin));
        }
        let delivery = self
            .deliver_once(&letter.plugin, &letter.event, false)
            .await;
        if delivery.answered {
            self.dead.delete(id)?;
            tracing::info!(
                plugin = %letter.plugin, call_id = %letter.call_id, phase = %letter.phase,
                dead_letter = %id, ok = delivery.ok, "dead letter delivered again"
            );
            return Ok(delivery);
        }
        let error = delivery.error.clone().unwrap_or_default();
        let updated = DeadLetter {
            attempts: letter.attempts + 1,
            last_error: error.clone(),
            ..letter
        };
        if let Ok(bytes) = serde_json::to_vec(&updated) {
            self.dead.set(id, &bytes)?;
        }
        Err(RetryError::FailedAgain(error))
    }

    /// Remove the dead letter `id`; whether there was one.
    pub fn discard_dead_letter(&self, id: &str) -> Result<bool, KvError> {
        if !valid_id(id) || self.dead.get(id)?.is_none() {
            return Ok(false);
        }
        self.dead.delete(id)?;
        tracing::info!(dead_letter = %id, "dead letter discarded by the administrator");
        Ok(true)
    }

    /// How many dead letters there are.
    pub fn dead_letter_count(&self) -> usize {
        self.dead.list_keys("").map_or(0, |k| k.len())
    }
}

/// Ids are what `bury` makes: digits, hex and a dash.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_bury_makes_are_looked_up() {
        assert!(valid_id("1764920000000-0a1b2c3d"));
        for bad in ["", "../x", "a/b", "x y", &"1".repeat(41)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
