//! Installing and running versions: verify, store and compile a file;
//! activate a version (its `migrate` export first) or roll back, while
//! calls keep flowing; remove an inactive version; load the active versions
//! at start. A swap replaces the plugin id's `Arc<Loaded>`: calls already
//! running finish on the version they started on.
//!
//! Two rules keep a plugin id's stored data (tokens, secrets) with its
//! vendor. An id is pinned to the vendor key that signed its first signed
//! version: a file signed by another trusted key, or unsigned, is refused
//! unless the administrator re-pins (`InstallOptions::repin`). And a
//! version older (by release number) than the newest ever activated is activated only
//! when the administrator allows the downgrade (`allow_downgrade`, or
//! `rollback`, which is that explicit step back).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::cache::grants_key;
use super::grants::waiting_for_grants;
use super::handle::migrate_export;
use super::inspect::{self, Inspection};
use super::pool::Loaded;
use super::versions::{
    Activate, Activation, InstallError, InstallOptions, InstallReport, InstalledPlugin,
    PluginListing, VersionListing,
};
use super::{CallTiming, Runtime, registry, signature, wit};
use crate::capabilities::Grants;
use crate::now_ms;
use crate::outbound::{HostPattern, Policy};

impl Runtime {
    /// Every installed plugin with its versions.
    pub fn listing(&self) -> Result<Vec<PluginListing>, InstallError> {
        let mut out = Vec::new();
        for id in self.registry.ids()? {
            let Some((record, _)) = self.registry.get(&id)? else {
                continue;
            };
            let granted = self.effective_grants(&id)?;
            let kv_quota = self.kv_quota(&id)?;
            let active = self.loaded_version(&id);
            let versions = record
                .versions
                .iter()
                .map(|(version, v)| VersionListing {
                    version: version.clone(),
                    sha256: v.sha256.clone(),
                    api_version: v.api_version.clone(),
                    requested: v.requested.clone(),
                    signed_by: v.signed_by.clone(),
                    active: record.active.as_deref() == Some(version.as_str()),
                    waiting_for_grants: waiting_for_grants(&record, v, &granted, kv_quota),
                })
                .collect();
            out.push(PluginListing {
                manifest: active.map(|l| l.info.manifest.clone()),
                id,
                active: record.active.clone(),
                previous: record.previous.clone(),
                granted: granted.iter().map(ToString::to_string).collect(),
                kv_max_keys: kv_quota.max_keys,
                kv_max_bytes: kv_quota.max_bytes,
                versions,
                pinned_key: record.signer.as_ref().map(|s| s.key_id.clone()),
                newest_activated: record.newest_activated.clone(),
            });
        }
        Ok(out)
    }

    /// Validate, store (content-addressed) and load a component, making it
    /// the active version of its plugin: what `POST /api/plugins` did
    /// before plugin versions, kept for embedders and benches.
    pub fn install(&self, bytes: &[u8]) -> Result<InstalledPlugin, InstallError> {
        let report = self.install_with(
            bytes,
            &InstallOptions {
                sha256: None,
                activate: Activate::Yes,
                ..InstallOptions::default()
            },
        )?;
        match report.waiting_for_grants.is_empty() {
            true => Ok(report.plugin),
            false => Err(InstallError::NeedsGrants {
                id: report.plugin.manifest.id.clone(),
                version: report.plugin.manifest.version.clone(),
                hosts: report.waiting_for_grants,
            }),
        }
    }

