//! What a plugin may reach beyond its manifest's say-so: the operator's host
//! grants (configuration `--grant` plus `plugin grant`) and kv-store quota
//! grants, and which requests of a new version no grant covers yet (it
//! waits for the operator before it can become active).

use std::sync::Arc;

use super::Runtime;
use super::manifest::KvRequest;
use super::registry;
use super::versions::InstallError;
use crate::outbound::HostPattern;
use crate::store::Quota;

impl Runtime {
    /// Grant `id` a host pattern. The active version is loaded again with
    /// it (grants are part of the compiled form's cache key); versions that
    /// waited for it can now be activated.
    pub fn grant(&self, id: &str, pattern: &str) -> Result<Vec<String>, InstallError> {
        let parsed: HostPattern = pattern.parse().map_err(|e| {
            InstallError::BadGrant(format!(
                "{pattern:?} is not a host pattern ({e}); use scheme://host[:port], e.g. https://*.my.salesforce.com"
            ))
        })?;
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        self.registry.add_grant(id, &parsed.to_string())?;
        self.reload_active(id, &record)?;
        self.announce_change();
        tracing::info!(plugin = %id, pattern = %parsed, "host granted");
        Ok(self
            .effective_grants(id)?
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// The kv-store quota of `id`: the one granted with `plugin grant
    /// --kv-...`, else the host's default.
    pub(super) fn kv_quota(&self, id: &str) -> Result<Quota, InstallError> {
        Ok(self
            .registry
            .kv_grant(id)?
            .map_or(self.limits.kv, |granted| granted.quota()))
    }

    /// Grant `id` a kv-store quota; the active version is loaded again with
    /// it, and versions that waited for it can now be activated.
    pub fn grant_kv(&self, id: &str, quota: KvRequest) -> Result<Quota, InstallError> {
        if quota.max_keys == 0 || quota.max_mib == 0 {
            return Err(InstallError::BadGrant(
                "a kv-store grant needs keys and MiB above 0".into(),
            ));
        }
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (record, _) = self
            .registry
            .get(id)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
        self.registry.set_kv_grant(id, &quota)?;
        self.reload_active(id, &record)?;
        self.announce_change();
        tracing::info!(plugin = %id, %quota, "kv-store quota granted");
        self.kv_quota(id)
    }

    /// Load the active version again (after a grant changed what it gets).
    fn reload_active(&self, id: &str, record: &registry::PluginRecord) -> Result<(), InstallError> {
        if let Some(entry) = record
            .active
            .as_ref()
            .and_then(|v| record.versions.get(v))
            .filter(|_| self.loaded_version(id).is_some())
        {
            self.set_active(id, Arc::new(self.load_stored(entry)?));
        }
        Ok(())
    }

    /// The configuration's grants for `id` and those given with `plugin grant`.
    pub(super) fn effective_grants(&self, id: &str) -> Result<Vec<HostPattern>, InstallError> {
        let mut granted = self.grants.get(id).cloned().unwrap_or_default();
        for pattern in self.registry.grants(id)? {
            match pattern.parse::<HostPattern>() {
                Ok(p) if !granted.contains(&p) => granted.push(p),
                Ok(_) => {}
                Err(e) => tracing::warn!(plugin = %id, %pattern, "stored grant ignored: {e}"),
            }
        }
        Ok(granted)
    }
}

/// Requested patterns of `entry` that neither the active version already
/// requested nor a grant covers. A plugin's first version is never held
/// back: what it may reach is still only what is granted, checked on every
/// request; a later version that asks for more waits for the operator.
pub(super) fn waiting_for_grants(
    record: &registry::PluginRecord,
    entry: &registry::VersionRecord,
    granted: &[HostPattern],
    kv_quota: Quota,
) -> Vec<String> {
    let Some(active) = record.active.as_ref().and_then(|v| record.versions.get(v)) else {
        return Vec::new();
    };
    let mut waiting: Vec<String> = entry
        .requested
        .iter()
        .filter(|wanted| !active.requested.contains(wanted))
        .filter(|wanted| {
            wanted
                .parse::<HostPattern>()
                .map_or(true, |p| !granted.iter().any(|g| g.covers(&p)))
        })
        .cloned()
        .collect();
    let kv_request = |v: &registry::VersionRecord| v.manifest.as_ref().and_then(|m| m.kv);
    if let Some(wanted) = kv_request(entry)
        && !wanted.fits(kv_quota)
        && kv_request(active).is_none_or(|had| !wanted.fits(had.quota()))
    {
        waiting.push(wanted.to_string());
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_asking_for_more_than_granted_waits() {
        let version = |hosts: &[&str]| registry::VersionRecord {
            sha256: String::new(),
            api_version: "0.1.0".into(),
            requested: hosts.iter().map(|h| h.to_string()).collect(),
            signed_by: None,
            installed_at_ms: 0,
            manifest: None,
        };
        let mut record = registry::PluginRecord::default();
        let first = version(&["https://login.example.com"]);
        assert!(
            waiting_for_grants(&record, &first, &[], Quota::default()).is_empty(),
            "a first version is not held back"
        );
        record.versions.insert("1".into(), first);
        record.active = Some("1".into());
        let more = version(&["https://login.example.com", "https://api.other.org"]);
        assert_eq!(
            waiting_for_grants(&record, &more, &[], Quota::default()),
            vec!["https://api.other.org".to_string()]
        );
        let wildcard: HostPattern = "https://*.other.org".parse().expect("pattern");
        assert!(waiting_for_grants(&record, &more, &[wildcard], Quota::default()).is_empty());
    }
}
