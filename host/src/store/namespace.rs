//! The [`Namespace`] handle: one isolated key space with its own quota.
//! Whatever every backend needs done the same way happens here: keys and
//! values are validated and sealed on the caller's thread, batches go to
//! the backend, and callers block or await the reply.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use super::backend::{Backend, Reply, SealedBatch, SealedWrite};
use super::seal::{Sealer, aad};
use super::types::{KvError, Precondition, Quota, Usage, Write};

/// Largest accepted key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest accepted value, in bytes. Bounded so one write cannot pin
/// arbitrary amounts of memory in the host while it is sealed and committed.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Sentinel for "no failure injection armed".
const NO_INJECTED_FAILURE: usize = usize::MAX;

/// What all namespaces of one [`Store`](super::Store) share. The backend is
/// dropped (for redb: its database closed) with the last handle.
pub(super) struct Shared {
    backend: Box<dyn Backend>,
    sealer: Sealer,
    /// Test hook: number of writes after which the next batch fails, or
    /// [`NO_INJECTED_FAILURE`].
    fail_batch_after: AtomicUsize,
    /// This store's id among the hosts sharing the backend, random, so a
    /// host never hears its own fleet messages.
    origin: u64,
}

impl Shared {
    pub(super) fn new(backend: Box<dyn Backend>, sealer: Sealer) -> Shared {
        Shared {
            backend,
            sealer,
            fail_batch_after: AtomicUsize::new(NO_INJECTED_FAILURE),
            origin: rand::random(),
        }
    }

    pub(super) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub(super) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub(super) fn origin(&self) -> u64 {
        self.origin
    }

    pub(super) fn arm_failure(&self, after_writes: usize) {
        self.fail_batch_after.store(after_writes, Ordering::SeqCst);
    }

    /// One-shot: whichever batch runs next consumes the armed failure.
    fn take_armed_failure(&self) -> Option<usize> {
        let armed = self
            .fail_batch_after
            .swap(NO_INJECTED_FAILURE, Ordering::SeqCst);
        (armed != NO_INJECTED_FAILURE).then_some(armed)
    }
}

