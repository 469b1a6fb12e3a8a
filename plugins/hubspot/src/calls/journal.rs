//! The call journal: one HubSpot Call engagement per PBX call id, exactly
//! once through outages, retries and concurrent instances, on the SDK's
//! outbox (`pbx_crm_sdk::outbox`).
//!
//! A call's state is one kv record (`journal/call/{hash}`, [`CallLog`]):
//! the ended event, the agent's after-call work, and HubSpot's id of the
//! Call once known. What HubSpot is owed waits in the outbox
//! (`journal/outbox/…`): a create per call id, queued once however often
//! `ended` comes, and an update per change after it (after-call work, a
//! recording). The outbox leases an entry, counts the attempt before
//! sending, retries with back-off and never before HubSpot's 429 wait ends.
//!
//! Exactly once: the log records when a create goes out before it does; an
//! attempt that finds that mark searches HubSpot for the Call by a
//! reference token in its body (`pbxcall` + the call id's hash) before
//! creating again, and waits [`SEARCH_LAG_MS`] after the lost attempt for
//! HubSpot's search (eventually consistent) to show it. Only an exchange
//! without an answer leaves the mark: an HTTP error answer created nothing.
//! Updates PATCH the same Call with every property, so they are idempotent
//! and their order does not matter.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::lookup::Found;
use super::{Calls, outcome, skipped};
use crate::api::{ApiError, Hub, PluginErrorOr, segment};
use crate::associations::associations;
use crate::bindings::exports::pbx::crm::calls::{CallEvent, Direction, EventAction, EventOutcome};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::lease::{Lease, Until};
use crate::phone;
use crate::settings::{LogCalls, UnknownCallers};
use pbx_crm_sdk::outbox::{self, Deliver, Enqueue, Enqueued, Outbox};
use pbx_crm_sdk::record::{CAS_ROUNDS, Change, Unreadable, update};
use pbx_crm_sdk::store::{Batch, SaveAgain};

/// How long after a create whose answer was lost the journal waits for
/// HubSpot's search to show the Call before creating it again.
pub const SEARCH_LAG_MS: u64 = 30_000;
/// How long a delivered id is remembered (repeated events are ignored).
const DONE_KEEP_MS: u64 = 7 * 24 * 3600 * 1000;
/// HubSpot's association type ids: call→contact, call→company.
const CALL_TO_CONTACT: u32 = 194;
const CALL_TO_COMPANY: u32 = 182;
/// Separates a call id from an update's number in outbox ids (a control
/// character: the PBX's call ids have none).
const UPDATE_SEPARATOR: char = '\u{1f}';

/// HubSpot's default call outcomes (`hs_call_disposition` takes their
/// GUIDs), by the label an agent picks.
const OUTCOMES: [(&str, &str); 6] = [
    ("busy", "9d9162e7-6cf3-4944-bf63-4dff82258764"),
    ("connected", "f240bbac-87c9-4f6e-bf70-924b57d47db7"),
    ("left live message", "a4c4c377-d246-4b32-a13b-75a56a4cd0ff"),
    ("left voicemail", "b2cf5968-551e-4856-9783-52b3da59a7d0"),
    ("no answer", "73a0d17f-1163-4015-bdd5-ec830791da20"),
    ("wrong number", "17b47fee-58de-441e-a44c-c6300d46f273"),
];

/// The ended event, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub inbound: bool,
    /// E.164 when it normalized, else as the PBX gave it.
    pub number: String,
    pub normalized: bool,
    pub extension: String,
    pub started_at_ms: u64,
    pub answered_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub disposition: Option<String>,
    pub recording_url: Option<String>,
}

/// What the agent (or the PBX, later) adds to a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    pub notes: Option<String>,
    pub disposition: Option<String>,
    pub recording_url: Option<String>,
}

/// A call's state, under `journal/call/{hash}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallLog {
    pub call_id: String,
    pub ended: Option<Ended>,
    pub work: Work,
    /// Bumped by every change of `work` (names the update's outbox id).
    pub revision: u64,
    /// HubSpot's id of the Call, once known.
    pub hubspot_id: Option<String>,
    /// When a create went out whose answer may have been lost.
    pub create_sent_at_ms: Option<u64>,
    pub owner_id: Option<String>,
    pub target: Option<Found>,
}