    /// Verify a file (its hash when one is expected, component, API
    /// version, manifest, vendor signature), store it, compile it, record
    /// its version, and activate it as `options` say.
    pub fn install_with(
        &self,
        bytes: &[u8],
        options: &InstallOptions,
    ) -> Result<InstallReport, InstallError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(expected) = &options.sha256 {
            let expected = expected.trim().to_ascii_lowercase();
            if expected != sha256 {
                return Err(InstallError::HashMismatch {
                    expected,
                    actual: sha256,
                });
            }
        }
        let inspection = inspect::inspect(bytes)?;
        let signed_by = signature::verify(bytes, &self.trust)?;
        let signer = signed_by.as_ref().map(|key_id| registry::Signer {
            key_id: key_id.clone(),
            public_key: self.trust.public_key(key_id).unwrap_or_default(),
        });
        let id = inspection.manifest.id.clone();
        let version = inspection.manifest.version.clone();
        // Checked before the file is stored, so a refused file leaves
        // nothing behind; checked again below, under the change lock.
        if let Some((mut record, _)) = self.registry.get(&id)? {
            self.check_signer(&id, &mut record, signer.as_ref(), options.repin)?;
            if options.activate == Activate::Yes && !options.allow_downgrade {
                check_downgrade(&id, &record, &version)?;
            }
        }
        let path = self.plugins_dir.join(format!("{sha256}.wasm"));
        if !path.exists() {
            crate::files::write_atomically(&path, bytes)
                .map_err(|e| InstallError::Storage(format!("{}: {e}", path.display())))?;
        }
        self.share_file(&sha256, bytes)?;
        // Compiled (and cached) now, so a file that cannot load is refused
        // at install, not at activation.
        let loaded = self.load(inspection.clone(), &sha256, bytes)?;

        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (mut record, raw) = match self.registry.get(&id)? {
            Some((record, raw)) => (record, Some(raw)),
            None => (registry::PluginRecord::default(), None),
        };
        if let Some(existing) = record.versions.get(&version)
            && existing.sha256 != sha256
        {
            return Err(InstallError::VersionClash { id, version });
        }
        let entry = registry::VersionRecord {
            sha256: sha256.clone(),
            api_version: inspection.api_version.clone(),
            requested: inspection.manifest.hosts.clone(),
            signed_by: signed_by.clone(),
            installed_at_ms: now_ms(),
            manifest: Some(inspection.manifest.clone()),
        };
        let granted = self.effective_grants(&id)?;
        let waiting = waiting_for_grants(&record, &entry, &granted, self.kv_quota(&id)?);
        let wanted = match options.activate {
            Activate::Yes => true,
            Activate::No => false,
            Activate::IfNoneActive => record.active.is_none(),
        };
        let already = record.active.as_deref() == Some(version.as_str());
        self.check_signer(&id, &mut record, signer.as_ref(), options.repin)?;
        let activate = wanted && waiting.is_empty() && !already;
        if activate && !options.allow_downgrade {
            check_downgrade(&id, &record, &version)?;
        }
        let requested = entry.requested.clone();
        record.versions.insert(version.clone(), entry);
        let loaded = Arc::new(loaded);
        let mut migrated = false;
        if activate {
            migrated = self.migrate(&loaded, record.active.as_deref())?;
            record.previous = record.active.replace(version.clone());
            record.newest_activated = Some(newest(record.newest_activated.take(), &version));
        }
        self.registry.put(&id, raw, &record)?;
        if activate || (already && self.loaded_version(&id).is_none()) {
            self.set_active(&id, loaded.clone());
        }
        self.announce_change();
        tracing::info!(
            plugin = %id, %version, %sha256, activated = activate, migrated,
            signed_by = signed_by.as_deref().unwrap_or("-"),
            "plugin installed"
        );
        Ok(InstallReport {
            plugin: loaded.info.clone(),
            activated: activate || already,
            requested,
            waiting_for_grants: if wanted && !already {
                waiting
            } else {
                Vec::new()
            },
            signed_by,
        })
    }

    /// Make `version` the active version of `id`. Calls already running
    /// finish on the version they started on; calls from now on get the
    /// new one. Its `migrate` export, if any, runs first; if it fails the
    /// old version stays active.
    pub fn activate(&self, id: &str, version: &str) -> Result<Activation, InstallError> {
        self.activate_with(id, version, false)
    }

    /// [`Runtime::activate`], allowing (or not) a version older than the
    /// newest activated one.
    pub fn activate_with(
        &self,
        id: &str,
        version: &str,
        allow_downgrade: bool,
    ) -> Result<Activation, InstallError> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        self.switch(id, version, allow_downgrade)
    }

    /// Go back to the version active before the last activation, the same
    /// way as [`Runtime::activate`]. Going back is what the administrator
    /// asks for here, so an older version is allowed.
    pub fn rollback(&self, id: &str) -> Result<Activation, InstallError> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        let previous = record
            .previous
            .ok_or_else(|| InstallError::NoPrevious(id.to_string()))?;
        self.switch(id, &previous, true)
    }

    fn switch(
        &self,
        id: &str,
        version: &str,
        allow_downgrade: bool,
    ) -> Result<Activation, InstallError> {
        let started = std::time::Instant::now();
        let (mut record, raw) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        let entry =
            record
                .versions
                .get(version)
                .cloned()
                .ok_or_else(|| InstallError::UnknownVersion {
                    id: id.to_string(),
                    version: version.to_string(),
                    installed: record.versions.keys().cloned().collect(),
                })?;
        if record.active.as_deref() == Some(version) && self.loaded_version(id).is_some() {
            return Ok(Activation {
                id: id.to_string(),
                active: version.to_string(),
                previous: record.previous.clone(),
                migrated: false,
                swap_us: 0,
            });
        }
        if !allow_downgrade {
            check_downgrade(id, &record, version)?;
        }
        let granted = self.effective_grants(id)?;
        let waiting = waiting_for_grants(&record, &entry, &granted, self.kv_quota(id)?);
        if !waiting.is_empty() {
            return Err(InstallError::NeedsGrants {
                id: id.to_string(),
                version: version.to_string(),
                hosts: waiting,
            });
        }
        let loaded = Arc::new(self.load_stored(&entry)?);
        let migrated = self.migrate(&loaded, record.active.as_deref())?;
        record.newest_activated = Some(newest(record.newest_activated.take(), version));
        let from = record.active.replace(version.to_string());
        record.previous = from.clone().filter(|f| f != version);
        self.registry.put(id, Some(raw), &record)?;
        self.set_active(id, loaded);
        self.announce_change();
        let swap = started.elapsed();
        tracing::info!(plugin = %id, %version, from = from.as_deref().unwrap_or("-"), swap_us = swap.as_micros() as u64, "plugin version activated");
        Ok(Activation {
            id: id.to_string(),
            active: version.to_string(),
            previous: record.previous,
            migrated,
            swap_us: swap.as_micros() as u64,
        })
    }

    /// Remove an inactive version; its file and compiled forms go when no
    /// other version uses them.
    pub fn remove(&self, id: &str, version: &str) -> Result<(), InstallError> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (mut record, raw) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        if record.active.as_deref() == Some(version) {
            return Err(InstallError::ActiveVersion {
                id: id.to_string(),
                version: version.to_string(),
            });
        }
        let Some(entry) = record.versions.remove(version) else {
            return Err(InstallError::UnknownVersion {
                id: id.to_string(),
                version: version.to_string(),
                installed: record.versions.keys().cloned().collect(),
            });
        };
        if record.previous.as_deref() == Some(version) {
            record.previous = None;
        }
        self.registry.put(id, Some(raw), &record)?;
        if !self.sha_in_use(&entry.sha256)? {
            let _ = std::fs::remove_file(self.plugins_dir.join(format!("{}.wasm", entry.sha256)));
            self.remove_cached(&entry.sha256);
            self.unshare_file(&entry.sha256)?;
        }
        self.announce_change();
        tracing::info!(plugin = %id, %version, "plugin version removed");
        Ok(())
    }

    /// Stop counting this runtime's registry among those whose files are in
    /// use (its PBX is no longer served here).
    pub fn release(&self) {
        self.shared.remove_registry(self.store.scope());
    }

    /// The files this runtime's installed versions use, for
    /// [`Runtime::drop_unused_files`] once its records are gone.
    pub fn installed_files(&self) -> Vec<String> {
        let mut shas = Vec::new();
        for id in self.registry.ids().unwrap_or_default() {
            if let Ok(Some((record, _))) = self.registry.get(&id) {
                shas.extend(record.versions.into_values().map(|v| v.sha256));
            }
        }
        shas.sort();
        shas.dedup();
        shas
    }

    /// Delete each of `shas`' file and compiled forms that no other runtime
    /// of the process uses any more; the ones deleted.
    pub fn drop_unused_files(&self, shas: &[String]) -> Vec<String> {
        let mut dropped = Vec::new();
        for sha256 in shas {
            if self.shared.file_in_use(sha256).unwrap_or(true) {
                continue;
            }
            let _ = std::fs::remove_file(self.plugins_dir.join(format!("{sha256}.wasm")));
            self.remove_cached(sha256);
            if let Err(e) = self.unshare_file(sha256) {
                tracing::warn!(%sha256, "the shared copy of a plugin file stays: {e}");
            }
            dropped.push(sha256.clone());
        }
        dropped
    }

    /// Load every installed plugin's active version (at start). A plugin
    /// that fails to load is logged and skipped, so one bad file does not
    /// stop the PBX.
    pub fn load_installed(&self) -> Result<usize, InstallError> {
        let mut count = 0;
        for id in self.registry.ids()? {
            match self.load_installed_one(&id) {
                Ok(true) => count += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(plugin = %id, "plugin not loaded: {e}"),
            }
        }
        Ok(count)
    }

    fn load_installed_one(&self, id: &str) -> Result<bool, InstallError> {
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        let Some(entry) = record.active.as_ref().and_then(|v| record.versions.get(v)) else {
            return Ok(false);
        };
        let loaded = self.load_stored(entry)?;
        self.set_active(id, Arc::new(loaded));
        Ok(true)
    }

    /// Load an installed version: straight from the precompile cache when
    /// it holds it (what install recorded stands for the file, which is not
    /// read again), else from its file, checking it still has its hash.
    pub(super) fn load_stored(
        &self,
        entry: &registry::VersionRecord,
    ) -> Result<Loaded, InstallError> {
        if let Some(manifest) = &entry.manifest {
            let granted = self.effective_grants(&manifest.id)?;
            let key = grants_key(&granted, self.kv_quota(&manifest.id)?);
            if let Some(component) = self.cached_component(&entry.sha256, &key) {
                let inspection = Inspection {
                    manifest: manifest.clone(),
                    api_version: entry.api_version.clone(),
                    imports: Vec::new(),
                    exports: Vec::new(),
                };
                return self.load_component(inspection, &entry.sha256, &component, granted);
            }
        }
        let sha256 = &entry.sha256;
        let bytes = self.version_file(entry)?;
        if hex::encode(Sha256::digest(&bytes)) != *sha256 {
            return Err(InstallError::Storage(format!(
                "{} does not match its hash; install the plugin again",
                self.plugins_dir.join(format!("{sha256}.wasm")).display()
            )));
        }
        let inspection = inspect::inspect(&bytes)?;
        self.load(inspection, sha256, &bytes)
    }

    /// Whether any runtime of the process (any PBX it serves) still has a
    /// version of file `sha256` installed.
    fn sha_in_use(&self, sha256: &str) -> Result<bool, InstallError> {
        Ok(self.registry.has_file(sha256)? || self.shared.file_in_use(sha256)?)
    }

    /// Runs the new version's `migrate(from-version)` export when it has
    /// one and a version was active before.
    fn migrate(&self, loaded: &Arc<Loaded>, from: Option<&str>) -> Result<bool, InstallError> {
        let Some(from) = from else {
            return Ok(false);
        };
        if !loaded.prepared.exports_migrate() {
            return Ok(false);
        }
        let id = loaded.info.manifest.id.clone();
        let failed = |reason: String| InstallError::Migration {
            id: id.clone(),
            version: loaded.info.manifest.version.clone(),
            from: from.to_string(),
            reason,
        };
        // Install and activation are synchronous (the admin API runs them
        // on the blocking pool, embedders anywhere): the call runs on a
        // thread of its own with a small runtime, under the usual limits.
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("cannot start the migration: {e}"))?;
                    let mut timing = CallTiming::default();
                    runtime
                        .block_on(self.call_loaded(
                            &id,
                            loaded.clone(),
                            migrate_export(from),
                            &mut timing,
                        ))
                        // A refusal's text is the plugin's own message.
                        .map_err(|e| e.to_string())
                })
                .join()
                .unwrap_or_else(|_| Err("the migration stopped unexpectedly".into()))
        });
        match outcome {
            Ok(None) => Ok(false),
            Ok(Some(())) => {
                tracing::info!(plugin = %id, %from, version = %loaded.info.manifest.version, "plugin state migrated");
                Ok(true)
            }
            Err(reason) => Err(failed(reason)),
        }
    }

    fn load(
        &self,
        inspection: Inspection,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Loaded, InstallError> {
        let granted = self.effective_grants(&inspection.manifest.id)?;
        let key = grants_key(&granted, self.kv_quota(&inspection.manifest.id)?);
        let component = self.component(sha256, &key, bytes)?;
        self.load_component(inspection, sha256, &component, granted)
    }

    fn load_component(
        &self,
        inspection: Inspection,
        sha256: &str,
        component: &Component,
        granted: Vec<HostPattern>,
    ) -> Result<Loaded, InstallError> {
        let pre = self
            .shared
            .linker
            .instantiate_pre(component)
            .map_err(|e| InstallError::Load(format!("its imports cannot be satisfied: {e}")))?;
        // The memory image is made here rather than in the first call: for a
        // component compiled in this process that is a memfd written with
        // the whole image (~7 ms for the pre-initialized plugin's 15 MB);
        // one loaded from the precompile cache maps the file, which is cheap.
        component
            .initialize_copy_on_write_image()
            .map_err(|e| InstallError::Load(format!("its memory image cannot be made: {e}")))?;
        let prepared = wit::prepare(&inspection.api_version, pre)
            .map_err(|e| InstallError::Load(format!("it does not export the plugin world: {e}")))?;
        let manifest = inspection.manifest;
        let grants = Arc::new(Grants {
            plugin_id: manifest.id.clone(),
            kv: self.store.namespace(
                &format!("plugin/{}", manifest.id),
                self.kv_quota(&manifest.id)?,
            ),
            http: Policy {
                requested: manifest.host_patterns(),
                granted: granted.clone(),
            },
            open_budget: Default::default(),
        });
        let info = InstalledPlugin {
            sha256: sha256.to_string(),
            api_version: inspection.api_version,
            granted: granted.iter().map(ToString::to_string).collect(),
            manifest,
        };
        Ok(Loaded::new(info, prepared, grants, &self.shared.pool))
    }
}

