//! `kv-store`: the plugin's namespace in the host's encrypted store.

use super::Capabilities;
use crate::store::{KvError, Precondition, Write};

/// Most keys one `get-many` reads: the reads run inline on the caller's
/// thread, where the call's deadline cannot interrupt them, so their number
/// is bounded (documented in `wit/v0.2.0/kv-store.wit`).
pub const MAX_GET_MANY: usize = 1024;

impl Capabilities {
    /// The value of `key`.
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        // Reads are snapshots that never wait for the writer: done in place.
        self.grants.kv.get(key)
    }

    /// The values of `keys`, each read as [`Capabilities::kv_get`] reads it.
    pub fn kv_get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.len() > MAX_GET_MANY {
            return Err(KvError::InvalidKey(format!(
                "get-many takes at most {MAX_GET_MANY} keys, not {}; split the list",
                keys.len()
            )));
        }
        keys.iter().map(|key| self.grants.kv.get(key)).collect()
    }

    /// Set `key`.
    pub async fn kv_set(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        // Writes wait for the store's group commit without holding a worker.
        self.grants.kv.set_async(key, value).await
    }

    /// Delete `key`.
    pub async fn kv_delete(&self, key: String) -> Result<(), KvError> {
        self.grants.kv.delete_async(key).await
    }

    /// The keys starting with `prefix`.
    pub fn kv_list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.grants.kv.list_keys(prefix)
    }

    /// Check `preconditions`, then apply `writes`, all or nothing.
    pub async fn kv_batch(
        &self,
        preconditions: Vec<Precondition>,
        writes: Vec<Write>,
    ) -> Result<(), KvError> {
        self.grants.kv.batch_async(preconditions, writes).await
    }
}