/// What an outbox entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    Create,
    Update,
}

/// The outbox's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub call_id: String,
    pub task: Task,
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub hubspot_id: String,
    pub created: bool,
}

fn log_key(call_id: &str) -> String {
    format!("{}{}", keys::JOURNAL_PREFIX, keys::hashed(call_id))
}

/// The token in a Call's body that finds it again.
pub fn reference(call_id: &str) -> String {
    format!("pbxcall{}", keys::hashed(call_id))
}

/// HubSpot's side of the SDK's outbox.
pub struct Journal<'c, 'h, H: Host> {
    calls: &'c Calls<'h, H>,
}

impl<H: Host> Deliver for Journal<'_, '_, H> {
    type Entry = outbox::Entry<Job>;
    type Receipt = Delivered;
    type Repair = SaveAgain;
    const OUTBOX_PREFIX: &'static str = keys::OUTBOX_PREFIX;
    const DONE_PREFIX: &'static str = keys::DONE_PREFIX;
    const DONE_KEEP_MS: u64 = DONE_KEEP_MS;

    fn deliver(&self, entry: &Self::Entry) -> Result<Delivered, PluginError> {
        match entry.payload.task {
            Task::Create => self.calls.create(&entry.payload.call_id),
            Task::Update => self.calls.patch(&entry.payload.call_id),
        }
    }

    fn hold_off(&self, now_ms: u64) -> Option<(u64, PluginError)> {
        let until: u64 = self
            .calls
            .store()
            .get(keys::RATE_LIMITED_UNTIL)
            .ok()
            .flatten()?;
        (until > now_ms).then(|| {
            (
                until,
                PluginError::RateLimited(format!(
                    "HubSpot's rate limit was reached; waiting {} s",
                    (until - now_ms).div_ceil(1000)
                )),
            )
        })
    }

    fn delivered(&self, entry: &Self::Entry, receipt: &Delivered) {
        self.calls.host.log(
            Level::Info,
            &format!(
                "call {} {} as HubSpot call {}",
                crate::cut(&entry.payload.call_id, 64),
                if receipt.created { "logged" } else { "updated" },
                receipt.hubspot_id
            ),
        );
    }
}

