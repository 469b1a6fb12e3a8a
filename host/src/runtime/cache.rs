//! The precompile cache: compiled components kept under
//! `DATA_DIR/cache/<sha256>-<engine compatibility hash>-<grants digest>.cwasm`,
//! so a start or a swap loads native code instead of compiling (~1 s), and
//! a new file, new grants or another engine each compile again.
//!
//! Loading a compiled file maps it as native code (`deserialize` is
//! `unsafe`): whoever can write the cache folder could otherwise run code
//! in the host. So when the host writes a file it records the file's
//! BLAKE3 hash in the encrypted store (namespace `host/precompiled`, keyed
//! by the file name), and it loads only a file whose bytes, read once, have
//! the recorded hash, from those very bytes. A file with no record or
//! another hash is compiled again, with a warning. Files are owner-only
//! (0600) in an owner-only folder (0700). BLAKE3 rather than SHA-256: it
//! hashes the ~8 MB compiled plugin in a third of the time, and the hash
//! is most of a start's load. A record an older host wrote (SHA-256) is
//! still honoured, and rewritten.
//!
//! Replicas sharing a store each have their own cache folder: their
//! records are apart too (`host/precompiled/<cache id>`, the id a random
//! one kept in the folder), so one replica's compiled file never replaces
//! the record of another's.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::Runtime;
use super::versions::InstallError;
use crate::outbound::HostPattern;
use crate::store::Quota;

impl Runtime {
    /// The compiled component, from the precompile cache when it holds one
    /// for this content, this engine and these grants; compiled (and
    /// cached) otherwise.
    pub(super) fn component(
        &self,
        sha256: &str,
        grants: &str,
        bytes: &[u8],
    ) -> Result<Component, InstallError> {
        if let Some(component) = self.cached_component(sha256, grants) {
            return Ok(component);
        }
        let cached = self.cache_path(sha256, grants);
        let compiled = self
            .shared
            .engine
            .precompile_component(bytes)
            .map_err(|e| InstallError::Load(format!("it does not compile: {e}")))?;
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%sha256, "plugin compiled");
        self.write_cached(&cached, &compiled);
        // SAFETY: the bytes come from `precompile_component` of this engine.
        let component = unsafe { Component::deserialize(&self.shared.engine, &compiled) }
            .map_err(|e| InstallError::Load(e.to_string()))?;
        self.shared
            .keep_component(memo_key(sha256, grants), &component);
        Ok(component)
    }

    fn compatibility_key(&self) -> String {
        compatibility_key(&self.shared.engine)
    }

    fn cache_path(&self, sha256: &str, grants: &str) -> PathBuf {
        self.cache_dir.join(format!(
            "{sha256}-{}-{grants}.cwasm",
            self.compatibility_key()
        ))
    }

    /// Removes every compiled form of the file `sha256` (any engine, any
    /// grants), when no installed version uses the file any more.
    pub(super) fn remove_cached(&self, sha256: &str) {
        let Ok(dir) = std::fs::read_dir(&self.cache_dir) else {
            return;
        };
        for file in dir.flatten() {
            if file.file_name().to_string_lossy().starts_with(sha256) {
                let _ = std::fs::remove_file(file.path());
            }
        }
        for key in self.precompiled.list_keys(sha256).unwrap_or_default() {
            let _ = self.precompiled.delete(&key);
        }
        self.shared.forget_components(sha256);
    }

    /// The compiled component from the precompile cache, if it holds one
    /// for this content, engine and grants, and the file has the hash the
    /// host recorded when it wrote it.
    /// A component this process (any of its runtimes) compiled or loaded
    /// before is taken as it is.
    pub(super) fn cached_component(&self, sha256: &str, grants: &str) -> Option<Component> {
        if let Some(component) = self.shared.component(&memo_key(sha256, grants)) {
            return Some(component);
        }
        let cached = self.cache_path(sha256, grants);
        let name = file_name(&cached)?;
        let bytes = match std::fs::read(&cached) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(%sha256, "cannot read the precompile cache, compiling again: {e}");
                return None;
            }
        };
        let recorded = match self.precompiled.get(&name) {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(%sha256, "cannot read the precompile cache's record, compiling again: {e}");
                return None;
            }
        };
        match recorded.as_deref().map(|r| check_record(r, &bytes)) {
            Some(Record::Matches) => {}
            Some(Record::MatchesOld) => {
                // Written by an older host: the same check, kept from now
                // on in the faster form.
                if let Err(e) = self.precompiled.set(&name, record_of(&bytes).as_bytes()) {
                    tracing::warn!(%sha256, "cannot update the precompile cache's record: {e}");
                }
            }
            None | Some(Record::Differs) => {
                tracing::warn!(
                    %sha256, file = %cached.display(),
                    "a precompile cache file has no recorded hash or not the recorded one (it was not written by this host, or was changed since); it is not loaded, the plugin is compiled again"
                );
                return None;
            }
        }
        // SAFETY: these bytes have the hash this host recorded (in its
        // encrypted store) when it wrote them from `precompile_component` of
        // an engine with the same configuration, which the compatibility
        // key in the name guarantees; they are the bytes that were hashed,
        // not the file read again.
        match unsafe { Component::deserialize(&self.shared.engine, &bytes) } {
            Ok(component) => {
                self.counters.cache_loads.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .keep_component(memo_key(sha256, grants), &component);
                tracing::info!(%sha256, "plugin loaded from the precompile cache");
                Some(component)
            }
            Err(e) => {
                tracing::warn!(%sha256, "stale precompile cache entry, compiling again: {e}");
                None
            }
        }
    }

    /// Writes a compiled component to the cache (owner-only) and records
    /// its hash; a failure only costs a compile at the next load.
    fn write_cached(&self, path: &Path, compiled: &[u8]) {
        let Some(name) = file_name(path) else {
            return;
        };
        let hash = record_of(compiled);
        // The record first: a file without a record is never loaded, and a
        // record without its file is only a compile at the next load.
        if let Err(e) = self.precompiled.set(&name, hash.as_bytes()) {
            tracing::warn!("cannot record the precompile cache entry, not caching it: {e}");
            return;
        }
        if let Err(e) = crate::files::write_atomically_private(path, compiled) {
            tracing::warn!("cannot write the precompile cache: {e}");
        }
    }
}

