//! Where namespaces live, as a trait: a [`Store`](super::Store) hands out
//! namespaces, and a [`Backend`] keeps their sealed bytes. The embedded
//! redb file is the default backend; another one (Redis next) implements
//! the same trait in its own module. This file is the whole contract:
//! the trait, the sealed batch it is handed, and where its outcome goes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, mpsc};

use super::types::{KvError, Precondition, Quota, Usage};

/// Where namespaces live: the embedded redb file (default), Redis next.
///
/// A backend sees only sealed values: validation, sealing and opening
/// happen in the host before and after it (see [`Namespace`](super::Namespace)).
/// Its only use of the key is opening stored values to check a batch's
/// preconditions, with the sealer it was opened with.
pub(super) trait Backend: Send + Sync + 'static {
    /// The sealed bytes stored under `key` in `namespace`.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;

    /// The keys of `namespace` starting with `prefix`, in byte order.
    fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError>;

    /// Keys and bytes (key bytes plus plaintext value bytes) in use.
    fn usage(&self, namespace: &str) -> Result<Usage, KvError>;

    /// Deletes the whole namespace, its usage record included, atomically.
    fn clear(&self, namespace: &str) -> Result<(), KvError>;

    /// The names of the namespaces starting with `prefix` that hold or held
    /// data (a tenant's, to remove it), in byte order.
    fn namespaces(&self, prefix: &str) -> Result<Vec<String>, KvError>;

    /// [`Backend::get`] of several keys, for async callers. The default
    /// answers in place, as a local read never waits; a backend across a
    /// network answers without holding the caller's thread.
    fn get_many_async(&self, namespace: &str, keys: Vec<String>) -> Answer<Vec<Option<Vec<u8>>>> {
        let answer = keys.iter().map(|key| self.get(namespace, key)).collect();
        Box::pin(std::future::ready(answer))
    }

    /// [`Backend::list_keys`] for async callers (see
    /// [`Backend::get_many_async`]).
    fn list_keys_async(&self, namespace: &str, prefix: String) -> Answer<Vec<String>> {
        Box::pin(std::future::ready(self.list_keys(namespace, &prefix)))
    }

    /// Applies one checked, sealed batch all-or-nothing (preconditions on
    /// the plaintext, then the quota, then the writes) and sends the outcome
    /// to `reply`. A reply dropped unanswered reads as "the store's writer
    /// stopped".
    fn submit(&self, batch: SealedBatch, reply: Reply);

    /// Whether other hosts may share this backend (see `fleet`).
    fn is_shared(&self) -> bool {
        false
    }

    /// Carries a sealed fleet message to every host sharing the backend,
    /// best effort, without waiting (see `fleet`).
    fn publish(&self, _topic: &str, _message: Vec<u8>) {}

    /// The fleet messages every host sharing the backend publishes in
    /// store scope `scope`, its own included, and the resyncs; `None` when
    /// no other host can share it.
    fn messages(
        &self,
        _scope: &str,
    ) -> Option<tokio::sync::broadcast::Receiver<super::fleet::Carried>> {
        None
    }
}

/// What an async read answers, later.
pub(super) type Answer<T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'static>>;

/// One batch on its way to the backend: keys validated, values sealed.
pub(super) struct SealedBatch {
    pub(super) namespace: Arc<str>,
    pub(super) quota: Quota,
    /// Checked against the plaintext of the stored values.
    pub(super) preconditions: Vec<Precondition>,
    pub(super) writes: Vec<SealedWrite>,
    /// Test hook: refuse this batch as if it failed after that many writes.
    pub(super) fail_after: Option<usize>,
}

impl SealedBatch {
    /// The refusal of a batch armed with the test hook, once the backend
    /// has decided everything else and written nothing yet.
    pub(super) fn injected_failure(&self) -> Option<KvError> {
        self.fail_after.map(|n| {
            KvError::Unavailable(format!(
                "injected failure after {} writes",
                n.min(self.writes.len())
            ))
        })
    }
}

/// One write of a [`SealedBatch`].
pub(super) enum SealedWrite {
    Set {
        key: String,
        sealed: Vec<u8>,
        /// The plaintext's length, which the quota counts.
        plain_len: usize,
    },
    Delete {
        key: String,
    },
}

impl SealedWrite {
    pub(super) fn key(&self) -> &str {
        match self {
            SealedWrite::Set { key, .. } | SealedWrite::Delete { key } => key,
        }
    }
}

/// Where a batch's outcome goes: a blocked thread or an awaiting task.
pub(super) enum Reply {
    Blocking(mpsc::SyncSender<Result<(), KvError>>),
    Async(tokio::sync::oneshot::Sender<Result<(), KvError>>),
}

impl Reply {
    pub(super) fn send(self, result: Result<(), KvError>) {
        // The caller may have gone (a cancelled call); the outcome stands.
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}
