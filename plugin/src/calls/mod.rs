//! The calls feature: the `Calls` entry point the exports call, what its
//! parts share, and the event dispatch between them. Each part is a file:
//! caller lookup (`lookup`), the pop-up of the caller's record (`popup`),
//! the call journal that logs one Task per call id (`journal`), records for
//! unknown callers (`unknown`), several matching records offered to the
//! agent and the pick (`choice`) and click-to-call checks (`dial`); `ledger`
//! holds the per-call-id buckets the pop-up and the journal record in;
//! `work` adds after-call work and late recording links to a call's Task.

pub mod choice;
pub mod dial;
pub mod journal;
pub mod ledger;
pub mod lookup;
pub mod popup;
pub mod unknown;
pub mod work;

#[cfg(test)]
mod tests;

use crate::bindings::exports::pbx::crm::calls::{CallEvent, EventAction, EventOutcome, Phase};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::lease::{Lease, Until};
use crate::salesforce::Salesforce;
use crate::settings::{CallSettings, PopupOn, Settings};
use crate::store::{Batch, Store, keys};
use journal::Queued;
use ledger::outbox_key;
use lookup::{CACHE_MS, CachedLookup};
use unknown::{REMEMBER_MS, Remembered};
use work::{WORK_KEEP_MS, Work};

/// Bounded rounds of compare-and-swap retries.
const CAS_ROUNDS: usize = 16;
/// Pruning runs at most this often, and reads at most `PRUNE_MAX` keys.
const PRUNE_EVERY_MS: u64 = 10 * 60 * 1000;
const PRUNE_MAX: usize = 200;
/// A call id is the Task's `CallObject`, a 255-character field.
const MAX_CALL_ID: usize = 255;

/// A lease on an outbox item or on creating a record, stored as
/// `{"holder", "until_ms"}`.
pub type ItemLease = Lease<Until>;

/// The first `max` characters of `text`: Salesforce's text fields have a
/// length.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// One thing done with a call event, in words.
fn outcome(action: EventAction, detail: impl Into<String>) -> EventOutcome {
    EventOutcome {
        action,
        detail: detail.into(),
    }
}

/// Nothing done, and why.
fn skipped(why: impl Into<String>) -> EventOutcome {
    outcome(EventAction::Skipped, why)
}

