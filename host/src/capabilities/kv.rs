//! `kv-store`: the plugin's namespace in the host's encrypted store.

use super::Capabilities;
use crate::store::{KvError, Precondition, Write};

/// Most keys one `get-many` reads: the reads run inline on the caller's
/// thread, where the call's deadline cannot interrupt them, so their number
/// is bounded (documented in `wit/v0.2.0/kv-store.wit`).
pub const MAX_GET_MANY: usize = 1024;

impl Capabilities {
    /// The value of `key`.
    pub async fn kv_get(&self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        // redb reads are snapshots that never wait for the writer and are
        // answered in place; Redis answers without holding this thread.
        let mut values = self.grants.kv.get_many_async(vec![key]).await?;
        Ok(values.pop().flatten())
    }

    /// The values of `keys`, each read as [`Capabilities::kv_get`] reads it.
    pub async fn kv_get_many(&self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.len() > MAX_GET_MANY {
            return Err(KvError::InvalidKey(format!(
                "get-many takes at most {MAX_GET_MANY} keys, not {}; split the list",
                keys.len()
            )));
        }
        self.grants.kv.get_many_async(keys).await
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
    pub async fn kv_list_keys(&self, prefix: String) -> Result<Vec<String>, KvError> {
        self.grants.kv.list_keys_async(prefix).await
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
