//! The plugin manifest: who the plugin is and what it asks for. It travels
//! inside the component as the custom section `pbx-crm-manifest` (JSON), so a
//! vendor ships one file and the host can't be handed a mismatched pair.

use serde::{Deserialize, Serialize};

use crate::outbound::HostPattern;

/// The custom section's name.
pub const SECTION: &str = "pbx-crm-manifest";

/// What the plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Stable id: the kv-store namespace and the grant key (`salesforce`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Who ships it.
    pub vendor: String,
    /// The WIT package it was built against, e.g. `pbx:crm@0.1.0`.
    pub api: String,
    /// The hosts it needs to reach, as `scheme://host[:port]` patterns.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// kv-store space it needs beyond the host's default quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvRequest>,
}

/// A kv-store quota a manifest requests or an operator grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvRequest {
    /// Keys.
    pub max_keys: u64,
    /// Key and value bytes, in MiB.
    pub max_mib: u64,
}

impl KvRequest {
    /// As a store quota.
    pub fn quota(&self) -> crate::store::Quota {
        crate::store::Quota {
            max_keys: self.max_keys,
            max_bytes: self.max_mib.saturating_mul(1 << 20),
        }
    }

    /// Whether `quota` allows at least this much.
    pub fn fits(&self, quota: crate::store::Quota) -> bool {
        self.max_keys <= quota.max_keys && self.max_mib.saturating_mul(1 << 20) <= quota.max_bytes
    }
}

impl std::fmt::Display for KvRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kv-store {} keys, {} MiB", self.max_keys, self.max_mib)
    }
}

/// Why a manifest is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// No manifest section.
    #[error(
        "the component carries no `{SECTION}` custom section; a PBX CRM plugin must embed its manifest (see docs/ARCHITECTURE.md, \"Manifest\")"
    )]
    Missing,
    /// Not JSON of the right shape.
    #[error("the plugin manifest is not valid: {0}")]
    Malformed(String),
    /// A field breaks a rule.
    #[error("the plugin manifest's {field} is not valid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: String,
    },
}

impl Manifest {
    /// Parse and validate the section's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.id.starts_with('-');
        if !id_ok {
            return Err(ManifestError::Invalid {
                field: "id",
                reason: format!(
                    "{:?} must be 1-64 characters of a-z, 0-9 and '-', not starting with '-'",
                    self.id
                ),
            });
        }
        for (field, value) in [
            ("name", &self.name),
            ("version", &self.version),
            ("vendor", &self.vendor),
        ] {
            if value.trim().is_empty() || value.len() > 200 {
                return Err(ManifestError::Invalid {
                    field,
                    reason: "must be 1-200 characters".into(),
                });
            }
        }
        if let Some(kv) = &self.kv
            && (kv.max_keys == 0 || kv.max_mib == 0)
        {
            return Err(ManifestError::Invalid {
                field: "kv",
                reason: "max_keys and max_mib must be above 0".into(),
            });
        }
        for host in &self.hosts {
            host.parse::<HostPattern>()
                .map_err(|e| ManifestError::Invalid {
                    field: "hosts",
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// The requested hosts as patterns (validated at parse time).
    pub fn host_patterns(&self) -> Vec<HostPattern> {
        self.hosts.iter().filter_map(|h| h.parse().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, hosts: &[&str]) -> String {
        serde_json::json!({
            "id": id, "name": "X", "version": "1.0.0", "vendor": "V",
            "api": "pbx:crm@0.1.0", "hosts": hosts,
        })
        .to_string()
    }

    #[test]
    fn a_good_manifest_parses() {
        let m =
            Manifest::parse(manifest("salesforce", &["https://*.my.salesforce.com"]).as_bytes());
        assert_eq!(m.map(|m| m.host_patterns().len()), Ok(1));
    }

    #[test]
    fn bad_ids_and_hosts_are_refused_with_the_field() {
        for (id, hosts) in [
            ("Sales Force", vec![]),
            ("", vec![]),
            ("ok", vec!["ftp://x"]),
        ] {
            let err = Manifest::parse(manifest(id, &hosts).as_bytes());
            assert!(
                matches!(err, Err(ManifestError::Invalid { .. })),
                "{id}: {err:?}"
            );
        }
        assert!(matches!(
            Manifest::parse(b"{\"id\":1}"),
            Err(ManifestError::Malformed(_))
        ));
    }
}
