//! After-call work and late recording links: the agent's notes and
//! disposition, and a `recording-ready` event's link, added to the one Task
//! of a call. Exactly once: a Task already written is updated (PATCH); a log
//! still in the outbox takes the work into its item; work for a call that
//! has not ended waits under `calls/work/<call id>` and moves into the
//! outbox item when it does (journal `enqueue`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::journal::{DONE_KEEP_MS, MAX_DESCRIPTION, OutboxItem};
use super::ledger::{bucket_key, busy, key_part, outbox_key, read_ledger};
use super::{CAS_ROUNDS, Calls, cut, outcome, skipped};
use crate::bindings::exports::pbx::crm::calls::{EventAction, EventOutcome};
use crate::error::PluginError;
use crate::host::Host;
use crate::salesforce::query::soql_quote;
use crate::store::{Batch, keys};

/// The heading the agent's notes stand under in the Task's Comments.
const NOTES_HEADING: &str = "\n\nAgent notes:\n";
/// Work for a call that never ends is dropped after this long.
pub const WORK_KEEP_MS: u64 = DONE_KEEP_MS;

/// What is added to a call's Task after the call: each part, when present,
/// replaces what was added before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// The agent's notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// The agent's disposition (the Task's `CallDisposition`).
    #[serde(default)]
    pub disposition: Option<String>,
    /// The recording's link.
    #[serde(default)]
    pub recording_url: Option<String>,
    /// When it was last saved, ms since the Unix epoch (for pruning).
    #[serde(default)]
    pub at_ms: u64,
}

/// The key of work waiting for `call_id` to end.
pub fn work_key(call_id: &str) -> String {
    format!("{}{}", keys::CALLS_WORK_PREFIX, key_part(call_id))
}

impl Work {
    /// `self` with what `newer` has replacing it.
    pub fn merged(self, newer: &Work) -> Work {
        Work {
            notes: newer.notes.clone().or(self.notes),
            disposition: newer.disposition.clone().or(self.disposition),
            recording_url: newer.recording_url.clone().or(self.recording_url),
            at_ms: newer.at_ms.max(self.at_ms),
        }
    }

    /// The Task's Comments `current` with this work in it: the recording's
    /// line once, and the notes under their heading (replacing earlier
    /// notes), so saving the same work twice changes nothing.
    pub fn description(&self, current: &str) -> String {
        let (base, old_notes) = match current.find(NOTES_HEADING) {
            Some(i) => (&current[..i], Some(&current[i + NOTES_HEADING.len()..])),
            None => (current, None),
        };
        let mut text = base.to_string();
        if let Some(url) = &self.recording_url {
            let line = format!("Recording: {}", cut(url, 2000));
            if !text.lines().any(|l| l == line) {
                text.push('\n');
                text.push_str(&line);
            }
        }
        let notes = self.notes.as_deref().or(old_notes).map(str::trim);
        if let Some(notes) = notes.filter(|n| !n.is_empty()) {
            text.push_str(NOTES_HEADING);
            text.push_str(notes);
        }
        cut(&text, MAX_DESCRIPTION)
    }

