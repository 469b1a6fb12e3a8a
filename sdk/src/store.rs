//! A typed store over the host's kv-store: JSON values under fixed keys, and
//! batches that commit atomically after their preconditions hold. `Batch` is
//! the one way a plugin builds such a batch, of JSON values or of bytes
//! encoded beforehand (a user sync's chunks). A value that cannot be read
//! back is a [`PluginError::Corrupt`] naming its key and what replaces it,
//! which the plugin says for its keys ([`Repair`]).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::pbx::crm::kv_store::{Entry, Precondition, Write};
use crate::error::PluginError;
use crate::host::Host;

/// What replaces a stored value that cannot be read back, by its key: a
/// plugin knows its keys (a user list is synced again, settings saved
/// again).
pub trait Repair {
    /// The fix to name for the value under `key`, e.g. "sync the users
    /// again to replace it".
    fn repair(key: &str) -> &'static str;
}

/// One fix for every key.
pub struct SaveAgain;

impl Repair for SaveAgain {
    fn repair(_key: &str) -> &'static str {
        "save it again to replace it"
    }
}

/// Typed access to a plugin's kv-store; `R` names the fix for a damaged
/// value.
pub struct Store<'h, H: Host, R: Repair = SaveAgain> {
    host: &'h H,
    repair: PhantomData<R>,
}

impl<'h, H: Host, R: Repair> Store<'h, H, R> {
    /// A store over `host`'s kv-store.
    pub fn new(host: &'h H) -> Self {
        Self {
            host,
            repair: PhantomData,
        }
    }

    /// The value under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        match self.host.kv_get(key)? {
            None => Ok(None),
            Some(bytes) => decode::<R, T>(key, &bytes).map(Some),
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
                .map_err(|e| unreadable::<R>(key, e)),
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
/// reported as corrupt, naming the key and `R`'s fix.
pub fn decode<R: Repair, T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(bytes).map_err(|e| unreadable::<R>(key, e))
}

/// The error for a stored value under `key` that cannot be read back, with
/// what replaces it.
pub fn unreadable<R: Repair>(key: &str, reason: impl std::fmt::Display) -> PluginError {
    PluginError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
        fix: R::repair(key),
    }
}

/// The JSON encoding the store uses, for building raw preconditions.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(value).map_err(|e| PluginError::Store(format!("cannot encode a value: {e}")))
}
