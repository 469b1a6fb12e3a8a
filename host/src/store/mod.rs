//! Persistent, encrypted key-value storage for plugins and for the host itself.
//!
//! A [`Store`] hands out [`Namespace`]s; where their bytes live is its
//! backend's business. The default backend is one embedded redb database,
//! `DATA_DIR/store.redb`. Each [`Namespace`] is its own redb table (named
//! `kv/<namespace>`), so isolation between namespaces is structural: no key
//! string, however crafted, can address a row of another namespace's table.
//! A separate `usage` table keeps each namespace's key count and byte total,
//! updated in the same write transaction as the data, so quota accounting
//! can never drift.
//!
//! Values are sealed with XChaCha20-Poly1305 under a 32-byte host key kept in
//! `DATA_DIR/host.key` (mode 0600), by the host, before any backend sees
//! them. Each stored value is `nonce || ciphertext` with a fresh random
//! 24-byte nonce; the associated data binds the value to its namespace and
//! key, so a ciphertext moved elsewhere fails to decrypt. Keys are stored in
//! clear: they are identifiers, not secrets.
//!
//! Writes go through one writer thread that commits whatever batches are
//! waiting in one redb transaction (group commit): each batch is still
//! checked and applied all-or-nothing on its own, but concurrent batches
//! share one commit and one disk flush, and no async worker ever waits for
//! the disk or for the database's single writer ([`Namespace::batch_async`]).
//! Reads are MVCC snapshots and never wait for the writer.
//!
//! What each file answers:
//!
//! * `types`: what a namespace speaks (quotas, writes, usage, errors)?
//! * `namespace`: what does every write go through, whatever the backend?
//! * `seal`: how are values encrypted and bound to their place?
//! * `keyfile`: where is the host key, and is it safe?
//! * `backend`: what must a place to keep namespaces provide?
//! * `embedded`, `layout`, `writer`: the redb backend: opening it, its
//!   tables, and its group-commit writer thread.
//! * `redis`: the shared backend for replicas: Redis, one node or a
//!   Redis Cluster (`serve --store redis://…`).
//! * `fleet`: what one host tells the others sharing its store, sealed.

mod backend;
mod embedded;
mod fleet;
mod keyfile;
mod layout;
mod namespace;
mod redis;
mod seal;
mod types;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use backend::Backend;
use embedded::RedbBackend;
use namespace::Shared;
use redis::RedisBackend;
use seal::Sealer;

pub use embedded::DB_FILE;
pub use fleet::{Heard, Listener, RESYNC};
pub use keyfile::KEY_FILE;
pub use namespace::{MAX_KEY_BYTES, MAX_VALUE_BYTES, Namespace};
pub use redis::RedisTarget;
pub use types::{KvError, Precondition, Quota, StoreError, Usage, Write};

/// The host's persistent store. Cheap to clone; all clones share one backend
/// (for the default one, one database).
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    /// What every namespace name and fleet topic of this store starts
    /// with: empty for the host's own PBX, `t/NAME/` for tenant NAME.
    scope: Arc<str>,
}

