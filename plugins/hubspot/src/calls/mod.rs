//! The calls feature: caller lookup (`lookup`), the pop-up of the caller's
//! record and the agent's pick among several, click-to-call checks, and
//! the call journal (`journal`: one HubSpot Call per PBX call id, through
//! an outbox).

pub mod journal;
pub mod lookup;

use serde::{Deserialize, Serialize};

use crate::associations::associations;
use crate::bindings::exports::pbx::crm::calls::{
    CallEvent, Caller, Direction, EventAction, EventOutcome, Phase,
};
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::{Audience, Caption, Detail};
use crate::bindings::pbx::crm::types::CrmRecord;
use crate::connection::Connector;
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::phone;
use crate::settings::{Popup, Settings};
use lookup::Found;
use pbx_crm_sdk::store::Store;

/// The longest call id taken (kv keys use its hash; messages quote it).
pub const MAX_CALL_ID: usize = 255;

pub(crate) fn outcome(action: EventAction, detail: impl Into<String>) -> EventOutcome {
    EventOutcome {
        action,
        detail: detail.into(),
    }
}

pub(crate) fn skipped(why: impl Into<String>) -> EventOutcome {
    outcome(EventAction::Skipped, why)
}

/// The record an agent chose for a call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chosen {
    pub found: Found,
}

