//! Several records match a caller: the pop-up offers them to the agent
//! (`open-browser.offer-records`), the offer is remembered per call under
//! `calls/offered/<call id>`, and the agent's pick (`choose-record`) is
//! remembered per number under `calls/choice/<E.164>`. A remembered choice
//! wins every later lookup, pop-up and Task of that number while it still
//! matches; the call the pick was for is logged to it (a Task already
//! written is re-pointed).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::ledger::{Ledger, bucket_key, key_part};
use super::lookup::Match;
use super::{Calls, outcome};
use crate::bindings::exports::pbx::crm::calls::{CallEvent, CrmRecord, EventAction, EventOutcome};
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::Audience;
use crate::error::PluginError;
use crate::host::Host;
use crate::phone::{self, Normalized};
use crate::store::{decode, keys};

/// How long an offer can be answered.
pub const OFFER_KEEP_MS: u64 = 24 * 60 * 60 * 1000;
/// The host shows at most this many offered records (the WIT's bound).
pub const MAX_OFFERED: usize = 16;

/// The records offered for a call, under `calls/offered/<call id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offered {
    /// The extension they were offered to.
    pub extension: String,
    /// The caller's number, E.164.
    pub e164: String,
    /// The offered records' ids.
    pub ids: Vec<String>,
    /// When they were offered.
    pub at_ms: u64,
}

/// The record an agent chose for a number, under `calls/choice/<E.164>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chosen {
    /// The chosen record's id.
    pub id: String,
    /// When it was chosen.
    pub at_ms: u64,
}

fn offered_key(call_id: &str) -> String {
    format!("{}{}", keys::CALLS_OFFERED_PREFIX, key_part(call_id))
}

fn choice_key(e164: &str) -> String {
    format!("{}{}", keys::CALLS_CHOICE_PREFIX, e164)
}

impl<H: Host> Calls<'_, H> {
    /// Put the record chosen for `e164` first, if one was chosen and still
    /// matches; whether it was.
    pub(super) fn apply_choice(
        &self,
        e164: &str,
        matches: &mut [Match],
    ) -> Result<bool, PluginError> {
        let Some(chosen) = self.store().get::<Chosen>(&choice_key(e164))? else {
            return Ok(false);
        };
        match matches.iter().position(|m| m.id == chosen.id) {
            Some(at) => {
                matches[..=at].rotate_right(1);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Offer `matches` to the call's extension for the agent to pick one.
    pub(super) fn offer(
        &self,
        e: &CallEvent,
        n: &Normalized,
        matches: &[Match],
    ) -> Result<EventOutcome, PluginError> {
        let shown = &matches[..matches.len().min(MAX_OFFERED)];
        let records: Vec<CrmRecord> = shown
            .iter()
            .map(|m| {
                let mut r = m.record();
                r.account = m.account_id.as_deref().and_then(|a| self.account_name(a));
                r
            })
            .collect();
        let offered = Offered {
            extension: e.extension.clone(),
            e164: n.e164.clone(),
            ids: shown.iter().map(|m| m.id.clone()).collect(),
            at_ms: self.host.now_ms(),
        };
        self.store().put(&offered_key(&e.call_id), &offered)?;
        let mut caption = self.caption(e, n, None);
        caption
            .details
            .push(crate::bindings::pbx::crm::open_browser::Detail {
                label: "Matches".into(),
                value: format!("{} records have this number: pick one", matches.len()),
            });
        self.host
            .offer_records(
                &Audience::Extension(e.extension.clone()),
                &caption,
                &records,
            )
            .map_err(|why| {
                PluginError::CrmUnavailable(format!(
                    "the PBX could not offer the records to extension {}: {why}",
                    e.extension
                ))
            })?;
        Ok(outcome(
            EventAction::PoppedUp,
            format!(
                "{} records matching {} offered to extension {} to pick one",
                records.len(),
                n.international,
                e.extension
            ),
        ))
    }

    /// The agent at `extension` picked `record_id` for the call `call_id`
    /// from `number`: remember it for the number, log the call to it, and
    /// answer the record.
    pub fn choose_record(
        &self,
        call_id: &str,
        extension: &str,
        number: &str,
        region: &str,
        record_id: &str,
    ) -> Result<CrmRecord, PluginError> {
        let n = phone::normalize(number, region).map_err(|bad| {
            PluginError::InvalidInput(format!("no record can be chosen: {}", bad.describe(number)))
        })?;
        let store = self.store();
        let offered = store.get::<Offered>(&offered_key(call_id))?.filter(|o| {
            self.host.now_ms().saturating_sub(o.at_ms) < OFFER_KEEP_MS && o.e164 == n.e164
        });
        let Some(offered) = offered else {
            return Err(PluginError::NotFound(format!(
                "no records were offered for call {call_id:?} from {}; pick from the list the pop-up showed",
                n.international
            )));
        };
        if offered.extension != extension {
            return Err(PluginError::InvalidInput(format!(
                "the records of call {call_id:?} were offered to extension {}, not {extension}; only its agent can pick",
                offered.extension
            )));
        }
        let found = self.find(&n)?;
        let chosen = found
            .iter()
            .find(|m| m.id == record_id && offered.ids.contains(&m.id))
            .cloned()
            .ok_or_else(|| {
                PluginError::NotFound(format!(
                    "record {record_id:?} is not among the records matching {} offered for call {call_id:?}; pick one of the list",
                    n.international
                ))
            })?;
        store.put(
            &choice_key(&n.e164),
            &Chosen {
                id: chosen.id.clone(),
                at_ms: self.host.now_ms(),
            },
        )?;
        self.host.log(
            Level::Info,
            &format!(
                "extension {extension} chose {} {} for {}",
                chosen.kind(),
                chosen.id,
                n.international
            ),
        );
        // A log still in the outbox finds the choice when it is delivered;
        // a Task already written is re-pointed.
        if self.is_logged(call_id)? {
            self.repoint_task(call_id, &chosen)?;
        }
        let mut record = chosen.record();
        record.account = chosen
            .account_id
            .as_deref()
            .and_then(|a| self.account_name(a));
        Ok(record)
    }

    /// Whether the call's log is in the done ledger.
    fn is_logged(&self, call_id: &str) -> Result<bool, PluginError> {
        let key = bucket_key(keys::CALLS_DONE_PREFIX, call_id);
        Ok(match self.store().get_raw(&key)? {
            Some(bytes) => decode::<Ledger>(&key, &bytes)?
                .entries
                .contains_key(call_id),
            None => false,
        })
    }

    /// Point the Task logging `call_id` at `record` (its `WhoId` and
    /// `WhatId`); PATCH is idempotent, so a retry does no harm.
    fn repoint_task(&self, call_id: &str, record: &Match) -> Result<(), PluginError> {
        let Some(task) = self.existing_task(call_id)? else {
            return Err(PluginError::NotFound(format!(
                "Salesforce has no Task for call {call_id:?}; the choice is remembered for the next calls"
            )));
        };
        let mut body = Map::new();
        body.insert("WhoId".into(), Value::Null);
        body.insert("WhatId".into(), Value::Null);
        for (field, id) in record.links() {
            body.insert(field.into(), json!(id));
        }
        self.api()
            .patch_json(&format!("sobjects/Task/{task}"), &Value::Object(body))?;
        self.host.log(
            Level::Info,
            &format!(
                "call {call_id}: Task {task} now names {} {}",
                record.kind(),
                record.id
            ),
        );
        Ok(())
    }
}
