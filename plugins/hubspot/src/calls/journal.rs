//! The call journal: one HubSpot Call engagement per PBX call id, exactly
//! once through outages, retries and concurrent instances.
//!
//! Each call has an entry in the kv (`journal/call/{hash}`) with the ended
//! event, the agent's after-call work and what HubSpot has of it; while
//! something is owed to HubSpot a due marker (`journal/due/{hash}`, its
//! value the time of the next try) is there too: the outbox that
//! `run-pending` works through with back-off. One instance delivers an
//! entry at a time (a kv lease).
//!
//! Exactly once: before the create goes out, the entry records that it is
//! being sent; a try that finds that mark searches HubSpot for the Call by
//! a reference token in its body (`pbxcall` + the call id's hash) before
//! creating again, so a create whose answer was lost is found, not
//! repeated. Retries come at least [`FIRST_RETRY_MS`] later, beyond
//! HubSpot's search lag of seconds. Changes later (notes, disposition, a
//! recording) PATCH the same Call.

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
use pbx_crm_sdk::store::Batch;

/// The first retry's delay; each further one doubles, up to [`MAX_RETRY_MS`].
pub const FIRST_RETRY_MS: u64 = 30_000;
pub const MAX_RETRY_MS: u64 = 3_600_000;
/// Tries before an entry is given up (about a day of back-off).
pub const MAX_ATTEMPTS: u32 = 30;
/// Entries delivered per `run-pending` call, inside its deadline.
const RUN_BUDGET: usize = 10;
/// Compare-and-swap rounds before giving up on a busy entry.
const CAS_ROUNDS: usize = 8;
/// HubSpot's association type ids: call→contact, call→company.
const CALL_TO_CONTACT: u32 = 194;
const CALL_TO_COMPANY: u32 = 182;

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

/// A call's journal entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    pub call_id: String,
    pub ended: Option<Ended>,
    pub work: Work,
    /// Bumped by every change HubSpot must get.
    pub revision: u64,
    /// The revision HubSpot has.
    pub delivered: u64,
    /// HubSpot's id of the Call, once known.
    pub hubspot_id: Option<String>,
    /// A create went out whose answer may have been lost.
    pub create_sent: bool,
    pub owner_id: Option<String>,
    pub target: Option<Found>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl Entry {
    fn owed(&self) -> bool {
        self.ended.is_some() && self.delivered < self.revision
    }
}

fn entry_key(call_id: &str) -> String {
    format!("{}{}", keys::JOURNAL_PREFIX, keys::hashed(call_id))
}

fn due_key(call_id: &str) -> String {
    format!("{}{}", keys::DUE_PREFIX, keys::hashed(call_id))
}

/// The token in a Call's body that finds it again.
pub fn reference(call_id: &str) -> String {
    format!("pbxcall{}", keys::hashed(call_id))
}

fn backoff(attempts: u32) -> u64 {
    FIRST_RETRY_MS
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(MAX_RETRY_MS)
}

/// How a delivery went.
enum Delivery {
    /// HubSpot has everything: created or updated (`true`: created now).
    Done { created: bool },
    /// Another instance delivers it now.
    Busy,
    /// It waits for a retry; why.
    Waiting(String),
}

