//! The pop-up: the caller's record opens for the agent of the extension,
//! at the phase the call settings name, once per call and phase (a ledger
//! of shown pop-ups), and never for a call that is already over. It comes
//! with a caption (pbx:crm 0.3.0) saying who is calling: the number, the
//! record's name and type, and a Contact's Account (one query, best
//! effort). An unknown caller's pop-up is the new-record page of the kind
//! the call settings create for unknown callers, with the number filled
//! in (none when they create none). Several matching records are offered
//! for the agent to pick (`choice`) unless one was chosen for the number.

use super::ledger::{Ledger, bucket_key, outbox_key};
use super::lookup::Match;
use super::{Calls, outcome, skipped};
use crate::associations::associations;
use crate::auth::Tokens;
use crate::bindings::exports::pbx::crm::calls::{
    CallEvent, Direction, EventAction, EventOutcome, Phase,
};
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::{Audience, Caption, Detail};
use crate::error::PluginError;
use crate::host::Host;
use crate::phone::{self, Normalized};
use crate::salesforce::query;
use crate::settings::UnknownCaller;
use crate::store::{decode, keys};

/// The pop-up's button.
pub const ACTION: &str = "Open in Salesforce";

/// How long a shown pop-up is remembered.
pub const POPPED_KEEP_MS: u64 = 24 * 60 * 60 * 1000;

pub(super) fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Ringing => "ringing",
        Phase::Answered => "answered",
        Phase::Ended => "ended",
        Phase::RecordingReady => "recording-ready",
    }
}

