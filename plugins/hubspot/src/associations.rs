//! Owners paired with extensions: the SDK's CRM-neutral associations over
//! the synced HubSpot owners.

use crate::bindings::exports::pbx::crm::integration::CrmUser;
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::users::{Owner, Users};
use pbx_crm_sdk::associations::{self, CrmUsers};

/// The synced owners as the SDK's associations see them.
pub struct Owners<'h, H: Host> {
    host: &'h H,
}

impl<H: Host> CrmUsers for Owners<'_, H> {
    type User = Owner;
    const NOUN: &'static str = "HubSpot owner";

    fn active_users(&self) -> Result<(Vec<Owner>, Option<u64>), PluginError> {
        Ok(match Users::new(self.host).load()? {
            Some(list) => (list.owners, Some(list.synced_at_ms)),
            None => (Vec::new(), None),
        })
    }

    fn crm_user(&self, user: &Owner) -> CrmUser {
        user.to_crm_user()
    }
}

/// The associations of HubSpot owners, stored under `associations`.
pub type Associations<'h, H> = associations::Associations<'h, H, Owners<'h, H>>;

/// The association feature over `host`.
pub fn associations<H: Host>(host: &H) -> Associations<'_, H> {
    associations::Associations::new(host, Owners { host }, keys::ASSOCIATIONS)
}
