//! The runtime among replicas sharing one store (Redis): what one installs
//! and activates, the others load.
//!
//! * Plugin files go into the store too (`host/plugin-files`, in chunks),
//!   so a replica that never saw the upload loads a version from there,
//!   checking its SHA-256, and keeps a local copy.
//! * Every change to what is installed, active or granted is announced
//!   (fleet topic `plugins`); a replica that hears it, or whose timer
//!   fires (a missed message), follows the registry: it loads what is now
//!   active, with the grants now given, and compiles versions installed
//!   but not active yet, so their activation later is only a swap.
//!
//! Compiled forms stay per replica (`DATA_DIR/cache`): they are the
//! machine's code.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::cache::grants_key;
use super::versions::InstallError;
use super::{Runtime, registry};
use crate::store::{Namespace, Precondition, Quota, Write};

/// The fleet topic of changes to plugins.
pub const PLUGINS_TOPIC: &str = "plugins";

/// The store namespace holding plugin files on a shared store.
const FILES_NAMESPACE: &str = "host/plugin-files";

/// A file is kept in chunks of this size: one Redis command never carries
/// more, so a large upload does not stall the others.
const CHUNK_BYTES: usize = 1024 * 1024;

impl Runtime {
    /// The host's own: one copy of a file serves every PBX on the store.
    fn files(&self) -> Namespace {
        self.store
            .root()
            .namespace(FILES_NAMESPACE, Quota::UNLIMITED)
    }

    /// Tell the other replicas that what is installed, active or granted
    /// changed (nothing on an unshared store).
    pub(super) fn announce_change(&self) {
        self.store.announce(PLUGINS_TOPIC, b"");
    }

    /// Keep a plugin file in the shared store, for the other replicas (a
    /// no-op on an unshared store or when it is there already). The chunks
    /// and the index are one batch: a replica sees the whole file or none.
    pub(super) fn share_file(&self, sha256: &str, bytes: &[u8]) -> Result<(), InstallError> {
        if !self.store.is_shared() {
            return Ok(());
        }
        let files = self.files();
        if files.get(sha256)?.is_some() {
            return Ok(());
        }
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let mut writes: Vec<Write> = chunks
            .iter()
            .enumerate()
            .map(|(n, chunk)| Write::Set {
                key: chunk_key(sha256, n),
                value: chunk.to_vec(),
            })
            .collect();
        writes.push(Write::Set {
            key: sha256.to_string(),
            value: chunks.len().to_string().into_bytes(),
        });
        match files.batch(
            &[Precondition {
                key: sha256.to_string(),
                expected: None,
            }],
            &writes,
        ) {
            // Another replica shared the same file meanwhile.
            Ok(()) | Err(crate::store::KvError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A plugin file from the shared store, checked against its SHA-256;
    /// `None` when it is not there.
    pub(super) fn shared_file(&self, sha256: &str) -> Result<Option<Vec<u8>>, InstallError> {
        if !self.store.is_shared() {
            return Ok(None);
        }
        let files = self.files();
        let Some(count) = files.get(sha256)? else {
            return Ok(None);
        };
        let count: usize = std::str::from_utf8(&count)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                InstallError::Storage(format!(
                    "the shared copy of {sha256} is unreadable; install the plugin again"
                ))
            })?;
        let mut bytes = Vec::new();
        for n in 0..count {
            let chunk = files.get(&chunk_key(sha256, n))?.ok_or_else(|| {
                InstallError::Storage(format!(
                    "the shared copy of {sha256} is incomplete; install the plugin again"
                ))
            })?;
            bytes.extend_from_slice(&chunk);
        }
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(InstallError::Storage(format!(
                "the shared copy of {sha256} does not match its hash; install the plugin again"
            )));
        }
        Ok(Some(bytes))
    }

    /// Drop a plugin file from the shared store (no other version uses it).
    pub(super) fn unshare_file(&self, sha256: &str) -> Result<(), InstallError> {
        if !self.store.is_shared() {
            return Ok(());
        }
        let files = self.files();
        let Some(count) = files.get(sha256)? else {
            return Ok(());
        };
        let count: usize = std::str::from_utf8(&count)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut writes: Vec<Write> = (0..count)
            .map(|n| Write::Delete {
                key: chunk_key(sha256, n),
            })
            .collect();
        writes.push(Write::Delete {
            key: sha256.to_string(),
        });
        files.batch(&[], &writes)?;
        Ok(())
    }