/// One isolated key space in the [`Store`](super::Store), with its own quota.
#[derive(Clone)]
pub struct Namespace {
    shared: Arc<Shared>,
    name: Arc<str>,
    quota: Quota,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    pub(super) fn new(shared: Arc<Shared>, name: &str, quota: Quota) -> Namespace {
        Namespace {
            shared,
            name: name.into(),
            quota,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Whether other hosts may share it (see `Store::is_shared`): what one
    /// host caches of it may change under it.
    pub fn is_shared(&self) -> bool {
        self.shared.backend().is_shared()
    }

    /// The value of `key`, or `None` if absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        validate_key(key)?;
        let Some(sealed) = self.backend().get(&self.name, key)? else {
            return Ok(None);
        };
        match self.shared.sealer.open_value(&self.name, key, &sealed) {
            Ok(plaintext) => Ok(Some(plaintext)),
            Err(e) => {
                tracing::error!(namespace = %self.name, key, "stored value failed authentication");
                Err(e)
            }
        }
    }

    /// [`Namespace::get`] of several keys without holding the caller's
    /// thread while a backend across a network answers (one round trip
    /// for all of them on Redis).
    pub async fn get_many_async(&self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        for key in &keys {
            validate_key(key)?;
        }
        let sealed = self
            .backend()
            .get_many_async(&self.name, keys.clone())
            .await?;
        keys.iter()
            .zip(sealed)
            .map(|(key, sealed)| match sealed {
                None => Ok(None),
                Some(sealed) => match self.shared.sealer.open_value(&self.name, key, &sealed) {
                    Ok(plaintext) => Ok(Some(plaintext)),
                    Err(e) => {
                        tracing::error!(namespace = %self.name, key, "stored value failed authentication");
                        Err(e)
                    }
                },
            })
            .collect()
    }

    /// [`Namespace::list_keys`] without holding the caller's thread.
    pub async fn list_keys_async(&self, prefix: String) -> Result<Vec<String>, KvError> {
        self.backend().list_keys_async(&self.name, prefix).await
    }

    /// Sets `key` to `value`. Beyond the quota this fails with
    /// [`KvError::QuotaExceeded`] and the old value stays.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let write = Write::Set {
            key: key.to_owned(),
            value: value.to_vec(),
        };
        self.commit_blocking(self.seal_batch(Vec::new(), &[write], None)?)
    }

    /// Removes `key`; an absent key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        let write = Write::Delete {
            key: key.to_owned(),
        };
        self.commit_blocking(self.seal_batch(Vec::new(), &[write], None)?)
    }

    /// The keys starting with `prefix`, in byte order.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.backend().list_keys(&self.name, prefix)
    }

    /// Applies `writes` all-or-nothing in one write transaction.
    ///
    /// First every precondition is checked (the key holds exactly `expected`,
    /// or is absent when `None`): a failing one gives
    /// [`KvError::Conflict`] naming its key. Then the writes are applied in
    /// order, then the quota is checked ([`KvError::QuotaExceeded`]). On any
    /// error nothing is written.
    pub fn batch(&self, preconditions: &[Precondition], writes: &[Write]) -> Result<(), KvError> {
        let fail_after = self.shared.take_armed_failure();
        self.commit_blocking(self.seal_batch(preconditions.to_vec(), writes, fail_after)?)
    }

    /// [`Namespace::batch`] for async callers: the task waits for the
    /// group commit without holding a thread.
    pub async fn batch_async(
        &self,
        preconditions: Vec<Precondition>,
        writes: Vec<Write>,
    ) -> Result<(), KvError> {
        let fail_after = self.shared.take_armed_failure();
        self.commit_async(self.seal_batch(preconditions, &writes, fail_after)?)
            .await
    }

    /// [`Namespace::set`] for async callers.
    pub async fn set_async(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.commit_async(self.seal_batch(Vec::new(), &[Write::Set { key, value }], None)?)
            .await
    }

    /// [`Namespace::delete`] for async callers.
    pub async fn delete_async(&self, key: String) -> Result<(), KvError> {
        self.commit_async(self.seal_batch(Vec::new(), &[Write::Delete { key }], None)?)
            .await
    }

    /// Keys and bytes (key bytes plus plaintext value bytes) in use.
    pub fn usage(&self) -> Result<Usage, KvError> {
        self.backend().usage(&self.name)
    }

    /// Deletes the whole namespace atomically.
    pub fn clear(&self) -> Result<(), KvError> {
        self.backend().clear(&self.name)
    }

    fn backend(&self) -> &dyn Backend {
        &*self.shared.backend
    }

    /// Checks and seals a batch for the backend; every write, blocking or
    /// async, goes through here. Bad input is refused before it queues, and
    /// sealing happens on the caller's thread so the backend only stores.
    pub(super) fn seal_batch(
        &self,
        preconditions: Vec<Precondition>,
        writes: &[Write],
        fail_after: Option<usize>,
    ) -> Result<SealedBatch, KvError> {
        for precondition in &preconditions {
            validate_key(&precondition.key)?;
        }
        let mut sealed = Vec::with_capacity(writes.len());
        for write in writes {
            validate_key(write.key())?;
            sealed.push(match write {
                Write::Set { key, value } => {
                    validate_value(value)?;
                    SealedWrite::Set {
                        key: key.clone(),
                        sealed: self.shared.sealer.seal(&aad(&self.name, key), value)?,
                        plain_len: value.len(),
                    }
                }
                Write::Delete { key } => SealedWrite::Delete { key: key.clone() },
            });
        }
        Ok(SealedBatch {
            namespace: self.name.clone(),
            quota: self.quota,
            preconditions,
            writes: sealed,
            fail_after,
        })
    }

    /// Hands a sealed batch to the backend and blocks for its outcome.
    fn commit_blocking(&self, batch: SealedBatch) -> Result<(), KvError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.backend().submit(batch, Reply::Blocking(tx));
        rx.recv().unwrap_or_else(|_| Err(writer_gone()))
    }

    /// [`Namespace::commit_blocking`] for async callers.
    async fn commit_async(&self, batch: SealedBatch) -> Result<(), KvError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.backend().submit(batch, Reply::Async(tx));
        rx.await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

fn writer_gone() -> KvError {
    KvError::Unavailable("the store's writer stopped; restart the host".into())
}

fn validate_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidKey("key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::InvalidKey(format!(
            "key is {} bytes long, the limit is {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

fn validate_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::QuotaExceeded(format!(
            "{MAX_VALUE_BYTES} bytes per value"
        )));
    }
    Ok(())
}