/// The record of a compiled file's bytes.
fn record_of(compiled: &[u8]) -> String {
    format!("{BLAKE3_PREFIX}{}", blake3::hash(compiled).to_hex())
}

const BLAKE3_PREFIX: &str = "blake3:";

/// How a file's bytes compare with its record.
#[derive(Debug, PartialEq, Eq)]
enum Record {
    /// They have the recorded hash.
    Matches,
    /// They have the recorded hash, in the form (hex SHA-256) hosts before
    /// BLAKE3 wrote.
    MatchesOld,
    /// Anything else: not loaded.
    Differs,
}

fn check_record(recorded: &[u8], bytes: &[u8]) -> Record {
    let Ok(recorded) = std::str::from_utf8(recorded) else {
        return Record::Differs;
    };
    match recorded.strip_prefix(BLAKE3_PREFIX) {
        Some(hex) if blake3::Hash::from_hex(hex).is_ok_and(|h| h == blake3::hash(bytes)) => {
            Record::Matches
        }
        None if recorded.len() == 64 && recorded == hex::encode(Sha256::digest(bytes)) => {
            Record::MatchesOld
        }
        _ => Record::Differs,
    }
}

/// The store namespace of the cache's records: `host/precompiled`, or on
/// a shared store `host/precompiled/<id>` with the id kept in
/// `cache_dir/cache-id` (made at first use).
pub(super) fn records_namespace(cache_dir: &Path, shared: bool) -> std::io::Result<String> {
    if !shared {
        return Ok("host/precompiled".to_string());
    }
    let path = cache_dir.join("cache-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if id.trim().len() == 32 => id.trim().to_string(),
        _ => {
            let id = hex::encode(rand::random::<[u8; 16]>());
            crate::files::write_private(&path, id.as_bytes())?;
            id
        }
    };
    Ok(format!("host/precompiled/{id}"))
}