    /// Make this replica serve what the registry says: each plugin's
    /// active version with its current grants (calls already running
    /// finish on the version they started on), and every installed
    /// version compiled. Another replica ran the migration, if any, when it
    /// activated the version.
    ///
    /// `prepared` is the caller's memory of the versions (file and grants)
    /// already compiled here, so a timer's follow does not read the
    /// precompile cache again.
    pub fn follow_registry(
        &self,
        prepared: &mut std::collections::HashSet<String>,
    ) -> Result<(), InstallError> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let mut versions = Vec::new();
        for id in self.registry.ids()? {
            let Some((record, _)) = self.registry.get(&id)? else {
                continue;
            };
            versions.extend(record.versions.values().cloned());
            let Some(entry) = record.active.as_ref().and_then(|v| record.versions.get(v)) else {
                continue;
            };
            let wanted = grants_key(&self.effective_grants(&id)?, self.kv_quota(&id)?);
            let current = self.loaded_version(&id).map(|loaded| {
                (
                    loaded.info.sha256.clone(),
                    loaded_grants_key(&loaded.info.granted, loaded.grants.kv.quota()),
                )
            });
            if current.as_ref() == Some(&(entry.sha256.clone(), wanted)) {
                continue;
            }
            // While it compiles, call events for a plugin not loaded here
            // at all wait in the retry queue (see `lagging`).
            let first_load = current.is_none();
            if first_load {
                self.set_lagging(&id, true);
            }
            let outcome = self.load_stored(entry);
            if first_load {
                self.set_lagging(&id, false);
            }
            match outcome {
                Ok(loaded) => {
                    self.set_active(&id, Arc::new(loaded));
                    tracing::info!(plugin = %id, version = ?record.active, "plugin version followed from the shared store");
                }
                Err(e) => tracing::error!(plugin = %id, "cannot load the active version: {e}"),
            }
        }
        for entry in versions {
            let Some(manifest) = &entry.manifest else {
                continue;
            };
            let key = grants_key(
                &self.effective_grants(&manifest.id)?,
                self.kv_quota(&manifest.id)?,
            );
            let seen = format!("{}-{key}", entry.sha256);
            if prepared.contains(&seen) {
                continue;
            }
            if self.cached_component(&entry.sha256, &key).is_some() {
                prepared.insert(seen);
                continue;
            }
            match self.load_stored(&entry) {
                Ok(_) => {
                    prepared.insert(seen);
                }
                Err(e) => {
                    tracing::warn!(plugin = %manifest.id, version = %manifest.version, "cannot prepare: {e}")
                }
            }
        }
        Ok(())
    }

    fn set_lagging(&self, id: &str, on: bool) {
        let mut lagging = self.lagging.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            lagging.insert(id.to_string());
        } else {
            lagging.remove(id);
        }
    }

    /// The plugins active in the registry that this runtime has not loaded
    /// (yet): on a shared store, what another replica installed a moment
    /// ago while this one still compiles it. Events for them are kept, not
    /// lost. The registry is read when nothing is loaded here (the
    /// follower may not have heard of the install yet); otherwise the
    /// follower's own view is enough.
    pub fn lagging(&self) -> Vec<String> {
        if !self.store.is_shared() {
            return Vec::new();
        }
        let mut lagging: Vec<String> = self
            .lagging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if self.plugin_ids().is_empty() {
            for id in self.registry.ids().unwrap_or_default() {
                let active = matches!(self.registry.get(&id), Ok(Some((record, _))) if record.active.is_some());
                if active && !lagging.contains(&id) {
                    lagging.push(id);
                }
            }
        }
        lagging.retain(|id| self.loaded_version(id).is_none());
        lagging.sort();
        lagging
    }

    /// The file of an installed version: the local copy, else the shared
    /// store's (then kept locally).
    pub(super) fn version_file(
        &self,
        entry: &registry::VersionRecord,
    ) -> Result<Vec<u8>, InstallError> {
        let path = self.plugins_dir.join(format!("{}.wasm", entry.sha256));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(bytes) = self.shared_file(&entry.sha256)? else {
                    return Err(InstallError::Storage(format!("{}: {e}", path.display())));
                };
                crate::files::write_atomically(&path, &bytes)
                    .map_err(|e| InstallError::Storage(format!("{}: {e}", path.display())))?;
                Ok(bytes)
            }
            Err(e) => Err(InstallError::Storage(format!("{}: {e}", path.display()))),
        }
    }
}

fn chunk_key(sha256: &str, n: usize) -> String {
    format!("{sha256}/{n:04}")
}

/// [`grants_key`] of what a loaded version was given.
fn loaded_grants_key(granted: &[String], kv: Quota) -> String {
    let patterns: Vec<crate::outbound::HostPattern> =
        granted.iter().filter_map(|p| p.parse().ok()).collect();
    grants_key(&patterns, kv)
}
