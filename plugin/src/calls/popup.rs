//! The pop-up: the caller's record opens for the agent of the extension,
//! at the phase the call settings name, once per call and phase (a ledger
//! of shown pop-ups), and never for a call that is already over.

use super::Calls;
use super::ledger::{Ledger, bucket_key, outbox_key};
use crate::associations::Associations;
use crate::bindings::exports::pbx::crm::calls::{CallEvent, Direction, Phase};
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::Audience;
use crate::error::PluginError;
use crate::host::Host;
use crate::phone;
use crate::store::{decode, keys};

/// How long a shown pop-up is remembered.
pub const POPPED_KEEP_MS: u64 = 24 * 60 * 60 * 1000;

fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Ringing => "ringing",
        Phase::Answered => "answered",
        Phase::Ended => "ended",
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
    /// per call and phase. Best effort: failures are logged.
    pub(super) fn popup(&self, e: &CallEvent) {
        if let Err(err) = self.try_popup(e) {
            self.host.log(
                Level::Warn,
                &format!("no pop-up for call {}: {err}", e.call_id),
            );
        }
    }

    fn try_popup(&self, e: &CallEvent) -> Result<(), PluginError> {
        if e.direction == Direction::Internal {
            return Ok(());
        }
        if Associations::new(self.host)
            .user_for_extension(&e.extension)?
            .is_none()
        {
            return Ok(());
        }
        let Ok(n) = phone::normalize(&e.external_number, &e.default_region) else {
            return Ok(());
        };
        let Some(best) = self.find(&n)?.into_iter().next() else {
            return Ok(());
        };
        let id = format!("{}/{}", e.call_id, phase_str(e.phase));
        if !self.record_once(keys::CALLS_POPPED_PREFIX, &id, POPPED_KEEP_MS)? {
            return Ok(());
        }
        self.host
            .open_browser(&best.url, &Audience::Extension(e.extension.clone()))
            .map_err(|why| {
                PluginError::CrmUnavailable(format!(
                    "the PBX could not open the record for extension {}: {why}",
                    e.extension
                ))
            })
    }
}