impl Runtime {
    /// Whether a file signed by `signer` (or unsigned) may become a version
    /// of `id`, whose record is `record`: the id's pinned key, or any key
    /// for an id not pinned yet (which is then pinned to it), or any when
    /// the administrator re-pins (`repin`). Updates the pin in `record`.
    fn check_signer(
        &self,
        id: &str,
        record: &mut registry::PluginRecord,
        signer: Option<&registry::Signer>,
        repin: bool,
    ) -> Result<(), InstallError> {
        let pinned = record.signer.clone().or_else(|| self.legacy_pin(record));
        match (pinned, signer) {
            (None, None) => Ok(()),
            (None, Some(signer)) => {
                record.signer = Some(signer.clone());
                Ok(())
            }
            (Some(pinned), signer) if signer.is_some_and(|s| same_key(&pinned, s)) => {
                record.signer = Some(pinned);
                Ok(())
            }
            (Some(pinned), signer) if repin => {
                tracing::warn!(
                    plugin = %id, from = %pinned.key_id,
                    to = signer.map_or("nothing (unsigned)", |s| s.key_id.as_str()),
                    "plugin re-pinned to another vendor key by the administrator"
                );
                record.signer = signer.cloned();
                Ok(())
            }
            (Some(pinned), signer) => Err(InstallError::SignerChanged {
                id: id.to_string(),
                pinned: pinned.key_id,
                signer: signer.map(|s| s.key_id.clone()),
            }),
        }
    }

