//! Associations between Salesforce users and PBX extensions, on the SDK's
//! CRM-neutral associations (`pbx_crm_sdk::associations`: the users page,
//! the automatic proposal, the versioned save, the lookups). What is
//! Salesforce's here: where its synced users are (the chunked user list,
//! searched by id through its index, so a call's lookup reads one chunk of
//! 50,000 users, not all), and its ids, typed in 15 or 18 characters and
//! compared in 18.
//!
//! Stored as one record under `associations` ([`AssociationSet`]); its
//! states, per user of the users page, are the SDK's: `associated`,
//! `unassociated`, `stale-extension`, `stale-user`. The lookups answer only
//! for `associated` pairs: a call must not be logged for a deactivated user
//! (Salesforce refuses inactive owners), nor through an extension number
//! the PBX dropped.

#[cfg(test)]
mod tests;

use crate::bindings::exports::pbx::crm::integration::CrmUser;
use crate::error::PluginError;
use crate::host::Host;
use crate::salesforce::ids;
use crate::store::keys;
use crate::users::{UserRecord, Users};

pub use pbx_crm_sdk::associations::{AssociationSet, SavedAssociation, UserSnapshot};

/// Salesforce's synced users, for the SDK's associations.
pub struct SalesforceUsers<'h, H: Host> {
    host: &'h H,
}

impl<H: Host> pbx_crm_sdk::associations::CrmUsers for SalesforceUsers<'_, H> {
    type User = UserRecord;
    const NOUN: &'static str = "Salesforce user";

    /// The active users in Salesforce's order (by name); empty before the
    /// first sync.
    fn active_users(&self) -> Result<(Vec<UserRecord>, Option<u64>), PluginError> {
        Ok(match Users::new(self.host).load()? {
            Some((index, mut users)) => {
                users.retain(|u| u.active);
                (users, Some(index.synced_at_ms))
            }
            None => (Vec::new(), None),
        })
    }

    fn crm_user(&self, user: &UserRecord) -> CrmUser {
        user.to_crm_user()
    }

    /// A 15-character id is the same user as its 18-character form.
    fn normalize_id(&self, raw: &str) -> Result<String, PluginError> {
        ids::normalize(raw, "user id")
    }

    /// One chunk of the user list, found through its id map.
    fn find(&self, id: &str) -> Result<Option<UserRecord>, PluginError> {
        Users::new(self.host).find(id)
    }
}

/// The associations of the Salesforce plugin.
pub type Associations<'h, H> =
    pbx_crm_sdk::associations::Associations<'h, H, SalesforceUsers<'h, H>>;

/// The associations over `host`, under `associations`.
pub fn associations<H: Host>(host: &H) -> Associations<'_, H> {
    Associations::new(host, SalesforceUsers { host }, keys::ASSOCIATIONS)
}
