//! The call journal: one Task per call id, exactly once.
//!
//! The SDK's outbox (`pbx_crm_sdk::outbox`) does the exactly-once part:
//! `ended` writes an outbox item `calls/outbox/<call id>`, guarded by "no
//! item and the call id is not in its done bucket"; delivery takes a lease
//! on the item (and counts the attempt) with a compare-and-swap before it
//! sends anything; done call ids are kept in the done ledger for
//! [`DONE_KEEP_MS`], so late and repeated events are ignored. What is
//! Salesforce's is here: the call settings' rules, the item's fields, and
//! the delivery: an item attempted before is first looked up by
//! `CallObject`, so a Task whose answer was lost (a crash, a timeout) is
//! found instead of made twice.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use pbx_crm_sdk::outbox::{Deliver, Enqueue, Enqueued, Outbox, OutboxEntry};

use super::ledger::busy;
use super::lookup::Match;
use super::unknown::ForUnknown;
use super::work::{Work, work_key};
use super::{Calls, ItemLease, cut};
use crate::associations::associations;
use crate::bindings::exports::pbx::crm::calls::{CallEvent, Direction};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::phone::{self, Normalized};
use crate::salesforce::query::{open_case, task_by_call_object};
use crate::salesforce::{Backoff, SalesforceError};
use crate::settings::{CallSettings, OpenCase, Rule, TaskOwner, UnknownCaller};
use crate::store::{Keys, keys};
use crate::time::{clock, date, human_duration, local_date};

/// A Task's `Description` (Comments) holds at most this many characters.
pub const MAX_DESCRIPTION: usize = 32_000;
/// The Status of a call logged as open: Salesforce's default open Task
/// status (orgs have no "Open" value; IsClosed is false for this one).
pub const OPEN_STATUS: &str = "Not Started";

/// How long a logged call id is remembered, to ignore late duplicates.
pub const DONE_KEEP_MS: u64 = 3 * 24 * 60 * 60 * 1000;

/// The call as the journal keeps it (the `ended` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The PBX's call id (the Task's `CallObject`).
    pub call_id: String,
    /// inbound, outbound or internal.
    pub direction: String,
    /// The outside number as the PBX had it.
    pub external_number: String,
    /// The extension.
    pub extension: String,
    /// Start, answer and end, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// When answered, if it was.
    #[serde(default)]
    pub answered_at_ms: Option<u64>,
    /// When it ended.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    /// The PBX's disposition.
    #[serde(default)]
    pub disposition: Option<String>,
    /// The recording's URL.
    #[serde(default)]
    pub recording_url: Option<String>,
    /// The PBX's default region.
    #[serde(default)]
    pub default_region: String,
    /// The PBX's offset from UTC at the call's start, in minutes: the Task
    /// is dated on the PBX's day.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

impl CallRecord {
    fn from_event(e: &CallEvent) -> Self {
        Self {
            call_id: e.call_id.clone(),
            direction: direction_str(e.direction).into(),
            external_number: e.external_number.clone(),
            extension: e.extension.clone(),
            started_at_ms: e.started_at_ms,
            answered_at_ms: e.answered_at_ms,
            ended_at_ms: e.ended_at_ms,
            disposition: e.disposition.clone(),
            recording_url: e.recording_url.clone(),
            default_region: e.default_region.clone(),
            utc_offset_minutes: e.utc_offset_minutes,
        }
    }

    fn answered(&self) -> bool {
        self.answered_at_ms.is_some()
    }

    /// The caller left a voicemail (the PBX's disposition "voicemail").
    pub fn is_voicemail(&self) -> bool {
        self.disposition
            .as_deref()
            .is_some_and(|d| d.trim().eq_ignore_ascii_case("voicemail"))
    }

    /// Talk time: answered to ended, 0 when unanswered.
    pub fn duration_s(&self) -> u64 {
        match (self.answered_at_ms, self.ended_at_ms) {
            (Some(a), Some(e)) => e.saturating_sub(a) / 1000,
            _ => 0,
        }
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
    }
}

