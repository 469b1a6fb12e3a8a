//! The calls the host saw, per extension, for the agent page's "Recent
//! calls": each call's latest phase, and the CRM record its pop-up named
//! (from the pop-up's caption with the same call id). Kept in memory and
//! bounded: the last `PER_EXTENSION` calls of at most `MAX_EXTENSIONS`
//! extensions.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::call_input::{direction_name, phase_name};
use crate::capabilities::browser::{BrowserRequest, Detail, Viewer};
use crate::runtime::wit::CallEvent;

/// Calls kept per extension.
pub const PER_EXTENSION: usize = 20;
/// Extensions with calls kept.
pub const MAX_EXTENSIONS: usize = 10_000;

/// The CRM record a call was popped up and logged against.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallRecord {
    /// What the pop-up said, e.g. "Incoming call from +1 415-555-0100".
    pub title: String,
    /// The record's page.
    pub url: String,
    /// What the pop-up said of it (e.g. name, record type, account).
    pub details: Vec<Detail>,
}

/// One call of an extension.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecentCall {
    /// The PBX's call id.
    pub call_id: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The outside party's number as the PBX sent it.
    pub number: String,
    /// The latest phase seen.
    pub phase: &'static str,
    /// When it started.
    pub started_at_ms: u64,
    /// When it ended, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// The CRM record, once a pop-up named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<CallRecord>,
}

/// Recent calls, by extension.
#[derive(Default)]
pub struct RecentCalls {
    by_extension: Mutex<HashMap<String, VecDeque<RecentCall>>>,
}

impl RecentCalls {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<RecentCall>>> {
        self.by_extension.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn calls_of<'t>(
        table: &'t mut HashMap<String, VecDeque<RecentCall>>,
        extension: &str,
    ) -> &'t mut VecDeque<RecentCall> {
        if !table.contains_key(extension) && table.len() >= MAX_EXTENSIONS {
            // The extension whose newest call is oldest makes room.
            let stalest = table
                .iter()
                .min_by_key(|(_, calls)| calls.back().map_or(0, |c| c.started_at_ms))
                .map(|(x, _)| x.clone());
            if let Some(stalest) = stalest {
                table.remove(&stalest);
            }
        }
        table.entry(extension.to_string()).or_default()
    }

    /// Note a call event: a new call, or a later phase of one kept.
    pub fn note_event(&self, event: &CallEvent) {
        let mut table = self.table();
        let calls = Self::calls_of(&mut table, &event.extension);
        if let Some(call) = calls.iter_mut().find(|c| c.call_id == event.call_id) {
            call.phase = phase_name(event.phase);
            call.ended_at_ms = event.ended_at_ms.or(call.ended_at_ms);
            return;
        }
        if calls.len() >= PER_EXTENSION {
            calls.pop_front();
        }
        calls.push_back(RecentCall {
            call_id: event.call_id.clone(),
            direction: direction_name(event.direction),
            number: event.external_number.clone(),
            phase: phase_name(event.phase),
            started_at_ms: event.started_at_ms,
            ended_at_ms: event.ended_at_ms,
            record: None,
        });
    }

    /// Note the record a pop-up for `call_id` at `extension` named; a call
    /// the host did not see is not added.
    pub fn note_record(&self, extension: &str, call_id: &str, record: CallRecord) {
        let mut table = self.table();
        if let Some(call) = table
            .get_mut(extension)
            .and_then(|calls| calls.iter_mut().find(|c| c.call_id == call_id))
        {
            call.record = Some(record);
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
        self.table()
            .get(extension)
            .map(|calls| calls.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Forget an extension's calls (it was removed).
    pub fn forget(&self, extension: &str) {
        self.table().remove(extension);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::wit::{Direction, Phase};

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
}