impl<'h, H: Host> Calls<'h, H> {
    fn outbox(&self) -> Outbox<'_, H, Journal<'_, 'h, H>> {
        Outbox::new(self.host, Journal { calls: self })
    }

    fn call_log(&self, call_id: &str) -> Result<CallLog, PluginError> {
        Ok(self
            .store()
            .get::<CallLog>(&log_key(call_id))?
            .unwrap_or_else(|| CallLog {
                call_id: call_id.to_string(),
                ..CallLog::default()
            }))
    }

    /// Change the call's log (compare-and-swap); `change` answers whether
    /// it changed anything.
    fn change_log(
        &self,
        call_id: &str,
        change: impl Fn(&mut CallLog) -> bool,
    ) -> Result<CallLog, PluginError> {
        Ok(update(
            &self.store(),
            &log_key(call_id),
            Unreadable::Fail,
            CAS_ROUNDS,
            |log: Option<CallLog>| {
                let mut log = log.unwrap_or_else(|| CallLog {
                    call_id: call_id.to_string(),
                    ..CallLog::default()
                });
                Ok(if change(&mut log) {
                    Change::Write(log.clone(), log)
                } else {
                    Change::Keep(log)
                })
            },
        )?)
    }

    /// `ended`: queue the Call (once per call id) and deliver it now.
    pub fn journal(&self, e: &CallEvent) -> Result<EventOutcome, PluginError> {
        let settings = self.settings()?;
        if e.direction == Direction::Internal {
            return Ok(skipped("internal calls are not logged in HubSpot"));
        }
        match settings.log_calls {
            LogCalls::None => return Ok(skipped("call logging is off in the call settings")),
            LogCalls::Answered if e.answered_at_ms.is_none() => {
                return Ok(skipped(
                    "an unanswered call: the call settings log answered calls only",
                ));
            }
            _ => {}
        }
        let (number, normalized) = match phone::normalize(&e.external_number, &e.default_region) {
            Ok(n) => (n.e164, true),
            Err(_) => (crate::cut(e.external_number.trim(), 40), false),
        };
        let ended = Ended {
            inbound: e.direction == Direction::Inbound,
            number,
            normalized,
            extension: e.extension.clone(),
            started_at_ms: e.started_at_ms,
            answered_at_ms: e.answered_at_ms,
            ended_at_ms: e.ended_at_ms,
            disposition: e.disposition.clone(),
            recording_url: e.recording_url.clone(),
        };
        let store = self.store();
        let key = log_key(&e.call_id);
        let queued = self.outbox().enqueue(&e.call_id, |now, batch| {
            // The log gets the event in the same batch as the entry.
            let raw = store.get_raw(&key)?;
            let mut log: CallLog = match &raw {
                Some(bytes) => pbx_crm_sdk::store::decode::<SaveAgain, _>(&key, bytes)?,
                None => CallLog {
                    call_id: e.call_id.clone(),
                    ..CallLog::default()
                },
            };
            if log.ended.is_some() {
                // Logged long ago (its id left the done ledger): not twice.
                return Ok((batch, Enqueue::Done, ()));
            }
            log.ended = Some(ended.clone());
            let batch = batch.expect_raw(&key, raw).set(&key, &log)?;
            let job = Job {
                call_id: e.call_id.clone(),
                task: Task::Create,
            };
            Ok((
                batch,
                Enqueue::Queue(outbox::Entry::new(&e.call_id, job, now)),
                (),
            ))
        })?;
        if !matches!(queued, Enqueued::Queued(())) {
            return Ok(skipped(format!(
                "call {} is logged already or waits to be (a repeated event)",
                crate::cut(&e.call_id, 64)
            )));
        }
        Ok(self.deliver_now(&e.call_id, &e.call_id))
    }

    /// After-call work or a late recording: added to the call's Call
    /// (updated now, or sent with the create when the call is logged).
    pub fn add_work(&self, call_id: &str, work: Work) -> Result<EventOutcome, PluginError> {
        let before = self.call_log(call_id)?.revision;
        let log = self.change_log(call_id, |log| {
            let mut next = log.work.clone();
            if work.notes.is_some() {
                next.notes = work.notes.clone();
            }
            if work.disposition.is_some() {
                next.disposition = work.disposition.clone();
            }
            if work.recording_url.is_some() {
                next.recording_url = work.recording_url.clone();
            }
            if next == log.work {
                return false;
            }
            log.work = next;
            log.revision += 1;
            true
        })?;
        if log.revision == before {
            return Ok(skipped("HubSpot has this already"));
        }
        if log.ended.is_none() {
            return Ok(outcome(
                EventAction::Queued,
                format!(
                    "kept for call {}; added to its HubSpot call when the call is logged",
                    crate::cut(call_id, 64)
                ),
            ));
        }
        let id = format!("{call_id}{UPDATE_SEPARATOR}{}", log.revision);
        self.outbox().enqueue(&id, |now, batch| {
            let job = Job {
                call_id: call_id.to_string(),
                task: Task::Update,
            };
            Ok((batch, Enqueue::Queue(outbox::Entry::new(&id, job, now)), ()))
        })?;
        Ok(self.deliver_now(&id, call_id))
    }

    /// Deliver the outbox entry `id` now; what happened, in words.
    fn deliver_now(&self, id: &str, call_id: &str) -> EventOutcome {
        match self.outbox().deliver_id(id) {
            Ok(Some(done)) => {
                let on = self
                    .call_log(call_id)
                    .ok()
                    .and_then(|l| l.target)
                    .map(|t| format!(" on {} {} ({})", t.label(), t.name, t.id))
                    .unwrap_or_default();
                if id == call_id {
                    outcome(
                        EventAction::Logged,
                        format!("Call {} logged in HubSpot{on}", done.hubspot_id),
                    )
                } else {
                    outcome(
                        EventAction::Updated,
                        format!("HubSpot call {} updated{on}", done.hubspot_id),
                    )
                }
            }
            Ok(None) => outcome(
                EventAction::Queued,
                "another instance is sending this call to HubSpot, or it waits for its retry",
            ),
            Err(e) => {
                self.host.log(
                    Level::Info,
                    &format!("call {} waits for HubSpot: {e}", crate::cut(call_id, 64)),
                );
                outcome(
                    EventAction::Queued,
                    format!("the call log waits for HubSpot ({e}); it is retried with back-off"),
                )
            }
        }
    }

    /// The outbox's create: the Call for `call_id`, once.
    fn create(&self, call_id: &str) -> Result<Delivered, PluginError> {
        let mut log = self.call_log(call_id)?;
        if let Some(id) = log.hubspot_id.clone() {
            return Ok(Delivered {
                hubspot_id: id,
                created: false,
            });
        }
        let Some(ended) = log.ended.clone() else {
            return Err(PluginError::Store(format!(
                "call {} has no ended event to log",
                crate::cut(call_id, 64)
            )));
        };
        let hub = Hub::new(self.host);
        if log.owner_id.is_none() {
            log.owner_id = associations(self.host)
                .user_for_extension(&ended.extension)?
                .map(|u| u.id);
        }
        if log.target.is_none() {
            log.target = self.target(call_id, &ended)?;
        }
        let now = self.host.now_ms();
        if let Some(sent_at) = log.create_sent_at_ms {
            if let Some(id) = self.find_logged(call_id)? {
                // The lost create made it: bring it up to date instead.
                hub.patch(
                    &format!("/crm/v3/objects/calls/{}", segment(&id)),
                    &json!({ "properties": properties(&log, &ended) }),
                )?;
                self.record_id(call_id, &id, &log)?;
                return Ok(Delivered {
                    hubspot_id: id,
                    created: false,
                });
            }
            if now.saturating_sub(sent_at) < SEARCH_LAG_MS {
                return Err(PluginError::Conflict(
                    "a create whose answer was lost may not show in HubSpot's search yet".into(),
                ));
            }
        }
        // Record that a create goes out before it does.
        let (owner_id, target) = (log.owner_id.clone(), log.target.clone());
        self.change_log(call_id, |l| {
            l.create_sent_at_ms = Some(now);
            l.owner_id = owner_id.clone();
            l.target = target.clone();
            true
        })?;
        let mut body = json!({ "properties": properties(&log, &ended) });
        if let Some(t) = &log.target {
            let type_id = if t.object == "company" {
                CALL_TO_COMPANY
            } else {
                CALL_TO_CONTACT
            };
            body["associations"] = json!([{
                "to": { "id": t.id },
                "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id }],
            }]);
        }
        match hub.post("/crm/v3/objects/calls", &body) {
            Ok(created) => {
                let id = created["id"].as_str().map(str::to_string).ok_or_else(|| {
                    PluginError::CrmUnavailable("the created call has no id".into())
                })?;
                self.record_id(call_id, &id, &log)?;
                Ok(Delivered {
                    hubspot_id: id,
                    created: true,
                })
            }
            Err(err) => {
                // An answer, even an error, means nothing was created; a
                // refusal may name a record that is gone (merged,
                // deleted): the next try finds the caller's record again.
                let unanswered = matches!(err, PluginErrorOr::Api(ApiError::Unanswered(_)));
                let refused = !err.transient();
                if !unanswered {
                    self.change_log(call_id, |l| {
                        l.create_sent_at_ms = None;
                        if refused {
                            l.target = None;
                        }
                        true
                    })?;
                }
                Err(err.into())
            }
        }
    }

    /// Keep HubSpot's id of the call's Call.
    fn record_id(&self, call_id: &str, id: &str, sent: &CallLog) -> Result<(), PluginError> {
        self.change_log(call_id, |l| {
            l.hubspot_id = Some(id.to_string());
            l.create_sent_at_ms = None;
            l.owner_id = sent.owner_id.clone();
            l.target = sent.target.clone();
            true
        })?;
        Ok(())
    }

    /// The outbox's update: the Call gets every property again (notes,
    /// disposition, recording).
    fn patch(&self, call_id: &str) -> Result<Delivered, PluginError> {
        let log = self.call_log(call_id)?;
        let (Some(id), Some(ended)) = (log.hubspot_id.clone(), log.ended.clone()) else {
            // The create has not gone through: it carries the work when it
            // does; this update waits to be sure.
            return Err(PluginError::Conflict(format!(
                "call {} is not logged in HubSpot yet",
                crate::cut(call_id, 64)
            )));
        };
        Hub::new(self.host).patch(
            &format!("/crm/v3/objects/calls/{}", segment(&id)),
            &json!({ "properties": properties(&log, &ended) }),
        )?;
        Ok(Delivered {
            hubspot_id: id,
            created: false,
        })
    }

    /// The Call a lost create made, found by its reference token.
    fn find_logged(&self, call_id: &str) -> Result<Option<String>, PluginErrorOr> {
        let body = json!({
            "filterGroups": [{"filters": [{
                "propertyName": "hs_call_body",
                "operator": "CONTAINS_TOKEN",
                "value": reference(call_id),
            }]}],
            "properties": ["hs_call_title"],
            "limit": 1,
        });
        let answer = Hub::new(self.host).post("/crm/v3/objects/calls/search", &body)?;
        Ok(answer["results"][0]["id"].as_str().map(str::to_string))
    }

    /// The record the Call is logged on: the agent's pick, else the
    /// caller's best match, else (by the settings) a contact created for
    /// the number.
    fn target(&self, call_id: &str, ended: &Ended) -> Result<Option<Found>, PluginErrorOr> {
        if let Some(chosen) = self.chosen(call_id)? {
            return Ok(Some(chosen));
        }
        if !ended.normalized {
            return Ok(None);
        }
        let Ok(n) = phone::normalize(&ended.number, "US") else {
            return Ok(None);
        };
        if let Some(best) = self.find(&n)?.into_iter().next() {
            return Ok(Some(best));
        }
        if self.settings()?.unknown_callers == UnknownCallers::CreateContact {
            return self.create_contact(&n.e164, &n.international).map(Some);
        }
        Ok(None)
    }

    /// Create a contact for an unknown number, once: remembered in the kv
    /// (search lags behind creates), under a lease so two calls from the
    /// same new number make one contact.
    fn create_contact(&self, e164: &str, shown: &str) -> Result<Found, PluginErrorOr> {
        if let Some(r) = self.remembered(e164)? {
            return Ok(r.found);
        }
        let store = self.store();
        let lease_key = format!("{}{}", keys::UNKNOWN_LEASE_PREFIX, keys::hashed(e164));
        let now = self.host.now_ms();
        let held = store.get_raw(&lease_key)?;
        let lease = Lease::take(self.host, Until::lease_from(now));
        if Lease::<Until>::live_raw(held.as_deref(), now)
            || store
                .commit(
                    &Batch::new()
                        .expect_raw(&lease_key, held)
                        .set(&lease_key, &lease)?,
                )
                .is_err()
        {
            return Err(PluginError::CrmUnavailable(format!(
                "another call is creating the contact for {shown}"
            ))
            .into());
        }
        let result = (|| {
            // A racing instance may have finished between our two reads.
            if let Some(r) = self.remembered(e164)? {
                return Ok(r.found);
            }
            let created = Hub::new(self.host).post(
                "/crm/v3/objects/contacts",
                &json!({ "properties": { "phone": e164, "lastname": shown } }),
            )?;
            let found = Found::from_json("contact", &created).ok_or_else(|| {
                PluginErrorOr::Api(ApiError::Unavailable(
                    "the created contact has no id".into(),
                ))
            })?;
            store.put(
                &format!("{}{}", keys::UNKNOWN_PREFIX, keys::hashed(e164)),
                &super::lookup::Remembered {
                    found: found.clone(),
                    created_at_ms: self.host.now_ms(),
                },
            )?;
            self.host.log(
                Level::Info,
                &format!("HubSpot contact {} created for {shown}", found.id),
            );
            Ok(found)
        })();
        let _ = store.delete(&lease_key);
        result
    }

    /// `run-pending`: deliver what is due; how many entries still wait.
    pub fn run_pending(&self) -> Result<u32, PluginError> {
        self.outbox().run_pending()
    }

    /// How many call logs and updates wait for HubSpot.
    pub fn pending(&self) -> u32 {
        self.store()
            .keys(keys::OUTBOX_PREFIX)
            .map_or(0, |k| u32::try_from(k.len()).unwrap_or(u32::MAX))
    }

    /// The status line for waiting call logs, if any wait.
    pub fn problem(&self) -> Option<String> {
        match self.pending() {
            0 => None,
            n => Some(format!(
                "{n} call log(s) waiting for HubSpot; the PBX retries with back-off"
            )),
        }
    }
}

