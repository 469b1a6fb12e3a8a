//! The plugin's view of the kv-store: the SDK's typed store and batches,
//! with the plugin's keys and what replaces each when it is damaged.

use serde::de::DeserializeOwned;

use crate::error::PluginError;

pub use pbx_crm_sdk::store::{Batch, Mark, encode};

/// The keys the plugin uses; one place so no two features collide.
pub mod keys {
    /// The administrator's settings (`settings::Settings`).
    pub const SETTINGS: &str = "settings";
    /// The connection's state and account (`auth::ConnectionRecord`).
    pub const CONNECTION: &str = "connection";
    /// The OAuth tokens (`auth::Tokens`); absent when not connected.
    pub const TOKENS: &str = "auth/tokens";
    /// The lease of the one instance refreshing the session (`salesforce::Lease`).
    pub const REFRESH_LEASE: &str = "auth/refresh-lease";
    /// Prefix of pending authorization attempts (`oauth::Attempt`), keyed by `state`.
    pub const ATTEMPT_PREFIX: &str = "auth/attempt/";
    /// Prefix of pending agent sign-ins (`oauth::Attempt`), keyed by
    /// `state`; apart from the administrator's attempts so neither can
    /// complete the other.
    pub const SIGN_IN_PREFIX: &str = "sign-in/pending/";
    /// The back-off after rate limits and server errors (`salesforce::Backoff`).
    pub const BACKOFF: &str = "api/backoff";
    /// The org's API use as Salesforce last reported it (`salesforce::ApiUsage`).
    pub const API_USAGE: &str = "api/usage";

    /// Which user sync is the current user list (`users::UsersIndex`).
    pub const USERS_INDEX: &str = "users/index";
    /// How the last user sync ended (`users::LastSync`).
    pub const USERS_LAST_SYNC: &str = "users/last-sync";
    /// Prefix of every user sync's chunks and id map
    /// (`users/sync/<sync>/<page>`, `users/sync/<sync>/ids`).
    pub const USERS_SYNC_PREFIX: &str = "users/sync/";
    /// The saved associations (`associations::AssociationSet`).
    pub const ASSOCIATIONS: &str = "associations";
    /// Whether the connected org has Person Accounts
    /// (`salesforce::person_accounts::PersonAccounts`).
    pub const PERSON_ACCOUNTS: &str = "org/person-accounts";

    /// Where plugin 0.1.0 kept a counter of waiting call logs. No longer
    /// written (the outbox is counted); kept so tests can check it stays
    /// unused.
    pub const CALLS_PENDING: &str = "calls/pending";
    /// Prefix of the call journal's outbox (`calls::journal::OutboxItem`), one per call id.
    pub const CALLS_OUTBOX_PREFIX: &str = "calls/outbox/";
    /// Prefix of the 64 buckets of logged (or skipped) call ids (`calls::ledger::Ledger`).
    pub const CALLS_DONE_PREFIX: &str = "calls/done/";
    /// Prefix of the 64 buckets of pop-ups shown, by call id and phase (`calls::ledger::Ledger`).
    pub const CALLS_POPPED_PREFIX: &str = "calls/popped/";
    /// Prefix of cached lookups by E.164 (`calls::lookup::CachedLookup`).
    pub const CALLS_LOOKUP_PREFIX: &str = "calls/lookup/";
    /// Prefix of records created for unknown callers, by E.164 (`calls::unknown::Remembered`).
    pub const CALLS_CREATED_PREFIX: &str = "calls/created/";
    /// Prefix of leases on creating a record for a number (`calls::ItemLease`).
    pub const CALLS_CREATING_PREFIX: &str = "calls/creating/";
    /// Prefix of after-call work waiting for its call to end (`calls::work::Work`).
    pub const CALLS_WORK_PREFIX: &str = "calls/work/";
    /// Prefix of the records offered to an agent, by call id (`calls::choice::Offered`).
    pub const CALLS_OFFERED_PREFIX: &str = "calls/offered/";
    /// Prefix of the record an agent chose for a number, by E.164 (`calls::choice::Chosen`).
    pub const CALLS_CHOICE_PREFIX: &str = "calls/choice/";
    /// When the call keys were last pruned (ms since the Unix epoch).
    pub const CALLS_PRUNED_AT: &str = "calls/pruned-at";

    /// The key of the pending agent sign-in with `state`.
    pub fn sign_in(state: &str) -> String {
        format!("{SIGN_IN_PREFIX}{state}")
    }

    /// The key of the authorization attempt with `state`.
    pub fn attempt(state: &str) -> String {
        format!("{ATTEMPT_PREFIX}{state}")
    }
}

/// What replaces the plugin's damaged values, by key.
pub struct Keys;

impl pbx_crm_sdk::store::Repair for Keys {
    fn repair(key: &str) -> &'static str {
        repair(key)
    }
}

/// The SDK's store over the plugin's keys.
pub type Store<'h, H> = pbx_crm_sdk::store::Store<'h, H, Keys>;

/// A stored value (JSON) under `key`; a value that does not parse is
/// reported as corrupt, naming the key and what replaces it.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, PluginError> {
    pbx_crm_sdk::store::decode::<Keys, T>(key, bytes)
}

/// The error for a stored value under `key` that cannot be read back, with
/// what replaces it.
pub fn unreadable(key: &str, reason: impl std::fmt::Display) -> PluginError {
    pbx_crm_sdk::store::unreadable::<Keys>(key, reason)
}

/// What replaces an unreadable stored value, by its key.
fn repair(key: &str) -> &'static str {
    if key.starts_with("users/") {
        "sync the users again to replace it"
    } else if key.starts_with(keys::SIGN_IN_PREFIX) {
        "start the sign-in again to replace it"
    } else if key == keys::ASSOCIATIONS {
        "save the associations again to replace it"
    } else {
        "save the settings again to replace it"
    }
}