    /// The pin of a record written before pinning: the key of its first
    /// signed version.
    fn legacy_pin(&self, record: &registry::PluginRecord) -> Option<registry::Signer> {
        let first = record
            .versions
            .values()
            .filter(|v| v.signed_by.is_some())
            .min_by_key(|v| v.installed_at_ms)?;
        let key_id = first.signed_by.clone()?;
        Some(registry::Signer {
            public_key: self.trust.public_key(&key_id).unwrap_or_default(),
            key_id,
        })
    }
}

/// Whether two signers are the same key: by public key, or by id when a
/// public key is unknown (its id is no longer trusted).
fn same_key(a: &registry::Signer, b: &registry::Signer) -> bool {
    if a.public_key.is_empty() || b.public_key.is_empty() {
        a.key_id == b.key_id
    } else {
        a.public_key == b.public_key
    }
}

/// Refuses activating `version` of `id` when it is older than the newest
/// version activated so far. Versions without a release number cannot be
/// ordered and are not refused.
fn check_downgrade(
    id: &str,
    record: &registry::PluginRecord,
    version: &str,
) -> Result<(), InstallError> {
    match &record.newest_activated {
        Some(newest) if is_older(version, newest) => Err(InstallError::Downgrade {
            id: id.to_string(),
            version: version.to_string(),
            newest: newest.clone(),
        }),
        _ => Ok(()),
    }
}