/// The Call's properties for `entry`.
fn properties(entry: &CallLog, ended: &Ended) -> Map<String, Value> {
    let mut p = Map::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_string(), Value::String(v));
    };
    let answered = ended.answered_at_ms.is_some();
    let duration = match (ended.answered_at_ms, ended.ended_at_ms) {
        (Some(a), Some(e)) => e.saturating_sub(a),
        _ => 0,
    };
    let shown = if ended.normalized {
        phone::normalize(&ended.number, "US")
            .map(|n| n.international)
            .unwrap_or_else(|_| ended.number.clone())
    } else {
        ended.number.clone()
    };
    let voicemail = ended.disposition.as_deref() == Some("voicemail");
    let title = match (ended.inbound, answered, voicemail) {
        (true, _, true) => format!("Voicemail from {shown}"),
        (true, true, _) => format!("Inbound call from {shown}"),
        (true, false, _) => format!("Missed call from {shown}"),
        (false, true, _) => format!("Outbound call to {shown}"),
        (false, false, _) => format!("Unanswered call to {shown}"),
    };
    let mut body = format!(
        "{title}, extension {}{}.",
        ended.extension,
        if answered {
            format!(", {} s", duration / 1000)
        } else {
            String::new()
        }
    );
    if let Some(d) = &entry.work.disposition {
        body.push_str(&format!("\nOutcome: {d}"));
    }
    if let Some(notes) = &entry.work.notes {
        body.push_str(&format!("\n\n{notes}"));
    }
    body.push_str(&format!(
        "\n\nPBX call {} (ref {})",
        crate::cut(&entry.call_id, 64),
        reference(&entry.call_id)
    ));
    set("hs_timestamp", ended.started_at_ms.to_string());
    set("hs_call_title", title);
    set("hs_call_body", body);
    set(
        "hs_call_direction",
        if ended.inbound { "INBOUND" } else { "OUTBOUND" }.into(),
    );
    set("hs_call_duration", duration.to_string());
    let (from, to) = if ended.inbound {
        (ended.number.clone(), ended.extension.clone())
    } else {
        (ended.extension.clone(), ended.number.clone())
    };
    set("hs_call_from_number", from);
    set("hs_call_to_number", to);
    let status = match (answered, ended.disposition.as_deref()) {
        (true, _) => "COMPLETED",
        (false, Some("busy")) => "BUSY",
        _ => "NO_ANSWER",
    };
    set("hs_call_status", status.into());
    if let Some(url) = entry
        .work
        .recording_url
        .as_ref()
        .or(ended.recording_url.as_ref())
    {
        set("hs_call_recording_url", url.clone());
    }
    if let Some(guid) = entry.work.disposition.as_deref().and_then(|d| {
        OUTCOMES
            .iter()
            .find(|(label, _)| label.eq_ignore_ascii_case(d.trim()))
            .map(|(_, guid)| guid.to_string())
    }) {
        set("hs_call_disposition", guid);
    }
    if let Some(owner) = &entry.owner_id {
        set("hubspot_owner_id", owner.clone());
    }
    p
}
