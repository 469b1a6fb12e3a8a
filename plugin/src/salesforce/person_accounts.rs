//! Whether the connected org has Person Accounts, remembered under
//! `org/person-accounts`.
//!
//! In an org without them, naming `IsPersonAccount` (or any `Person…`
//! field) in SOQL or SOSL is `INVALID_FIELD`, so the phone search must know
//! before it asks for them. It is learnt from the searches themselves, not
//! from a describe of Account: a search asks for the person fields unless
//! the org is remembered to lack them; `INVALID_FIELD` makes it search again
//! without them and remember that. An org with Person Accounts pays nothing
//! (the first search answers, and "yes" is kept for good: Salesforce cannot
//! turn them off once on); an org without pays one refused search, again
//! after [`RECHECK_MS`] in case they were turned on. A describe would cost a
//! request in every org, and a large answer. The memo names the instance it
//! was learnt on, so connecting another org learns again.

use serde::{Deserialize, Serialize};

use crate::bindings::pbx::crm::log::Level;
use crate::host::Host;
use crate::store::{Store, keys};

/// How long "this org has no Person Accounts" is believed.
pub const RECHECK_MS: u64 = 24 * 60 * 60 * 1000;

/// What was learnt, under `org/person-accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonAccounts {
    /// The org's instance URL when it was learnt.
    pub instance_url: String,
    /// Whether the org has Person Accounts.
    pub enabled: bool,
    /// When it was learnt, ms since the Unix epoch.
    pub at_ms: u64,
}

/// What is known of the org at `instance_url`: `Some(true)` for good,
/// `Some(false)` for [`RECHECK_MS`], `None` when it must be learnt.
pub fn known<H: Host>(host: &H, instance_url: &str) -> Option<bool> {
    let memo: PersonAccounts = Store::new(host).get(keys::PERSON_ACCOUNTS).ok().flatten()?;
    if memo.instance_url != instance_url {
        return None;
    }
    let fresh = host.now_ms().saturating_sub(memo.at_ms) < RECHECK_MS;
    (memo.enabled || fresh).then_some(memo.enabled)
}

/// Remember whether the org at `instance_url` has Person Accounts. A failed
/// write is only logged: the next search learns it again.
pub fn remember<H: Host>(host: &H, instance_url: &str, enabled: bool) {
    let memo = PersonAccounts {
        instance_url: instance_url.to_string(),
        enabled,
        at_ms: host.now_ms(),
    };
    if let Err(e) = Store::new(host).put(keys::PERSON_ACCOUNTS, &memo) {
        host.log(
            Level::Warn,
            &format!("could not remember whether the org has Person Accounts: {e}"),
        );
    }
}