/// The key of a compiled component among the process's: the file and the
/// grants it was compiled for (the engine is the process's one).
fn memo_key(sha256: &str, grants: &str) -> String {
    format!("{sha256}-{grants}")
}

/// The file name of a cache path, which keys its record.
fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The engine's part of the precompile cache's file names: compiled code
/// loads only into an engine of the same version and configuration.
fn compatibility_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A short digest of the grants, for the precompile cache's file names.
pub(super) fn grants_key(granted: &[HostPattern], kv: Quota) -> String {
    let mut patterns: Vec<String> = granted.iter().map(ToString::to_string).collect();
    patterns.sort();
    patterns.push(format!("kv {} {}", kv.max_keys, kv.max_bytes));
    hex::encode(&Sha256::digest(patterns.join("\n").as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::engine;

    #[test]
    fn the_cache_key_changes_with_the_engine_and_the_grants() {
        let (pooled, _) = engine::new_engine(64 << 20).expect("engine");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let plain = Engine::new(&config).expect("engine");
        assert_ne!(compatibility_key(&pooled), compatibility_key(&plain));
        assert_eq!(
            compatibility_key(&pooled),
            compatibility_key(&pooled.clone())
        );
        let a: HostPattern = "https://*.example.com".parse().expect("pattern");
        let b: HostPattern = "https://api.example.org".parse().expect("pattern");
        let kv = Quota::default();
        assert_ne!(
            grants_key(&[], kv),
            grants_key(std::slice::from_ref(&a), kv)
        );
        assert_ne!(grants_key(&[], kv), grants_key(&[], Quota::UNLIMITED));
        assert_eq!(
            grants_key(&[a.clone(), b.clone()], kv),
            grants_key(&[b, a], kv),
            "the order grants were given in does not matter"
        );
    }

    #[test]
    fn a_file_loads_only_with_its_recorded_hash_old_or_new() {
        let bytes = b"\x7fELF compiled plugin".as_slice();
        let record = record_of(bytes);
        assert!(record.starts_with("blake3:"), "{record}");
        assert_eq!(check_record(record.as_bytes(), bytes), Record::Matches);
        assert_eq!(
            check_record(record.as_bytes(), b"\x7fELF another plugin"),
            Record::Differs
        );
        let old = hex::encode(Sha256::digest(bytes));
        assert_eq!(check_record(old.as_bytes(), bytes), Record::MatchesOld);
        assert_eq!(
            check_record(old.as_bytes(), b"\x7fELF another plugin"),
            Record::Differs
        );
        // The old form with the new prefix, the new form without it, a
        // truncated hash, and bytes that are not text: none loads.
        for bad in [
            format!("blake3:{old}"),
            blake3::hash(bytes).to_hex().to_string(),
            record[..record.len() - 2].to_string(),
        ] {
            assert_eq!(
                check_record(bad.as_bytes(), bytes),
                Record::Differs,
                "{bad}"
            );
        }
        assert_eq!(check_record(&[0xff, 0xfe], bytes), Record::Differs);
    }

    #[test]
    fn each_cache_folder_on_a_shared_store_keeps_its_records_apart() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            records_namespace(a.path(), false).expect("name"),
            "host/precompiled"
        );
        let first = records_namespace(a.path(), true).expect("name");
        assert!(first.starts_with("host/precompiled/"), "{first}");
        assert_eq!(
            records_namespace(a.path(), true).expect("name"),
            first,
            "kept"
        );
        assert_ne!(records_namespace(b.path(), true).expect("name"), first);
    }
}
