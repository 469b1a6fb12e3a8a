//! The calls the host saw, per extension, for the agent page's "Recent
//! calls": each call's latest phase, and the CRM record its pop-up named
//! (from the pop-up's caption with the same call id), and the after-call
//! work saved for it. Bounded: the last `PER_EXTENSION` calls of each
//! extension. Kept in memory for at most `MAX_EXTENSIONS` extensions, and
//! in the store namespace `host/recent-calls` (one JSON list per
//! extension), written when a call ends and when a record or work is
//! noted, so an agent adds work to a call from before a host restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::{Namespace, Quota, Store};

use crate::call_input::{direction_name, phase_name};
use crate::capabilities::browser::{BrowserRequest, Detail, Viewer};
use crate::runtime::wit::{CallEvent, Phase};

/// Calls kept per extension.
pub const PER_EXTENSION: usize = 20;
/// Extensions with calls kept.
pub const MAX_EXTENSIONS: usize = 10_000;

/// The store namespace of the lists.
const NAMESPACE: &str = "host/recent-calls";

/// The CRM record a call was popped up and logged against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallRecord {
    /// What the pop-up said, e.g. "Incoming call from +1 415-555-0100".
    pub title: String,
    /// The record's page.
    pub url: String,
    /// What the pop-up said of it (e.g. name, record type, account).
    pub details: Vec<Detail>,
}

/// The after-call work the agent saved for a call (what the page shows in
/// its form again).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedWork {
    /// The notes, when the agent wrote some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The disposition, when the agent picked one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// When it was last saved.
    pub saved_at_ms: u64,
}

/// One call of an extension.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecentCall {
    /// The PBX's call id.
    pub call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The outside party's number as the PBX sent it.
    pub number: String,
    /// The latest phase seen.
    pub phase: String,
    /// When it started.
    pub started_at_ms: u64,
    /// When it ended, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// The CRM record, once a pop-up named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<CallRecord>,
    /// The after-call work saved for it, once the agent saved some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work: Option<SavedWork>,
}

/// Recent calls, by extension.
#[derive(Default)]
pub struct RecentCalls {
    by_extension: Mutex<HashMap<String, VecDeque<RecentCall>>>,
    /// Where the lists outlive the host (`None`: in memory only).
    kept: Option<Namespace>,
}

