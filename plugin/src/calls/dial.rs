//! Click-to-call: the PBX asks before dialing from an extension. The
//! extension must be associated with a Salesforce user and the number must
//! normalize; the answer is the number in E.164.

use super::{Calls, cut};
use crate::associations::associations;
use crate::error::PluginError;
use crate::host::Host;
use crate::phone;

impl<H: Host> Calls<'_, H> {
    /// Check a click-to-call request; the number to dial in E.164.
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
            let shown = cut(extension, 32);
            return Err(if self.host.extension(extension).is_none() {
                PluginError::InvalidInput(format!(
                    "extension {shown:?} does not exist on the PBX; dial from an extension associated with a Salesforce user"
                ))
            } else {
                PluginError::NotConfigured(format!(
                    "associate extension {shown} with a Salesforce user first (PBX portal, Salesforce users), then dial again"
                ))
            });
        }
        phone::normalize(number, region)
            .map(|n| n.e164)
            .map_err(|bad| PluginError::InvalidInput(bad.describe(number)))
    }
}