impl<H: Host> Calls<'_, H> {
    fn entry(&self, call_id: &str) -> Result<(Entry, Option<Vec<u8>>), PluginError> {
        Ok(match self.store().get_with_raw::<Entry>(&entry_key(call_id))? {
            Some((e, raw)) => (e, Some(raw)),
            None => (
                Entry {
                    call_id: call_id.to_string(),
                    ..Entry::default()
                },
                None,
            ),
        })
    }

    /// Write `next` over `raw`, with the due marker following what is owed.
    fn write(&self, raw: Option<Vec<u8>>, next: &Entry, due_at: u64) -> Result<(), PluginError> {
        let key = entry_key(&next.call_id);
        let mut batch = Batch::new().expect_raw(&key, raw).set(&key, next)?;
        batch = if next.owed() && next.attempts < MAX_ATTEMPTS {
            batch.set(&due_key(&next.call_id), &due_at)?
        } else {
            batch.delete(&due_key(&next.call_id))
        };
        self.store().commit(&batch)
    }

    /// Change the entry of `call_id` with `change` (compare-and-swap,
    /// retried on a concurrent write); the entry as written.
    fn update(
        &self,
        call_id: &str,
        due_at: u64,
        change: impl Fn(&mut Entry) -> bool,
    ) -> Result<Option<Entry>, PluginError> {
        for _ in 0..CAS_ROUNDS {
            let (mut entry, raw) = self.entry(call_id)?;
            if !change(&mut entry) {
                return Ok(None);
            }
            match self.write(raw, &entry, due_at) {
                Ok(()) => return Ok(Some(entry)),
                Err(PluginError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PluginError::Conflict(format!(
            "call {} is being changed by many calls at once; try again",
            crate::cut(call_id, 64)
        )))
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
        let now = self.host.now_ms();
        let queued = self.update(&e.call_id, now, |entry| {
            if entry.ended.is_some() {
                return false;
            }
            entry.ended = Some(ended.clone());
            entry.revision += 1;
            true
        })?;
        if queued.is_none() {
            return Ok(skipped(format!(
                "call {} is logged already or waits to be (a repeated event)",
                crate::cut(&e.call_id, 64)
            )));
        }
        Ok(self.deliver_outcome(&e.call_id, false))
    }

    /// After-call work or a late recording: added to the call's Call
    /// (updated now, or sent with the create when the call is logged).
    pub fn add_work(&self, call_id: &str, work: Work) -> Result<EventOutcome, PluginError> {
        let now = self.host.now_ms();
        let written = self.update(call_id, now, |entry| {
            let before = entry.work.clone();
            if work.notes.is_some() {
                entry.work.notes = work.notes.clone();
            }
            if work.disposition.is_some() {
                entry.work.disposition = work.disposition.clone();
            }
            if work.recording_url.is_some() {
                entry.work.recording_url = work.recording_url.clone();
            }
            if entry.work == before {
                return false;
            }
            entry.revision += 1;
            // New work deserves fresh tries.
            entry.attempts = 0;
            true
        })?;
        let entry = match written {
            Some(entry) => entry,
            None => self.entry(call_id)?.0,
        };
        if entry.ended.is_none() {
            return Ok(outcome(
                EventAction::Queued,
                format!(
                    "kept for call {}; added to its HubSpot call when the call is logged",
                    crate::cut(call_id, 64)
                ),
            ));
        }
        if !entry.owed() {
            return Ok(skipped("HubSpot has this already"));
        }
        Ok(self.deliver_outcome(call_id, true))
    }

    fn deliver_outcome(&self, call_id: &str, update: bool) -> EventOutcome {
        match self.deliver(call_id) {
            Ok(Delivery::Done { created }) => {
                let (entry, _) = self.entry(call_id).unwrap_or_default();
                let id = entry.hubspot_id.unwrap_or_default();
                let on = entry
                    .target
                    .map(|t| format!(" on {} {} ({})", t.label(), t.name, t.id))
                    .unwrap_or_default();
                if created || !update {
                    outcome(EventAction::Logged, format!("Call {id} logged in HubSpot{on}"))
                } else {
                    outcome(EventAction::Updated, format!("HubSpot call {id} updated{on}"))
                }
            }
            Ok(Delivery::Busy) => outcome(
                EventAction::Queued,
                "another instance is sending this call to HubSpot",
            ),
            Ok(Delivery::Waiting(why)) => outcome(
                EventAction::Queued,
                format!("the call log waits for HubSpot ({why}); it is retried with back-off"),
            ),
            Err(e) => {
                self.host.log(
                    Level::Info,
                    &format!("call {} waits for HubSpot: {e}", crate::cut(call_id, 64)),
                );
                outcome(
                    EventAction::Queued,
                    format!("the call log waits for HubSpot: {e}"),
                )
            }
        }
    }

    /// Deliver what HubSpot is owed for `call_id`, under the entry's lease.
    fn deliver(&self, call_id: &str) -> Result<Delivery, PluginError> {
        let lease_key = format!("{}{}", keys::JOURNAL_LEASE_PREFIX, keys::hashed(call_id));
        let store = self.store();
        let now = self.host.now_ms();
        let held = store.get_raw(&lease_key)?;
        if Lease::<Until>::live_raw(held.as_deref(), now) {
            return Ok(Delivery::Busy);
        }
        let lease = Lease::take(self.host, Until::lease_from(now));
        if store
            .commit(&Batch::new().expect_raw(&lease_key, held).set(&lease_key, &lease)?)
            .is_err()
        {
            return Ok(Delivery::Busy);
        }
        let result = self.deliver_held(call_id);
        let _ = store.delete(&lease_key);
        result
    }

    fn deliver_held(&self, call_id: &str) -> Result<Delivery, PluginError> {
        let (entry, _) = self.entry(call_id)?;
        if !entry.owed() {
            return Ok(Delivery::Done { created: false });
        }
        let sending = entry.revision;
        match self.send(entry) {
            Ok((id, created, owner_id, target)) => {
                self.update(call_id, self.host.now_ms(), |e| {
                    e.hubspot_id = Some(id.clone());
                    e.create_sent = false;
                    e.delivered = e.delivered.max(sending);
                    e.owner_id = owner_id.clone().or(e.owner_id.take());
                    e.target = target.clone().or(e.target.take());
                    e.attempts = 0;
                    e.last_error = None;
                    true
                })?;
                Ok(Delivery::Done { created })
            }
            Err(err) => {
                let now = self.host.now_ms();
                let why = err.to_string();
                // A refusal (4xx) created nothing: the next try creates.
                let refused = !err.transient();
                let written = self.update(call_id, now, |e| {
                    e.attempts += 1;
                    e.last_error = Some(crate::cut(&why, 300));
                    if refused {
                        e.create_sent = false;
                    }
                    true
                })?;
                if let Some(e) = &written {
                    let wait = backoff(e.attempts).max(err.retry_after_ms().unwrap_or(0));
                    if e.attempts >= MAX_ATTEMPTS {
                        self.host.log(
                            Level::Warn,
                            &format!(
                                "call {} given up after {} tries: {why}",
                                crate::cut(call_id, 64),
                                e.attempts
                            ),
                        );
                    }
                    // The marker carries the next try's time.
                    if e.owed() && e.attempts < MAX_ATTEMPTS {
                        let _ = self.store().put(&due_key(call_id), &(now + wait));
                    }
                }
                Ok(Delivery::Waiting(why))
            }
        }
    }

    /// Create or update the Call for `entry`: its id, whether it was
    /// created now, and the owner and record resolved.
    #[allow(clippy::type_complexity)]
    fn send(
        &self,
        mut entry: Entry,
    ) -> Result<(String, bool, Option<String>, Option<Found>), PluginErrorOr> {
        let Some(ended) = entry.ended.clone() else {
            return Err(PluginError::Store("no ended event to log".into()).into());
        };
        let hub = Hub::new(self.host);
        if entry.owner_id.is_none() {
            entry.owner_id = associations(self.host)
                .user_for_extension(&ended.extension)?
                .map(|u| u.id);
        }
        if entry.target.is_none() {
            entry.target = self.target(&entry.call_id, &ended)?;
        }
        let properties = properties(&entry, &ended);
        let mut id = entry.hubspot_id.clone();
        if id.is_none() && entry.create_sent {
            id = self.find_logged(&entry.call_id)?;
        }
        if let Some(id) = id {
            hub.patch(
                &format!("/crm/v3/objects/calls/{}", segment(&id)),
                &json!({ "properties": properties }),
            )?;
            return Ok((id, false, entry.owner_id, entry.target));
        }
        // Record that a create goes out before it does.
        self.update(&entry.call_id, self.host.now_ms(), |e| {
            e.create_sent = true;
            e.owner_id = entry.owner_id.clone();
            e.target = entry.target.clone();
            true
        })?;
        let mut body = json!({ "properties": properties });
        if let Some(t) = &entry.target {
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
        let created = hub.post("/crm/v3/objects/calls", &body)?;
        let id = created["id"].as_str().map(str::to_string).ok_or_else(|| {
            PluginErrorOr::Api(ApiError::Unavailable("the created call has no id".into()))
        })?;
        Ok((id, true, entry.owner_id, entry.target))
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
                .commit(&Batch::new().expect_raw(&lease_key, held).set(&lease_key, &lease)?)
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
                PluginErrorOr::Api(ApiError::Unavailable("the created contact has no id".into()))
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

    /// `run-pending`: deliver what is due, a bounded number per call;
    /// how many entries still wait.
    pub fn run_pending(&self) -> Result<u32, PluginError> {
        let store = self.store();
        let now = self.host.now_ms();
        let mut budget = RUN_BUDGET;
        for key in store.keys(keys::DUE_PREFIX)? {
            if budget == 0 {
                break;
            }
            let due: u64 = store.get(&key)?.unwrap_or(0);
            if due > now {
                continue;
            }
            let Some(hash) = key.strip_prefix(keys::DUE_PREFIX) else {
                continue;
            };
            let Some((entry, _)) =
                store.get_with_raw::<Entry>(&format!("{}{hash}", keys::JOURNAL_PREFIX))?
            else {
                store.delete(&key)?;
                continue;
            };
            budget -= 1;
            if let Ok(Delivery::Waiting(_)) = self.deliver(&entry.call_id)
                && store.get::<u64>(keys::RATE_LIMITED_UNTIL)?.is_some_and(|t| t > now)
            {
                // HubSpot asked us to wait: the rest waits too.
                break;
            }
        }
        Ok(self.pending())
    }

    /// How many call logs wait for HubSpot.
    pub fn pending(&self) -> u32 {
        self.store()
            .keys(keys::DUE_PREFIX)
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
fn properties(entry: &Entry, ended: &Ended) -> Map<String, Value> {
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
