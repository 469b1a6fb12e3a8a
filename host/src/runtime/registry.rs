//! What is installed, kept in the store: per plugin id, its versions, which
//! one is active and which was before (for rollback), the vendor key the id
//! is pinned to and the newest version ever activated (see `lifecycle`),
//! and the hosts the operator granted it with `plugin grant`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::runtime::manifest::KvRequest;
use crate::store::{KvError, Namespace, Precondition, Write};

/// One installed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// SHA-256 of the file (`DATA_DIR/plugins/<sha256>.wasm`).
    pub sha256: String,
    /// The `pbx:crm` version it uses.
    pub api_version: String,
    /// The hosts its manifest requests.
    #[serde(default)]
    pub requested: Vec<String>,
    /// The vendor key that signed it, if signed.
    #[serde(default)]
    pub signed_by: Option<String>,
    /// When it was installed, ms since the Unix epoch.
    #[serde(default)]
    pub installed_at_ms: u64,
    /// Its manifest, as inspected at install: with the precompile cache it
    /// lets a start skip reading and hashing the file again.
    #[serde(default)]
    pub manifest: Option<crate::runtime::manifest::Manifest>,
}

/// A plugin id's versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// By the plugin's own version string.
    pub versions: BTreeMap<String, VersionRecord>,
    /// The version calls go to.
    pub active: Option<String>,
    /// The version active before the last activation (`plugin rollback`).
    #[serde(default)]
    pub previous: Option<String>,
    /// The vendor key the id is pinned to: the one that signed its first
    /// signed version. Another key's versions are refused unless the
    /// administrator re-pins.
    #[serde(default)]
    pub signer: Option<Signer>,
    /// The newest version ever activated: activating an older one is a
    /// downgrade the administrator must allow.
    #[serde(default)]
    pub newest_activated: Option<String>,
}

/// A vendor key a plugin id is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// Its id, as in `--trusted-key KEY_ID=...`.
    pub key_id: String,
    /// The Ed25519 public key, base64: what is compared (an id could be
    /// given another key).
    pub public_key: String,
}

/// The registry in the store.
#[derive(Debug, Clone)]
pub struct Registry {
    plugins: Namespace,
    grants: Namespace,
}

impl Registry {
    /// Over the host's `host/plugins` and `host/grants` namespaces.
    pub fn new(plugins: Namespace, grants: Namespace) -> Self {
        Self { plugins, grants }
    }

    /// Every plugin id installed.
    pub fn ids(&self) -> Result<Vec<String>, KvError> {
        self.plugins.list_keys("")
    }

    /// Whether a version of any plugin here is file `sha256`.
    pub fn has_file(&self, sha256: &str) -> Result<bool, KvError> {
        for id in self.ids()? {
            if let Some((record, _)) = self.get(&id)?
                && record.versions.values().any(|v| v.sha256 == sha256)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A plugin's record with its stored bytes (for a guarded update).
    pub fn get(&self, id: &str) -> Result<Option<(PluginRecord, Vec<u8>)>, KvError> {
        let Some(raw) = self.plugins.get(id)? else {
            return Ok(None);
        };
        Ok(Some((decode(id, &raw)?, raw)))
    }

    /// Stores `record` if the stored one is still `expected` (`None`:
    /// absent): two operators changing one plugin at once cannot lose
    /// either change silently; the later one gets a conflict.
    pub fn put(
        &self,
        id: &str,
        expected: Option<Vec<u8>>,
        record: &PluginRecord,
    ) -> Result<(), KvError> {
        let value = serde_json::to_vec(record)
            .map_err(|e| KvError::Unavailable(format!("cannot encode the registry: {e}")))?;
        self.plugins.batch(
            &[Precondition {
                key: id.to_string(),
                expected,
            }],
            &[Write::Set {
                key: id.to_string(),
                value,
            }],
        )
    }

    /// Hosts granted to `id` with `plugin grant`.
    pub fn grants(&self, id: &str) -> Result<Vec<String>, KvError> {
        Ok(self
            .grants
            .get(id)?
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default())
    }

    /// Adds a granted pattern (kept sorted and unique).
    pub fn add_grant(&self, id: &str, pattern: &str) -> Result<Vec<String>, KvError> {
        let raw = self.grants.get(id)?;
        let mut list: Vec<String> = raw
            .as_deref()
            .and_then(|r| serde_json::from_slice(r).ok())
            .unwrap_or_default();
        if !list.iter().any(|p| p == pattern) {
            list.push(pattern.to_string());
            list.sort();
        }
        let value = serde_json::to_vec(&list)
            .map_err(|e| KvError::Unavailable(format!("cannot encode the grants: {e}")))?;
        self.grants.batch(
            &[Precondition {
                key: id.to_string(),
                expected: raw,
            }],
            &[Write::Set {
                key: id.to_string(),
                value,
            }],
        )?;
        Ok(list)
    }
}

impl Registry {
    /// The kv-store quota granted to `id` with `plugin grant --kv-...`.
    pub fn kv_grant(&self, id: &str) -> Result<Option<KvRequest>, KvError> {
        Ok(self
            .grants
            .get(&kv_key(id))?
            .and_then(|raw| serde_json::from_slice(&raw).ok()))
    }

    /// Grants `id` a kv-store quota (replacing an earlier one).
    pub fn set_kv_grant(&self, id: &str, quota: &KvRequest) -> Result<(), KvError> {
        let value = serde_json::to_vec(quota)
            .map_err(|e| KvError::Unavailable(format!("cannot encode the grant: {e}")))?;
        self.grants.set(&kv_key(id), &value)
    }
}

/// Plugin ids are `[a-z0-9-]`, so this key never names a plugin's hosts.
fn kv_key(id: &str) -> String {
    format!("{id}#kv")
}

/// A stored record. Hosts before plugin versions stored only the active
/// file's hash (a JSON string): read as one version, active, so nothing
/// installed is lost on upgrade.
fn decode(id: &str, raw: &[u8]) -> Result<PluginRecord, KvError> {
    if let Ok(record) = serde_json::from_slice::<PluginRecord>(raw) {
        return Ok(record);
    }
    let sha256: String = serde_json::from_slice(raw).map_err(|e| {
        KvError::Unavailable(format!("the registry entry of {id:?} is unreadable: {e}"))
    })?;
    let version = "installed".to_string();
    Ok(PluginRecord {
        versions: BTreeMap::from([(
            version.clone(),
            VersionRecord {
                sha256,
                api_version: String::new(),
                requested: Vec::new(),
                signed_by: None,
                installed_at_ms: 0,
                manifest: None,
            },
        )]),
        active: Some(version.clone()),
        previous: None,
        signer: None,
        newest_activated: Some(version),
    })
}