/// One call log waiting for Salesforce, under `calls/outbox/<call id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// The call.
    pub call: CallRecord,
    /// The Task's owner (none: the connected user).
    #[serde(default)]
    pub owner_id: Option<String>,
    /// Delivery attempts started (counted before anything is sent).
    pub attempts: u32,
    /// Not tried again before this time.
    pub next_at_ms: u64,
    /// When the call was queued.
    pub queued_at_ms: u64,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The lease of the instance delivering it now.
    #[serde(default)]
    pub lease: Option<ItemLease>,
    /// Logged as an open Task (the call settings' "open"), not a completed one.
    #[serde(default)]
    pub open: bool,
    /// After-call work and a recording link that arrived before the Task
    /// was written: the Task is created with them.
    #[serde(default)]
    pub work: Option<Work>,
}

impl OutboxEntry for OutboxItem {
    fn id(&self) -> &str {
        &self.call.call_id
    }
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn set_attempts(&mut self, attempts: u32) {
        self.attempts = attempts;
    }
    fn next_at_ms(&self) -> u64 {
        self.next_at_ms
    }
    fn set_next_at_ms(&mut self, at: u64) {
        self.next_at_ms = at;
    }
    fn lease(&self) -> Option<&ItemLease> {
        self.lease.as_ref()
    }
    fn set_lease(&mut self, lease: Option<ItemLease>) {
        self.lease = lease;
    }
    fn set_last_error(&mut self, error: Option<String>) {
        self.last_error = error;
    }
}

/// The journal delivers through the SDK's outbox: Salesforce's Task for
/// each item, and its API back-off.
impl<H: Host> Deliver for &Calls<'_, H> {
    type Entry = OutboxItem;
    type Receipt = Logged;
    type Repair = Keys;
    const ENTRY: &'static str = "a call log";
    const OUTBOX_PREFIX: &'static str = keys::CALLS_OUTBOX_PREFIX;
    const DONE_PREFIX: &'static str = keys::CALLS_DONE_PREFIX;
    const DONE_KEEP_MS: u64 = DONE_KEEP_MS;

    fn deliver(&self, item: &OutboxItem) -> Result<Logged, PluginError> {
        self.attempt(item)
    }

    fn hold_off(&self, now_ms: u64) -> Option<(u64, PluginError)> {
        self.store()
            .get::<Backoff>(keys::BACKOFF)
            .ok()
            .flatten()
            .filter(|b| now_ms < b.until_ms)
            .map(|b| (b.until_ms, b.error(now_ms)))
    }

    fn delivered(&self, item: &OutboxItem, logged: &Logged) {
        self.host.log(
            Level::Info,
            &format!(
                "call {} logged as Task {}",
                item.call.call_id, logged.task_id
            ),
        );
    }

    fn busy(&self) -> PluginError {
        busy()
    }
}

/// What happened to an event's journal part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// A new outbox item.
    Queued,
    /// The call waits already, or is logged.
    Known,
    /// The rules say this call is not logged: why, in words.
    Skipped(String),
}

/// A call logged now: the Task and the record it is on, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The Task's id.
    pub task_id: String,
    /// The Contact, Lead or Account it names (`WhoId`/`WhatId`).
    pub on: Option<Match>,
    /// Why it names none, when it does not.
    pub why_no_record: Option<String>,
}

impl Logged {
    /// In words, e.g. "Task 00T… logged on Contact Ada Lovelace (003…)".
    pub fn describe(&self) -> String {
        match (&self.on, &self.why_no_record) {
            (Some(on), _) => format!(
                "Task {} logged on {} {} ({})",
                self.task_id,
                on.kind(),
                on.name,
                on.id
            ),
            (None, Some(why)) => format!("Task {} logged ({why})", self.task_id),
            (None, None) => format!("Task {} logged", self.task_id),
        }
    }
}