/// The calls feature over a host.
pub struct Calls<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Calls<'h, H> {
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    fn settings(&self) -> Result<Settings, PluginError> {
        Ok(self.store().get(keys::SETTINGS)?.unwrap_or_default())
    }

    /// `lookup-caller`: the best record and the others. A number that does
    /// not normalize matches nothing and comes back as given.
    pub fn lookup(&self, number: &str, region: &str) -> Result<Caller, PluginError> {
        let session = Connector::new(self.host).session()?;
        let Ok(n) = phone::normalize(number, region) else {
            return Ok(Caller {
                number: number.to_string(),
                best: None,
                others: Vec::new(),
            });
        };
        let mut records: Vec<CrmRecord> = self
            .find(&n)?
            .iter()
            .map(|f| f.to_record(&session))
            .collect();
        let best = (!records.is_empty()).then(|| records.remove(0));
        Ok(Caller {
            number: n.e164,
            best,
            others: records,
        })
    }

    /// One call event: the pop-up at the configured phase, the journal on
    /// `ended`, the recording link on `recording-ready`.
    pub fn on_event(&self, e: &CallEvent) -> Result<Vec<EventOutcome>, PluginError> {
        if e.call_id.trim().is_empty() || e.call_id.chars().count() > MAX_CALL_ID {
            return Err(PluginError::InvalidInput(format!(
                "the call id must have 1 to {MAX_CALL_ID} characters"
            )));
        }
        match e.phase {
            Phase::RecordingReady => {
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
                let work = journal::Work {
                    recording_url: Some(url.to_string()),
                    ..Default::default()
                };
                Ok(vec![self.add_work(&e.call_id, work)?])
            }
            Phase::Ended => Ok(vec![self.journal(e)?]),
            Phase::Ringing | Phase::Answered => {
                let settings = self.settings()?;
                let wanted = match settings.popup {
                    Popup::Ringing => Some(Phase::Ringing),
                    Popup::Answered => Some(Phase::Answered),
                    Popup::Never => None,
                };
                if wanted != Some(e.phase) {
                    return Ok(vec![skipped(match wanted {
                        None => "pop-ups are off in the call settings".to_string(),
                        Some(_) => "no pop-up at this phase of the call (see the call settings)"
                            .to_string(),
                    })]);
                }
                // Best effort, as for Salesforce: a pop-up the PBX could
                // not show (its page limits, a CRM outage) is logged and
                // reported as skipped; the call event itself stands, so
                // the PBX does not retry it and the journal is unaffected.
                Ok(vec![self.popup(e).unwrap_or_else(|err| {
                    self.host.log(
                        Level::Warn,
                        &format!("no pop-up for call {}: {err}", crate::cut(&e.call_id, 64)),
                    );
                    skipped(format!("no pop-up: {err}"))
                })])
            }
        }
    }

    /// Open the caller's record for the extension's agent, or offer
    /// several to pick from.
    fn popup(&self, e: &CallEvent) -> Result<EventOutcome, PluginError> {
        if e.direction != Direction::Inbound {
            return Ok(skipped("pop-ups are for inbound calls"));
        }
        if associations(self.host)
            .user_for_extension(&e.extension)?
            .is_none()
        {
            return Ok(skipped(format!(
                "extension {} is not associated with a HubSpot owner: no pop-up",
                crate::cut(&e.extension, 32)
            )));
        }
        let n = match phone::normalize(&e.external_number, &e.default_region) {
            Ok(n) => n,
            Err(bad) => return Ok(skipped(bad.describe(&e.external_number))),
        };
        let session = Connector::new(self.host).session()?;
        let found = self.find(&n)?;
        let audience = Audience::Extension(e.extension.clone());
        let mut caption = Caption {
            title: format!("Incoming call from {}", n.international),
            details: vec![Detail {
                label: "Number".into(),
                value: n.international.clone(),
            }],
            action: "Open in HubSpot".into(),
            call_id: Some(e.call_id.clone()),
        };
        match found.as_slice() {
            [] => Ok(skipped(format!(
                "no HubSpot contact or company has {}: no pop-up",
                n.international
            ))),
            [one] => {
                let record = one.to_record(&session);
                caption.details.push(Detail {
                    label: "Name".into(),
                    value: record.name.clone(),
                });
                caption.details.push(Detail {
                    label: "Record type".into(),
                    value: record.object_type.clone(),
                });
                if let Some(company) = &record.account {
                    caption.details.push(Detail {
                        label: "Company".into(),
                        value: company.clone(),
                    });
                }
                self.host
                    .open_page(&record.url, &audience, Some(&caption))
                    .map_err(|why| {
                        PluginError::CrmUnavailable(format!("the pop-up failed: {why}"))
                    })?;
                Ok(outcome(
                    EventAction::PoppedUp,
                    format!(
                        "{} {} ({}) opened for extension {}",
                        record.object_type, record.name, record.id, e.extension
                    ),
                ))
            }
            many => {
                let records: Vec<CrmRecord> = many.iter().map(|f| f.to_record(&session)).collect();
                caption.action = "Choose the record".into();
                self.host
                    .offer_records(&audience, &caption, &records)
                    .map_err(|why| {
                        PluginError::CrmUnavailable(format!("the offer failed: {why}"))
                    })?;
                Ok(outcome(
                    EventAction::PoppedUp,
                    format!(
                        "{} records match {}; offered to extension {} to choose",
                        records.len(),
                        n.international,
                        e.extension
                    ),
                ))
            }
        }
    }

    /// The agent's pick: the call is logged to it.
    pub fn choose_record(
        &self,
        call_id: &str,
        number: &str,
        region: &str,
        record_id: &str,
    ) -> Result<CrmRecord, PluginError> {
        if call_id.trim().is_empty() || call_id.chars().count() > MAX_CALL_ID {
            return Err(PluginError::InvalidInput(format!(
                "the call id must have 1 to {MAX_CALL_ID} characters"
            )));
        }
        let session = Connector::new(self.host).session()?;
        let n = phone::normalize(number, region)
            .map_err(|bad| PluginError::InvalidInput(bad.describe(number)))?;
        // Only a record that matches the caller may be picked.
        let found = self
            .find(&n)?
            .into_iter()
            .find(|f| f.id == record_id.trim())
            .ok_or_else(|| {
                PluginError::NotFound(format!(
                    "record {} does not match {}; pick one of the records offered",
                    crate::cut(record_id, 40),
                    n.international
                ))
            })?;
        self.store().put(
            &format!("{}{}", keys::CHOSEN_PREFIX, keys::hashed(call_id)),
            &Chosen {
                found: found.clone(),
            },
        )?;
        Ok(found.to_record(&session))
    }

    /// The record the agent chose for a call, if any.
    pub fn chosen(&self, call_id: &str) -> Result<Option<Found>, PluginError> {
        Ok(self
            .store()
            .get::<Chosen>(&format!("{}{}", keys::CHOSEN_PREFIX, keys::hashed(call_id)))?
            .map(|c| c.found))
    }

    /// Click-to-call: the extension must be associated with an owner; the
    /// number to dial in E.164.
    pub fn authorize_dial(
        &self,
        extension: &str,
        number: &str,
        region: &str,
    ) -> Result<String, PluginError> {
        let extension = extension.trim();
        if associations(self.host)
            .user_for_extension(extension)?
            .is_none()
        {
            let shown = crate::cut(extension, 32);
            return Err(if self.host.extension(extension).is_none() {
                PluginError::InvalidInput(format!(
                    "extension {shown:?} does not exist on the PBX; dial from an extension associated with a HubSpot owner"
                ))
            } else {
                PluginError::NotConfigured(format!(
                    "associate extension {shown} with a HubSpot owner first (PBX portal, HubSpot users), then dial again"
                ))
            });
        }
        phone::normalize(number, region)
            .map(|n| n.e164)
            .map_err(|bad| PluginError::InvalidInput(bad.describe(number)))
    }
}