/// Whether `version`'s release (`MAJOR.MINOR.PATCH`) is older than
/// `than`'s. Pre-release and build suffixes (`-rc.1`, `+build`) are not
/// ordered: a vendor's `1.2.0-hotfix` is not refused after `1.2.0`.
fn is_older(version: &str, than: &str) -> bool {
    match (release(version), release(than)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

/// The release numbers of a version string, padded to three (`2.1` is
/// `2.1.0`); `None` when it has none.
fn release(version: &str) -> Option<[u64; 3]> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut numbers = [0u64; 3];
    let mut parts = core.split('.');
    for slot in &mut numbers {
        match parts.next() {
            Some(part) => *slot = part.parse().ok()?,
            None => break,
        }
    }
    parts.next().is_none().then_some(numbers)
}

/// The newer of the newest version activated so far and `version`.
fn newest(so_far: Option<String>, version: &str) -> String {
    match so_far {
        Some(so_far) if is_older(version, &so_far) => so_far,
        _ => version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_by_release_and_others_are_not_refused() {
        assert!(is_older("1.9.0", "1.10.0"));
        assert!(is_older("v1.2", "1.2.1"));
        assert!(is_older("0.9.9-next", "1.0.0"));
        assert!(!is_older("1.0.0-next", "1.0.0"), "suffixes are not ordered");
        assert!(!is_older("2.0.0", "1.10.0"));
        assert!(!is_older("1.0.0", "1.0.0"));
        assert!(!is_older("installed", "1.0.0"));
        assert!(!is_older("1.0.0.0", "2.0.0"), "not a release number");
        assert_eq!(newest(Some("2.0.0".into()), "1.0.0"), "2.0.0");
        assert_eq!(newest(Some("1.0.0".into()), "1.1.0"), "1.1.0");
        assert_eq!(newest(None, "0.1.0"), "0.1.0");
        let record = registry::PluginRecord {
            newest_activated: Some("1.1.0".into()),
            ..Default::default()
        };
        let err = check_downgrade("probe", &record, "1.0.0").expect_err("older");
        assert!(err.to_string().contains("--allow-downgrade"), "{err}");
        assert!(check_downgrade("probe", &record, "1.1.0").is_ok());
        assert!(check_downgrade("probe", &record, "1.2.0").is_ok());
    }
}