/// Why a call's log is skipped by the call settings' rule, in words.
fn rule_skips(direction: Direction, answered: bool, voicemail: bool) -> String {
    let which = match (direction, answered) {
        _ if voicemail => "calls that ended in a voicemail",
        (Direction::Inbound, true) => "answered inbound calls",
        (Direction::Inbound, false) => "missed inbound calls",
        (Direction::Outbound, true) => "answered outbound calls",
        (Direction::Outbound, false) => "unanswered outbound calls",
        (Direction::Internal, _) => "internal calls",
    };
    format!("not logged: the call settings do not log {which}")
}

impl<H: Host> Calls<'_, H> {
    /// Queue the call's log (or record that the rules skip it), exactly
    /// once per call id.
    pub fn enqueue(&self, e: &CallEvent, settings: &CallSettings) -> Result<Queued, PluginError> {
        let store = self.store();
        let call = CallRecord::from_event(e);
        let voicemail = call.is_voicemail();
        let rule = match (e.direction, call.answered()) {
            _ if voicemail => settings.log_voicemail,
            (Direction::Inbound, true) => settings.log_inbound_answered,
            (Direction::Inbound, false) => settings.log_inbound_missed,
            (Direction::Outbound, true) => settings.log_outbound_answered,
            (Direction::Outbound, false) => settings.log_outbound_unanswered,
            (Direction::Internal, _) => settings.log_internal,
        };
        let mut skip =
            (rule == Rule::Skip).then(|| rule_skips(e.direction, call.answered(), voicemail));
        let pending_key = work_key(&call.call_id);
        let mut owner_id = None;
        if skip.is_none() && settings.task_owner != TaskOwner::Connected {
            owner_id = associations(self.host)
                .user_for_extension(&call.extension)?
                .map(|u| u.id);
            if owner_id.is_none() && settings.task_owner == TaskOwner::AssociatedOnly {
                skip = Some(format!(
                    "not logged: extension {} is not associated with a Salesforce user, and the call settings log only associated users' calls",
                    call.extension
                ));
            }
        }
        let queued = Outbox::new(self.host, self).enqueue(&call.call_id, |now, batch| {
            // Work saved before the call ended moves into the item, in the
            // same commit, so it is applied exactly once.
            let (work, work_raw) = match store.get_raw(&pending_key)? {
                Some(raw) => (serde_json::from_slice::<Work>(&raw).ok(), Some(raw)),
                None => (None, None),
            };
            let mut batch = batch.expect_raw(&pending_key, work_raw.clone());
            if work_raw.is_some() {
                batch = batch.delete(&pending_key);
            }
            if skip.is_some() {
                return Ok((batch, Enqueue::Done, ()));
            }
            let item = OutboxItem {
                call: call.clone(),
                owner_id: owner_id.clone(),
                attempts: 0,
                next_at_ms: now,
                queued_at_ms: now,
                last_error: None,
                lease: None,
                open: rule == Rule::Open,
                work,
            };
            Ok((batch, Enqueue::Queue(item), ()))
        })?;
        Ok(match (queued, skip) {
            (Enqueued::Known, _) => Queued::Known,
            (_, Some(why)) => {
                self.host.log(
                    Level::Info,
                    &format!("call {} is not logged (call settings)", call.call_id),
                );
                Queued::Skipped(why)
            }
            (_, None) => Queued::Queued,
        })
    }

    // --- delivery -------------------------------------------------------

    /// Deliver what waits, with back-off; the number still waiting.
    pub fn run_pending(&self) -> Result<u32, PluginError> {
        self.prune(self.host.now_ms());
        Outbox::new(self.host, self).run_pending()
    }

    /// Deliver the item under `key` if it is due and free: the Task when it
    /// was logged now.
    pub fn deliver(&self, key: &str) -> Result<Option<Logged>, PluginError> {
        Outbox::new(self.host, self).deliver(key)
    }

    /// Log the call in Salesforce: the Task and its record.
    fn attempt(&self, item: &OutboxItem) -> Result<Logged, PluginError> {
        let call = &item.call;
        if item.attempts > 1
            && let Some(id) = self.existing_task(&call.call_id)?
        {
            // Work merged while the lost attempt ran is not in that Task.
            if let Some(work) = &item.work {
                self.patch_task(&id, work)?;
            }
            self.host.log(
                Level::Info,
                &format!(
                    "call {} was already logged as Task {id} (an earlier attempt's answer was lost)",
                    call.call_id
                ),
            );
            return Ok(Logged {
                task_id: id,
                on: None,
                why_no_record: Some("by an earlier attempt whose answer was lost".into()),
            });
        }
        let normalized = if call.direction == "internal" {
            None
        } else {
            phone::normalize(&call.external_number, &call.default_region).ok()
        };
        let mut who = None;
        let mut why_no_record = None;
        match &normalized {
            Some(n) => {
                let mut best = self.find(n)?.into_iter().next();
                if best.is_none() {
                    let settings = self.settings()?;
                    let kind = if call.direction == "outbound" {
                        settings.unknown_outbound
                    } else {
                        settings.unknown_inbound
                    };
                    if kind == UnknownCaller::Nothing {
                        why_no_record = Some(format!(
                            "no Salesforce record has {}, and the call settings create none for unknown callers",
                            n.international
                        ));
                    } else {
                        match self.create_for_unknown(n, kind, item.owner_id.as_deref())? {
                            ForUnknown::Created(record) => best = Some(record),
                            ForUnknown::Deferred(why) => why_no_record = Some(why),
                        }
                    }
                }
                who = best;
            }
            None if call.direction == "internal" => {
                why_no_record = Some("an internal call names no record".into());
            }
            None => {
                why_no_record = Some(format!(
                    "{:?} is not a phone number, so no record is named",
                    call.external_number
                ));
            }
        }
        let case_id = match &who {
            Some(m) if self.settings()?.log_to_open_case == OpenCase::Yes => self.open_case(m)?,
            _ => None,
        };
        let mut task = task_body(item, normalized.as_ref(), who.as_ref(), case_id.as_deref());
        let created: Value = match self.api().post_json("sobjects/Task/", &task) {
            Ok(v) => v,
            // The associated user was deactivated meanwhile: the call is
            // still logged, owned by the connected user.
            Err(SalesforceError::Api(api))
                if item.owner_id.is_some()
                    && (api.has_code("INACTIVE_OWNER_OR_USER")
                        || api
                            .errors
                            .iter()
                            .any(|e| e.fields.iter().any(|f| f == "OwnerId"))) =>
            {
                self.host.log(
                    Level::Warn,
                    &format!(
                        "call {}: Salesforce refused the Task's owner ({api}); logging it for the connected user",
                        call.call_id
                    ),
                );
                if let Some(t) = task.as_object_mut() {
                    t.remove("OwnerId");
                }
                self.api().post_json("sobjects/Task/", &task)?
            }
            Err(e) => return Err(e.into()),
        };
        let task_id = created
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                PluginError::CrmUnavailable(
                    "Salesforce created the Task but sent no id; it will be checked on the next attempt".into(),
                )
            })?;
        Ok(Logged {
            task_id,
            on: who,
            why_no_record,
        })
    }

    /// The caller's most recent open Case: a Contact's, or an Account's
    /// (also a Person Account's); a Lead has none.
    fn open_case(&self, who: &Match) -> Result<Option<String>, PluginError> {
        #[derive(Deserialize)]
        struct Row {
            #[serde(rename = "Id")]
            id: String,
        }
        let field = match who.object.as_str() {
            "Contact" => "ContactId",
            "Account" => "AccountId",
            _ => return Ok(None),
        };
        let rows: Vec<Row> = self.api().query(&open_case(field, &who.id))?;
        Ok(rows.into_iter().next().map(|r| r.id))
    }

    /// The Task logging `call_id`, if one exists.
    pub(super) fn existing_task(&self, call_id: &str) -> Result<Option<String>, PluginError> {
        #[derive(Deserialize)]
        struct Row {
            #[serde(rename = "Id")]
            id: String,
        }
        let rows: Vec<Row> = self.api().query(&task_by_call_object(call_id))?;
        Ok(rows.into_iter().next().map(|r| r.id))
    }
}

