//! `pbx:crm/kv-store`: the plugin's namespace in the host's encrypted store.

use super::PluginState;
use super::pbx::crm::kv_store::{Error, Host, Precondition, Write};
use crate::store::{self, KvError};

/// Most keys one `get-many` reads: the reads run inline on the caller's
/// thread, where the call's deadline cannot interrupt them, so their number
/// is bounded (documented in `wit/v0.2.0/kv-store.wit`).
pub const MAX_GET_MANY: usize = 1024;

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::QuotaExceeded(why) => Error::QuotaExceeded(why),
            KvError::InvalidKey(why) => Error::InvalidKey(why),
            KvError::Conflict(key) => Error::Conflict(key),
            KvError::Unavailable(why) => Error::Unavailable(why),
        }
    }
}

impl Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        // Reads are snapshots that never wait for the writer: done in place.
        Ok(self.grants.kv.get(&key)?)
    }

    async fn get_many(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, Error> {
        if keys.len() > MAX_GET_MANY {
            return Err(Error::InvalidKey(format!(
                "get-many takes at most {MAX_GET_MANY} keys, not {}; split the list",
                keys.len()
            )));
        }
        // The same read as `get`, per key: same validation, same errors.
        keys.iter()
            .map(|key| Ok(self.grants.kv.get(key)?))
            .collect()
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        // Writes wait for the store's group commit without holding a worker.
        Ok(self.grants.kv.set_async(key, value).await?)
    }

    async fn delete(&mut self, key: String) -> Result<(), Error> {
        Ok(self.grants.kv.delete_async(key).await?)
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, Error> {
        Ok(self.grants.kv.list_keys(&prefix)?)
    }

    async fn batch(
        &mut self,
        preconditions: Vec<Precondition>,
        writes: Vec<Write>,
    ) -> Result<(), Error> {
        let preconditions: Vec<store::Precondition> = preconditions
            .into_iter()
            .map(|p| store::Precondition {
                key: p.key,
                expected: p.expected,
            })
            .collect();
        let writes: Vec<store::Write> = writes
            .into_iter()
            .map(|w| match w {
                Write::Set(entry) => store::Write::Set {
                    key: entry.key,
                    value: entry.value,
                },
                Write::Delete(key) => store::Write::Delete { key },
            })
            .collect();
        Ok(self.grants.kv.batch_async(preconditions, writes).await?)
    }
}