impl<H: Host> Calls<'_, H> {
    /// Whether the call has ended: its log waits in the outbox or is in the
    /// done ledger. Both are read in one host call (`get-many`), as this is
    /// on the way of every ringing or answered event.
    pub(super) fn is_over(&self, call_id: &str) -> Result<bool, PluginError> {
        let done_key = bucket_key(keys::CALLS_DONE_PREFIX, call_id);
        let found = self
            .store()
            .get_many_raw(&[outbox_key(call_id), done_key.clone()])?;
        let (queued, ledger) = match found.as_slice() {
            [queued, ledger] => (queued.is_some(), ledger.as_deref()),
            other => {
                return Err(PluginError::Store(format!(
                    "get-many answered {} values for 2 keys",
                    other.len()
                )));
            }
        };
        let done = match ledger {
            Some(bytes) => decode::<Ledger>(&done_key, bytes)?
                .entries
                .contains_key(call_id),
            None => false,
        };
        Ok(queued || done)
    }

    /// Pop the caller's record up for the extension's associated user, once
    /// per call and phase; what was done, or why not. Best effort: a failure
    /// is logged and reported as skipped, never fails the event.
    pub(super) fn popup(&self, e: &CallEvent) -> EventOutcome {
        match self.try_popup(e) {
            Ok(outcome) => outcome,
            Err(err) => {
                self.host.log(
                    Level::Warn,
                    &format!("no pop-up for call {}: {err}", e.call_id),
                );
                skipped(format!("no pop-up: {err}"))
            }
        }
    }

    fn try_popup(&self, e: &CallEvent) -> Result<EventOutcome, PluginError> {
        if e.direction == Direction::Internal {
            return Ok(skipped("internal call: no pop-up"));
        }
        if associations(self.host)
            .user_for_extension(&e.extension)?
            .is_none()
        {
            return Ok(skipped(format!(
                "no pop-up: extension {} is not associated with a Salesforce user",
                e.extension
            )));
        }
        let Ok(n) = phone::normalize(&e.external_number, &e.default_region) else {
            return Ok(skipped(format!(
                "no pop-up: {:?} is not a phone number",
                e.external_number
            )));
        };
        let (matches, chosen) = self.find_choosing(&n)?;
        let id = format!("{}/{}", e.call_id, phase_str(e.phase));
        if !self.record_once(keys::CALLS_POPPED_PREFIX, &id, POPPED_KEEP_MS)? {
            return Ok(skipped(format!(
                "the pop-up of call {} was sent already (a repeated event)",
                e.call_id
            )));
        }
        if matches.len() > 1 && !chosen {
            return self.offer(e, &n, &matches);
        }
        let best = matches.into_iter().next();
        let (url, what) = match &best {
            Some(best) => (
                best.url.clone(),
                format!("{} {} ({})", best.kind(), best.name, best.id),
            ),
            None => match self.new_record_url(e, &n)? {
                Some((object, url)) => (url, format!("a new {object} for {}", n.international)),
                None => {
                    return Ok(skipped(format!(
                        "no pop-up: no Salesforce record has {}, and the call settings create none for unknown callers",
                        n.international
                    )));
                }
            },
        };
        let caption = self.caption(e, &n, best.as_ref());
        self.host
            .open_page(
                &url,
                &Audience::Extension(e.extension.clone()),
                Some(&caption),
            )
            .map_err(|why| {
                PluginError::CrmUnavailable(format!(
                    "the PBX could not open the record for extension {}: {why}",
                    e.extension
                ))
            })?;
        Ok(outcome(
            EventAction::PoppedUp,
            format!("pop-up of {what} sent to extension {}", e.extension),
        ))
    }

    /// What the pop-up is about: who is calling and which record opens.
    pub(super) fn caption(&self, e: &CallEvent, n: &Normalized, best: Option<&Match>) -> Caption {
        let title = match e.direction {
            Direction::Outbound => format!("Outgoing call to {}", n.international),
            _ => format!("Incoming call from {}", n.international),
        };
        let detail = |label: &str, value: &str| Detail {
            label: label.into(),
            value: value.into(),
        };
        let mut details = vec![detail("Number", &n.international)];
        if let Some(best) = best {
            details.push(detail("Name", &best.name));
            details.push(detail("Record type", best.kind()));
            if let Some(account) = best
                .account_id
                .as_deref()
                .and_then(|a| self.account_name(a))
            {
                details.push(detail("Account", &account));
            }
        }
        Caption {
            title,
            details,
            action: ACTION.into(),
            call_id: Some(e.call_id.clone()),
        }
    }

    /// The name of the Account `account_id`, if Salesforce tells; a failed
    /// query only leaves the detail out.
    pub(super) fn account_name(&self, account_id: &str) -> Option<String> {
        if !account_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        match self
            .api()
            .query::<serde_json::Value>(&query::account_name(account_id))
        {
            Ok(rows) => rows
                .first()
                .and_then(|r| r.get("Name"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            Err(e) => {
                self.host.log(
                    Level::Info,
                    &format!("the pop-up shows no Account name: {}", PluginError::from(e)),
                );
                None
            }
        }
    }

    /// The page for a caller no record has: a new Contact or Lead (as the
    /// call settings create for unknown callers of this direction) with the
    /// number filled in: (the object, the page); none when they create none.
    fn new_record_url(
        &self,
        e: &CallEvent,
        n: &Normalized,
    ) -> Result<Option<(&'static str, String)>, PluginError> {
        let settings = self.settings()?;
        let kind = match e.direction {
            Direction::Outbound => settings.unknown_outbound,
            _ => settings.unknown_inbound,
        };
        let object = match kind {
            UnknownCaller::Lead => "Lead",
            UnknownCaller::Contact => "Contact",
            UnknownCaller::Nothing => return Ok(None),
        };
        let instance = self
            .store()
            .get::<Tokens>(keys::TOKENS)?
            .map(|t| t.instance_url)
            .ok_or_else(|| PluginError::NotConnected("Salesforce is not connected".into()))?;
        // `+` must reach Salesforce as itself inside the field value.
        let phone = n.e164.replace('+', "%2B");
        Ok(Some((
            object,
            format!("{instance}/lightning/o/{object}/new?defaultFieldValues=Phone={phone}"),
        )))
    }
}