/// The Task for a call.
pub fn task_body(
    item: &OutboxItem,
    n: Option<&Normalized>,
    who: Option<&Match>,
    case_id: Option<&str>,
) -> Value {
    let call = &item.call;
    let shown = match n {
        Some(n) => n.international.clone(),
        None if call.external_number.trim().is_empty() => "an unknown number".into(),
        None => cut(call.external_number.trim(), 64),
    };
    let answered = call.answered();
    let (call_type, subject) = match (call.direction.as_str(), answered) {
        ("outbound", true) => ("Outbound", format!("Outbound call to {shown}")),
        ("outbound", false) => ("Outbound", format!("Unanswered outbound call to {shown}")),
        ("internal", _) => (
            "Internal",
            format!("Internal call between {} and {shown}", call.extension),
        ),
        (_, true) => ("Inbound", format!("Inbound call from {shown}")),
        (_, false) => ("Inbound", format!("Missed inbound call from {shown}")),
    };
    let duration = call.duration_s();
    let mut lines = vec![
        match call.direction.as_str() {
            "outbound" => format!("Outbound call from extension {} to {shown}", call.extension),
            "internal" => format!(
                "Internal call between extensions {} and {shown}",
                call.extension
            ),
            _ => format!("Inbound call from {shown} to extension {}", call.extension),
        },
        format!(
            "Started: {} {}",
            date(call.started_at_ms),
            clock(call.started_at_ms)
        ),
    ];
    if let Some(n) = n {
        lines.push(format!(
            "Number: {} (as the PBX gave it: {})",
            n.e164,
            cut(&call.external_number, 64)
        ));
    }
    lines.push(if answered {
        format!(
            "Duration: {} ({duration} s talk time)",
            human_duration(duration)
        )
    } else {
        "Not answered".into()
    });
    if let Some(d) = &call.disposition {
        lines.push(format!("Disposition: {}", cut(d, 255)));
    }
    if let Some(r) = &call.recording_url {
        lines.push(format!("Recording: {r}"));
    }
    lines.push(format!("PBX call id: {}", call.call_id));
    let description = match &item.work {
        Some(work) => work.description(&lines.join("\n")),
        None => cut(&lines.join("\n"), MAX_DESCRIPTION),
    };
    let mut task = json!({
        "Subject": cut(&subject, 255),
        // Salesforce's standard activity reports filter on Type.
        "Type": "Call",
        "TaskSubtype": "Call",
        "CallType": call_type,
        "CallDurationInSeconds": duration,
        "CallObject": call.call_id,
        "ActivityDate": local_date(call.started_at_ms, call.utc_offset_minutes),
        "Status": if item.open { OPEN_STATUS } else { "Completed" },
        "Description": description,
    });
    let disposition = item
        .work
        .as_ref()
        .and_then(|w| w.disposition.as_ref())
        .or(call.disposition.as_ref());
    if let Some(d) = disposition {
        task["CallDisposition"] = json!(cut(d, 255));
    }
    for (field, id) in who.map(Match::links).unwrap_or_default() {
        task[field] = json!(id);
    }
    if let Some(case) = case_id {
        task["WhatId"] = json!(case);
    }
    if let Some(owner) = &item.owner_id {
        task["OwnerId"] = json!(owner);
    }
    task
}