    /// What it adds, in words: "notes and disposition", "the recording".
    fn what(&self) -> String {
        let mut parts = Vec::new();
        if self.notes.is_some() {
            parts.push("the agent's notes");
        }
        if self.disposition.is_some() {
            parts.push("the disposition");
        }
        if self.recording_url.is_some() {
            parts.push("the recording link");
        }
        match parts.as_slice() {
            [] => "nothing new".into(),
            [one] => (*one).into(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        }
    }
}

impl<H: Host> Calls<'_, H> {
    /// Add `work` to the Task of `call_id`, exactly once (see the module's
    /// comment): what was done, in words.
    pub fn add_work(&self, call_id: &str, work: Work) -> Result<EventOutcome, PluginError> {
        let store = self.store();
        let work = Work {
            at_ms: self.host.now_ms(),
            ..work
        };
        let what = work.what();
        let okey = outbox_key(call_id);
        let done_key = bucket_key(keys::CALLS_DONE_PREFIX, call_id);
        let wkey = work_key(call_id);
        for _ in 0..CAS_ROUNDS {
            if let Some((mut item, raw)) = store.get_with_raw::<OutboxItem>(&okey)? {
                item.work = Some(item.work.take().unwrap_or_default().merged(&work));
                match store.commit(
                    &Batch::new()
                        .expect_raw(&okey, Some(raw))
                        .set(&okey, &item)?,
                ) {
                    Ok(()) => {}
                    Err(PluginError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
                return Ok(match self.deliver(&okey) {
                    Ok(Some(logged)) => outcome(
                        EventAction::Logged,
                        format!("{} with {what}", logged.describe()),
                    ),
                    Ok(None) | Err(_) => outcome(
                        EventAction::Queued,
                        format!("{what} waits with the call's log for Salesforce"),
                    ),
                });
            }
            let (done, done_raw) = read_ledger(&store, &done_key)?;
            if done.entries.contains_key(call_id) {
                return Ok(match self.existing_task(call_id)? {
                    Some(id) => {
                        self.patch_task(&id, &work)?;
                        outcome(
                            EventAction::Updated,
                            format!("Task {id} updated with {what}"),
                        )
                    }
                    None => skipped(format!(
                        "call {call_id} is not logged (call settings), so {what} has no Task to go to"
                    )),
                });
            }
            let (earlier, wraw) = match store.get_raw(&wkey)? {
                Some(raw) => (
                    serde_json::from_slice::<Work>(&raw).unwrap_or_default(),
                    Some(raw),
                ),
                None => (Work::default(), None),
            };
            let batch = Batch::new()
                .expect_raw(&okey, None)
                .expect_raw(&done_key, done_raw)
                .expect_raw(&wkey, wraw)
                .set(&wkey, &earlier.merged(&work))?;
            match store.commit(&batch) {
                Ok(()) => {
                    return Ok(outcome(
                        EventAction::Queued,
                        format!(
                            "call {call_id} has not ended: {what} is added to its Task when it is logged"
                        ),
                    ));
                }
                Err(PluginError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy())
    }

    /// Update Task `id` with `work`: its Comments and disposition.
    pub(super) fn patch_task(&self, id: &str, work: &Work) -> Result<(), PluginError> {
        #[derive(Deserialize)]
        struct Row {
            #[serde(rename = "Description", default)]
            description: Option<String>,
        }
        let rows: Vec<Row> = self.api().query(&format!(
            "SELECT Description FROM Task WHERE Id = '{}' LIMIT 1",
            soql_quote(id)
        ))?;
        let current = rows
            .into_iter()
            .next()
            .and_then(|r| r.description)
            .unwrap_or_default();
        let mut body = json!({ "Description": work.description(&current) });
        if let Some(d) = &work.disposition {
            body["CallDisposition"] = Value::String(cut(d, 255));
        }
        self.api()
            .patch_json(&format!("sobjects/Task/{id}"), &body)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_take_work_once() {
        let work = Work {
            notes: Some("Wants a quote".into()),
            recording_url: Some("https://pbx.example/r/1".into()),
            ..Work::default()
        };
        let once = work.description("Inbound call");
        assert_eq!(
            once,
            "Inbound call\nRecording: https://pbx.example/r/1\n\nAgent notes:\nWants a quote"
        );
        assert_eq!(work.description(&once), once);
        let renoted = Work {
            notes: Some("Sent the quote".into()),
            ..Work::default()
        };
        assert_eq!(
            renoted.description(&once),
            "Inbound call\nRecording: https://pbx.example/r/1\n\nAgent notes:\nSent the quote"
        );
        // No notes keeps the earlier ones.
        assert_eq!(Work::default().description(&once), once);
    }
}