impl RecentCalls {
    /// Recent calls kept in `store` too.
    pub fn new(store: &Store) -> Self {
        Self {
            by_extension: Mutex::default(),
            kept: Some(store.namespace(NAMESPACE, Quota::UNLIMITED)),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<RecentCall>>> {
        self.by_extension.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The calls of `extension` as the store has them: none when it has
    /// none, or a list this host cannot read (a page that shows no calls
    /// beats one that cannot load).
    fn stored(&self, extension: &str) -> VecDeque<RecentCall> {
        let Some(kept) = &self.kept else {
            return VecDeque::new();
        };
        match kept.get(extension) {
            Ok(Some(raw)) => serde_json::from_slice(&raw).unwrap_or_else(|e| {
                tracing::warn!(%extension, "the stored recent calls are unreadable: {e}");
                VecDeque::new()
            }),
            Ok(None) => VecDeque::new(),
            Err(e) => {
                tracing::warn!(%extension, "the stored recent calls cannot be read: {e}");
                VecDeque::new()
            }
        }
    }

    /// Write `extension`'s list to the store. A failure is logged: the
    /// list is a convenience, and the call itself is in the journal.
    pub async fn keep(&self, extension: &str) {
        let Some(kept) = &self.kept else {
            return;
        };
        let raw = {
            let table = self.table();
            let Some(calls) = table.get(extension) else {
                return;
            };
            match serde_json::to_vec(calls) {
                Ok(raw) => raw,
                Err(e) => {
                    tracing::warn!(%extension, "the recent calls cannot be encoded: {e}");
                    return;
                }
            }
        };
        if let Err(e) = kept.set_async(extension.to_string(), raw).await {
            tracing::warn!(%extension, "the recent calls cannot be stored: {e}");
        }
    }

    /// The table entry of `extension`, read from the store on first use
    /// (making room for it in memory).
    fn calls_of<'t>(
        &self,
        table: &'t mut HashMap<String, VecDeque<RecentCall>>,
        extension: &str,
    ) -> &'t mut VecDeque<RecentCall> {
        if !table.contains_key(extension) {
            Self::make_room(table);
        }
        table
            .entry(extension.to_string())
            .or_insert_with(|| self.stored(extension))
    }

    /// Make room for one more extension in memory (its list stays in the
    /// store).
    fn make_room(table: &mut HashMap<String, VecDeque<RecentCall>>) {
        if table.len() >= MAX_EXTENSIONS {
            // The extension whose newest call is oldest makes room.
            let stalest = table
                .iter()
                .min_by_key(|(_, calls)| calls.back().map_or(0, |c| c.started_at_ms))
                .map(|(x, _)| x.clone());
            if let Some(stalest) = stalest {
                table.remove(&stalest);
            }
        }
    }

    /// Note a call event: a new call, or a later phase of one kept.
    /// Whether the list should be kept now ([`Self::keep`]): the call
    /// ended, or its recording is ready.
    pub fn note_event(&self, event: &CallEvent) -> bool {
        let mut table = self.table();
        let calls = self.calls_of(&mut table, &event.extension);
        let ends = event.ended_at_ms.is_some()
            || matches!(event.phase, Phase::Ended | Phase::RecordingReady);
        if let Some(call) = calls.iter_mut().find(|c| c.call_id == event.call_id) {
            call.phase = phase_name(event.phase).to_string();
            call.ended_at_ms = event.ended_at_ms.or(call.ended_at_ms);
            return ends;
        }
        if calls.len() >= PER_EXTENSION {
            calls.pop_front();
        }
        calls.push_back(RecentCall {
            call_id: event.call_id.clone(),
            direction: direction_name(event.direction).to_string(),
            number: event.external_number.clone(),
            phase: phase_name(event.phase).to_string(),
            started_at_ms: event.started_at_ms,
            ended_at_ms: event.ended_at_ms,
            record: None,
            work: None,
        });
        ends
    }

    /// Note the record a pop-up for `call_id` at `extension` named; a call
    /// the host did not see is not added.
    pub fn note_record(&self, extension: &str, call_id: &str, record: CallRecord) {
        let mut table = self.table();
        if let Some(call) = self
            .calls_of(&mut table, extension)
            .iter_mut()
            .find(|c| c.call_id == call_id)
        {
            call.record = Some(record);
        }
    }

    /// Note after-call work saved for `call_id` at `extension`: each part
    /// given replaces the one before, as the plugin does with the Task.
    pub fn note_work(&self, extension: &str, call_id: &str, work: SavedWork) {
        let mut table = self.table();
        if let Some(call) = self
            .calls_of(&mut table, extension)
            .iter_mut()
            .find(|c| c.call_id == call_id)
        {
            let before = call.work.take().unwrap_or_default();
            call.work = Some(SavedWork {
                notes: work.notes.or(before.notes),
                disposition: work.disposition.or(before.disposition),
                saved_at_ms: work.saved_at_ms,
            });
        }
    }

    /// Note the record a pop-up (an open-browser request with a caption
    /// naming a call) shows, for the call and extension it is for.
    pub fn note_pop_up(&self, request: &BrowserRequest) {
        let (Viewer::Extension(extension), Some(caption)) = (&request.viewer, &request.caption)
        else {
            return;
        };
        let Some(call_id) = &caption.call_id else {
            return;
        };
        self.note_record(
            extension,
            call_id,
            CallRecord {
                title: caption.title.clone(),
                url: request.url.clone(),
                details: caption.details.clone(),
            },
        );
    }

    /// The calls of `extension`, newest first.
    pub fn list(&self, extension: &str) -> Vec<RecentCall> {
        let mut table = self.table();
        self.calls_of(&mut table, extension)
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Forget an extension's calls (it was removed).
    pub async fn forget(&self, extension: &str) {
        self.table().remove(extension);
        if let Some(kept) = &self.kept
            && let Err(e) = kept.delete_async(extension.to_string()).await
        {
            tracing::warn!(%extension, "the recent calls cannot be deleted: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::wit::Direction;

    fn event(call_id: &str, extension: &str, phase: Phase) -> CallEvent {
        CallEvent {
            call_id: call_id.into(),
            phase,
            direction: Direction::Inbound,
            external_number: "+14155550100".into(),
            extension: extension.into(),
            started_at_ms: 1,
            answered_at_ms: None,
            ended_at_ms: None,
            disposition: None,
            recording_url: None,
            default_region: "US".into(),
            utc_offset_minutes: 0,
        }
    }

    #[test]
    fn calls_are_kept_per_extension_with_their_record() {
        let calls = RecentCalls::default();
        calls.note_event(&event("c1", "1001", Phase::Ringing));
        calls.note_event(&event("c1", "1001", Phase::Ended));
        calls.note_event(&event("c2", "1002", Phase::Ringing));
        let record = CallRecord {
            title: "Incoming call from Ann".into(),
            url: "https://crm.example/003".into(),
            details: vec![],
        };
        calls.note_record("1001", "c1", record.clone());
        calls.note_record("1001", "c2", record.clone());
        let of_1001 = calls.list("1001");
        assert_eq!(of_1001.len(), 1);
        assert_eq!(of_1001[0].phase, "ended");
        assert_eq!(of_1001[0].record.as_ref(), Some(&record));
        assert_eq!(
            calls.list("1002")[0].record,
            None,
            "another extension's record"
        );
    }

    #[test]
    fn saved_work_replaces_part_by_part() {
        let calls = RecentCalls::default();
        calls.note_event(&event("c1", "1001", Phase::Ended));
        calls.note_work(
            "1001",
            "c1",
            SavedWork {
                notes: Some("Wants a quote".into()),
                disposition: Some("Sale".into()),
                saved_at_ms: 1,
            },
        );
        calls.note_work(
            "1001",
            "c1",
            SavedWork {
                notes: None,
                disposition: Some("Left message".into()),
                saved_at_ms: 2,
            },
        );
        calls.note_work("1002", "c1", SavedWork::default());
        assert_eq!(
            calls.list("1001")[0].work,
            Some(SavedWork {
                notes: Some("Wants a quote".into()),
                disposition: Some("Left message".into()),
                saved_at_ms: 2,
            })
        );
        assert!(calls.list("1002").is_empty(), "no call is added");
    }

    #[test]
    fn each_extension_keeps_a_bounded_number() {
        let calls = RecentCalls::default();
        for i in 0..(PER_EXTENSION + 5) {
            calls.note_event(&event(&format!("c{i}"), "1001", Phase::Ringing));
        }
        let kept = calls.list("1001");
        assert_eq!(kept.len(), PER_EXTENSION);
        assert_eq!(
            kept[0].call_id,
            format!("c{}", PER_EXTENSION + 4),
            "newest first"
        );
    }

    #[tokio::test]
    async fn ended_calls_with_their_record_and_work_outlive_the_host() {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = CallRecord {
            title: "Incoming call from Ann".into(),
            url: "https://crm.example/003".into(),
            details: vec![Detail {
                label: "Record type".into(),
                value: "Contact".into(),
            }],
        };
        {
            let store = Store::open(dir.path()).expect("store");
            let calls = RecentCalls::new(&store);
            assert!(!calls.note_event(&event("c1", "1001", Phase::Ringing)));
            calls.note_record("1001", "c1", record.clone());
            assert!(!calls.note_event(&event("c2", "1001", Phase::Ringing)));
            assert!(calls.note_event(&event("c1", "1001", Phase::Ended)));
            calls.keep("1001").await;
            calls.note_work(
                "1001",
                "c1",
                SavedWork {
                    notes: Some("Wants a quote".into()),
                    disposition: None,
                    saved_at_ms: 5,
                },
            );
            calls.keep("1001").await;
            // Not kept: a call still ringing when the host stops is added
            // again by its end.
            calls.note_event(&event("c3", "1001", Phase::Ringing));
        }
        let store = Store::open(dir.path()).expect("store again");
        let calls = RecentCalls::new(&store);
        let kept = calls.list("1001");
        let ids: Vec<&str> = kept.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["c2", "c1"], "newest first");
        assert_eq!(kept[1].phase, "ended");
        assert_eq!(kept[1].record.as_ref(), Some(&record));
        assert_eq!(
            kept[1].work.as_ref().and_then(|w| w.notes.as_deref()),
            Some("Wants a quote")
        );
        // Work after the restart lands on the stored call.
        calls.note_work(
            "1001",
            "c1",
            SavedWork {
                notes: None,
                disposition: Some("Sale".into()),
                saved_at_ms: 6,
            },
        );
        assert_eq!(
            calls.list("1001")[1].work,
            Some(SavedWork {
                notes: Some("Wants a quote".into()),
                disposition: Some("Sale".into()),
                saved_at_ms: 6,
            })
        );
        // A removed extension's calls are gone from the store too.
        calls.forget("1001").await;
        drop(calls);
        assert!(RecentCalls::new(&store).list("1001").is_empty());
    }
}
