//! A plugin's errors, and their mapping onto the WIT `error` record.

use crate::bindings::pbx::crm::kv_store;
use crate::bindings::{ErrorKind, WitError};

/// A failure of one export call. Every message names the fix and never
/// contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The administrator's input is wrong.
    #[error("{0}")]
    InvalidInput(String),
    /// Required settings are missing.
    #[error("{0}")]
    NotConfigured(String),
    /// Not connected to the CRM.
    #[error("{0}")]
    NotConnected(String),
    /// The authorization attempt failed; nothing was stored.
    #[error("{0}")]
    AuthorizationFailed(String),
    /// The CRM could not be reached or failed.
    #[error("{0}")]
    CrmUnavailable(String),
    /// The CRM's request limits.
    #[error("{0}")]
    RateLimited(String),
    /// A concurrent change won.
    #[error("{0}")]
    Conflict(String),
    /// Not found.
    #[error("{0}")]
    NotFound(String),
    /// The host's store failed.
    #[error("the PBX's plugin store failed: {0}")]
    Store(String),
    /// A stored value could not be read back.
    #[error("stored value {key:?} is unreadable ({reason}); {fix}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it did not parse.
        reason: String,
        /// What replaces it, by the key (the plugin knows its keys).
        fix: &'static str,
    },
    /// A feature this plugin version does not have yet.
    #[error("{0} is not available in this version of the plugin; install a newer version")]
    Unsupported(&'static str),
}

impl From<kv_store::Error> for PluginError {
    fn from(e: kv_store::Error) -> Self {
        match e {
            kv_store::Error::Conflict(key) => PluginError::Conflict(format!(
                "{key} was changed by someone else meanwhile; reload and try again"
            )),
            kv_store::Error::QuotaExceeded(why) => PluginError::Store(format!(
                "quota exceeded ({why}); ask the PBX operator to raise the plugin's quota"
            )),
            kv_store::Error::InvalidKey(why) => PluginError::Store(format!("invalid key: {why}")),
            kv_store::Error::Unavailable(why) => PluginError::Store(why),
        }
    }
}

impl From<PluginError> for WitError {
    fn from(e: PluginError) -> Self {
        let kind = match &e {
            PluginError::InvalidInput(_) => ErrorKind::InvalidInput,
            PluginError::NotConfigured(_) => ErrorKind::NotConfigured,
            PluginError::NotConnected(_) => ErrorKind::NotConnected,
            PluginError::AuthorizationFailed(_) => ErrorKind::AuthorizationFailed,
            PluginError::CrmUnavailable(_) => ErrorKind::CrmUnavailable,
            PluginError::RateLimited(_) => ErrorKind::RateLimited,
            PluginError::Conflict(_) => ErrorKind::Conflict,
            PluginError::NotFound(_) => ErrorKind::NotFound,
            PluginError::Store(_) | PluginError::Corrupt { .. } | PluginError::Unsupported(_) => {
                ErrorKind::Internal
            }
        };
        WitError {
            kind,
            message: e.to_string(),
        }
    }
}
