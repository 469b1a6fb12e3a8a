//! A typed store over the host's kv-store: JSON values under fixed keys, and
//! batches that commit atomically after their preconditions hold. `Batch` is
//! the one way the plugin builds such a batch, of JSON values or of bytes
//! encoded beforehand (the user sync's chunks).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::pbx::crm::kv_store::{Entry, Precondition, Write};
use crate::error::PluginError;
use crate::host::Host;

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

/// Typed access to the plugin's kv-store.
pub struct Store<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Store<'h, H> {
    /// A store over `host`'s kv-store.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    /// The value under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        match self.host.kv_get(key)? {
            None => Ok(None),
            Some(bytes) => decode(key, &bytes).map(Some),
        }
    }

    /// The raw bytes under each of `keys`, in their order, in one host call.
    pub fn get_many_raw(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, PluginError> {
        Ok(self.host.kv_get_many(keys)?)
    }

    /// The raw bytes under `key`, for compare-and-swap preconditions that
    /// must match the stored value byte for byte.
    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(self.host.kv_get(key)?)
    }

    /// The value under `key` together with its raw bytes (see `get_raw`).
    pub fn get_with_raw<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Vec<u8>)>, PluginError> {
        match self.host.kv_get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(|value| Some((value, bytes)))
                .map_err(|e| unreadable(key, e)),
        }
    }

    /// Store `value` under `key`.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), PluginError> {
        self.host.kv_set(key, &encode(value)?)?;
        Ok(())
    }

    /// Delete `key`.
    pub fn delete(&self, key: &str) -> Result<(), PluginError> {
        self.host.kv_delete(key)?;
        Ok(())
    }

    /// Keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        Ok(self.host.kv_list(prefix)?)
    }

    /// Commit `batch`: every write or none. Borrowed, so a batch that lost a
    /// race can be amended (see `Batch::rewind`) and committed again.
    pub fn commit(&self, batch: &Batch) -> Result<(), PluginError> {
        self.host.kv_batch(&batch.preconditions, &batch.writes)?;
        Ok(())
    }
}

/// Writes that commit together, guarded by preconditions.
#[derive(Default)]
pub struct Batch {
    preconditions: Vec<Precondition>,
    writes: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` to `value`.
    pub fn set<T: Serialize>(self, key: &str, value: &T) -> Result<Self, PluginError> {
        Ok(self.set_raw(key, encode(value)?))
    }

    /// Set `key` to `value`, already encoded (a user chunk is written as its
    /// users are read, not encoded a second time here).
    pub fn set_raw(mut self, key: &str, value: Vec<u8>) -> Self {
        self.writes.push(Write::Set(Entry {
            key: key.to_string(),
            value,
        }));
        self
    }

    /// Delete `key`.
    pub fn delete(mut self, key: &str) -> Self {
        self.writes.push(Write::Delete(key.to_string()));
        self
    }

    /// Commit only if `key` still holds `expected` (`None`: is absent).
    pub fn expect<T: Serialize>(
        mut self,
        key: &str,
        expected: Option<&T>,
    ) -> Result<Self, PluginError> {
        let expected = expected.map(encode).transpose()?;
        self.preconditions.push(Precondition {
            key: key.to_string(),
            expected,
        });
        Ok(self)
    }

    /// Commit only if `key` still holds exactly the bytes `expected`
    /// (`None`: is absent). Use it with bytes read by `Store::get_raw`, so a
    /// value that re-encodes differently cannot make a precondition fail.
    pub fn expect_raw(mut self, key: &str, expected: Option<Vec<u8>>) -> Self {
        self.preconditions.push(Precondition {
            key: key.to_string(),
            expected,
        });
        self
    }

    /// How far the batch is built, to come back to with `rewind`.
    pub fn mark(&self) -> Mark {
        Mark {
            preconditions: self.preconditions.len(),
            writes: self.writes.len(),
        }
    }

    /// Drop what was added after `mark`: a batch that lost a race re-reads
    /// and adds its guarded part again, keeping the (large) rest as built.
    pub fn rewind(mut self, mark: Mark) -> Self {
        self.preconditions.truncate(mark.preconditions);
        self.writes.truncate(mark.writes);
        self
    }
}

/// A point in building a `Batch` (see `Batch::mark`).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    preconditions: usize,
    writes: usize,
}

/// A stored value (JSON) under `key`; a value that does not parse is
/// reported as corrupt, naming the key.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(bytes).map_err(|e| unreadable(key, e))
}

/// The error for a stored value under `key` that cannot be read back, with
/// what replaces it.
pub fn unreadable(key: &str, reason: impl std::fmt::Display) -> PluginError {
    PluginError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
        fix: repair(key),
    }
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

/// The JSON encoding the store uses, for building raw preconditions.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(value).map_err(|e| PluginError::Store(format!("cannot encode a value: {e}")))
}