/// The calls feature over a host.
pub struct Calls<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Calls<'h, H> {
    /// The feature over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    fn api(&self) -> Salesforce<'h, H> {
        Salesforce::new(self.host)
    }

    fn settings(&self) -> Result<CallSettings, PluginError> {
        Ok(self
            .store()
            .get::<Settings>(keys::SETTINGS)?
            .unwrap_or_default()
            .calls)
    }

    // --- events ---------------------------------------------------------

    /// Take one call event: the pop-up when its phase is the configured
    /// one, and for `ended` the call journal (queued, then delivered at
    /// once if Salesforce answers). Answers what was done, or why not.
    pub fn on_event(&self, e: &CallEvent) -> Result<Vec<EventOutcome>, PluginError> {
        if e.call_id.trim().is_empty() || e.call_id.chars().count() > MAX_CALL_ID {
            return Err(PluginError::InvalidInput(format!(
                "the call id must have 1 to {MAX_CALL_ID} characters (it becomes the Task's Call Object Identifier)"
            )));
        }
        if e.phase == Phase::RecordingReady {
            let Some(url) = e
                .recording_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
            else {
                return Err(PluginError::InvalidInput(
                    "a recording-ready event needs its recording-url".into(),
                ));
            };
            let work = Work {
                recording_url: Some(url.to_string()),
                ..Work::default()
            };
            return Ok(vec![self.add_work(&e.call_id, work)?]);
        }
        let settings = self.settings()?;
        let popup_phase = match settings.popup_on {
            PopupOn::Ringing => Some(Phase::Ringing),
            PopupOn::Answered => Some(Phase::Answered),
            PopupOn::Ended => Some(Phase::Ended),
            PopupOn::Never => None,
        };
        let mut done = Vec::new();
        if e.phase == Phase::Ended {
            let queued = self.enqueue(e, &settings)?;
            if popup_phase == Some(Phase::Ended) && queued != Queued::Known {
                done.push(self.popup(e));
            }
            done.push(match queued {
                Queued::Known => skipped(format!(
                    "call {} is logged already or waits to be (a repeated event)",
                    e.call_id
                )),
                Queued::Skipped(why) => skipped(why),
                Queued::Queued => match self.deliver(&outbox_key(&e.call_id)) {
                    Ok(Some(logged)) => outcome(EventAction::Logged, logged.describe()),
                    Ok(None) => outcome(
                        EventAction::Queued,
                        "the call log waits for Salesforce; it is delivered with the next pending run",
                    ),
                    Err(err) => {
                        self.host.log(
                            Level::Info,
                            &format!("call {} waits for Salesforce: {err}", e.call_id),
                        );
                        outcome(
                            EventAction::Queued,
                            format!("the call log waits for Salesforce: {err}"),
                        )
                    }
                },
            });
            return Ok(done);
        }
        match popup_phase {
            Some(phase) if phase == e.phase => {
                // Late events of a call already over are ignored.
                if self.is_over(&e.call_id)? {
                    return Ok(vec![skipped(format!(
                        "call {} is over already: no pop-up for a late event",
                        e.call_id
                    ))]);
                }
                done.push(self.popup(e));
            }
            Some(phase) => done.push(skipped(format!(
                "no pop-up while {}: the call settings open it when the call is {}",
                popup::phase_str(e.phase),
                popup::phase_str(phase)
            ))),
            None => done.push(skipped("pop-ups are off in the call settings")),
        }
        Ok(done)
    }

    /// Call logs waiting for Salesforce: the outbox's size. Counted, not
    /// kept in a counter: a counter every call updates would make all
    /// concurrent calls conflict on one key.
    pub fn pending(&self) -> u32 {
        self.store()
            .keys(keys::CALLS_OUTBOX_PREFIX)
            .map_or(0, |k| k.len() as u32)
    }

    /// Drop expired cache entries, remembered records and lapsed creation
    /// leases, at most every [`PRUNE_EVERY_MS`] and [`PRUNE_MAX`] keys.
    fn prune(&self, now: u64) {
        let store = self.store();
        let last: u64 = store.get(keys::CALLS_PRUNED_AT).ok().flatten().unwrap_or(0);
        if now.saturating_sub(last) < PRUNE_EVERY_MS && last <= now {
            return;
        }
        let _ = store.put(keys::CALLS_PRUNED_AT, &now);
        let mut budget = PRUNE_MAX;
        let mut sweep = |prefix: &str, expired: &dyn Fn(&[u8]) -> bool| {
            let Ok(list) = store.keys(prefix) else {
                return;
            };
            for key in list {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                if let Ok(Some(raw)) = store.get_raw(&key)
                    && expired(&raw)
                {
                    let _ = store.commit(&Batch::new().expect_raw(&key, Some(raw)).delete(&key));
                }
            }
        };
        sweep(keys::CALLS_LOOKUP_PREFIX, &|raw| {
            serde_json::from_slice::<CachedLookup>(raw)
                .map_or(true, |c| now.saturating_sub(c.at_ms) >= CACHE_MS)
        });
        sweep(keys::CALLS_CREATED_PREFIX, &|raw| {
            serde_json::from_slice::<Remembered>(raw)
                .map_or(true, |r| now.saturating_sub(r.created_at_ms) >= REMEMBER_MS)
        });
        sweep(keys::CALLS_WORK_PREFIX, &|raw| {
            serde_json::from_slice::<Work>(raw)
                .map_or(true, |w| now.saturating_sub(w.at_ms) >= WORK_KEEP_MS)
        });
        sweep(keys::CALLS_OFFERED_PREFIX, &|raw| {
            serde_json::from_slice::<choice::Offered>(raw).map_or(true, |o| {
                now.saturating_sub(o.at_ms) >= choice::OFFER_KEEP_MS
            })
        });
        sweep(keys::CALLS_CREATING_PREFIX, &|raw| {
            !ItemLease::live_raw(Some(raw), now)
        });
    }

    /// The status line for waiting call logs, if any wait.
    pub fn problem(&self) -> Option<String> {
        match self.pending() {
            0 => None,
            1 => Some("1 call log waiting for Salesforce; the PBX retries with back-off".into()),
            n => Some(format!(
                "{n} call logs waiting for Salesforce; the PBX retries with back-off"
            )),
        }
    }
}