impl fmt::Debug for Store {
    // Never prints the sealer (it holds the host key).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) `DATA_DIR/store.redb` and the host key
    /// `DATA_DIR/host.key`.
    ///
    /// The data directory is created with mode 0700 if missing. The key file
    /// (32 random bytes) is created at first start with mode 0600 from the
    /// start, so it is never world-readable, even briefly. An existing key
    /// file accessible by group or others, or of the wrong length, is
    /// refused, as is a missing or different key when the database already
    /// holds values sealed with another one.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let (backend, sealer) = RedbBackend::open(data_dir)?;
        Ok(Store::with_backend(backend, sealer))
    }

    /// Opens the shared store on Redis (one node or a Redis Cluster), with
    /// the host key `DATA_DIR/host.key`: every replica on the same Redis
    /// needs a copy of the same key file. The first host on an empty Redis
    /// creates the key (if its data directory has none) and leaves a key
    /// check there; a host with another key is refused.
    pub fn open_redis(target: &RedisTarget, data_dir: &Path) -> Result<Store, StoreError> {
        let (backend, sealer) = RedisBackend::open(target, data_dir)?;
        Ok(Store::with_backend(backend, sealer))
    }

    /// A store keeping its namespaces in `backend`, sealing values with
    /// `sealer` (the key the backend's data was written with).
    fn with_backend(backend: impl Backend, sealer: Sealer) -> Store {
        Store {
            shared: Arc::new(Shared::new(Box::new(backend), sealer)),
            scope: "".into(),
        }
    }

    /// A namespace: plugins use `plugin/<id>`; the host uses names such as
    /// `host/extensions`. Any string is a valid, distinct namespace name.
    /// In a tenant's store ([`Store::tenant`]) it is the tenant's own: its
    /// full name starts with the tenant's scope, which also binds every
    /// sealed value to the tenant.
    pub fn namespace(&self, name: &str, quota: Quota) -> Namespace {
        let full = format!("{}{name}", self.scope);
        Namespace::new(Arc::clone(&self.shared), &full, quota)
    }

    /// The store of tenant `name`, one PBX among several the host serves,
    /// on the same backend: its namespaces and fleet topics are apart from
    /// every other tenant's and from the host's own (`t/NAME/…`). The
    /// caller checks the name (see the host's `tenants`); a name holding
    /// `/` could reach into another tenant's scope.
    pub fn tenant(&self, name: &str) -> Store {
        Store {
            shared: Arc::clone(&self.shared),
            scope: format!("t/{name}/").into(),
        }
    }

    /// The host's own store on the same backend, whatever tenant this one
    /// is: for what the host keeps once for all its PBXs (plugin files,
    /// the tenants themselves).
    pub fn root(&self) -> Store {
        Store {
            shared: Arc::clone(&self.shared),
            scope: "".into(),
        }
    }

    /// What this store's namespace names start with (empty for the host's own).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// How many namespaces this tenant's store has, and their keys and
    /// bytes together.
    pub fn tenant_usage(&self) -> Result<(usize, Usage), KvError> {
        let usages = self.tenant_usages(&self.scope)?;
        Ok(usages.into_values().next().unwrap_or_default())
    }

    /// [`Store::tenant_usage`] of every tenant whose scope starts with
    /// `prefix` (`t/` for all), by tenant name, listing the namespaces once.
    pub fn tenant_usages(
        &self,
        prefix: &str,
    ) -> Result<std::collections::BTreeMap<String, (usize, Usage)>, KvError> {
        let backend = self.shared.backend();
        let mut out = std::collections::BTreeMap::<String, (usize, Usage)>::new();
        for name in backend.namespaces(prefix)? {
            let Some(tenant) = name
                .strip_prefix("t/")
                .and_then(|rest| rest.split_once('/'))
                .map(|(tenant, _)| tenant.to_string())
            else {
                continue;
            };
            let usage = backend.usage(&name)?;
            let entry = out.entry(tenant).or_default();
            entry.0 += 1;
            entry.1.keys += usage.keys;
            entry.1.bytes += usage.bytes;
        }
        Ok(out)
    }

    /// Deletes every namespace of this tenant's store, each atomically;
    /// what each held before. Refused on the host's own store, whose scope
    /// holds every tenant's.
    pub fn remove_tenant_data(&self) -> Result<Vec<(String, Usage)>, KvError> {
        if self.scope.is_empty() {
            return Err(KvError::Unavailable(
                "only a tenant's store can be removed whole".into(),
            ));
        }
        let backend = self.shared.backend();
        let mut removed = Vec::new();
        for name in backend.namespaces(&self.scope)? {
            let usage = backend.usage(&name)?;
            backend.clear(&name)?;
            let short = name.strip_prefix(&*self.scope).unwrap_or(&name).to_string();
            removed.push((short, usage));
        }
        Ok(removed)
    }

    /// Test hook: the next batch (in any namespace) fails after `n` of its
    /// writes were applied inside the transaction, which is then aborted.
    #[doc(hidden)]
    pub fn fail_next_batch_after(&self, n: usize) {
        self.shared.arm_failure(n);
    }
}
