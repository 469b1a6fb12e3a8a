//! What installing, activating and listing plugin versions report: the
//! options an operator gives, the listings `plugin list` shows, and every
//! refusal with a message that names the fix.

use serde::{Deserialize, Serialize};

use super::inspect::InspectError;
use super::manifest::Manifest;
use super::signature;

/// Why installing, activating, rolling back, removing or granting failed.
/// Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file was refused.
    #[error(transparent)]
    Refused(#[from] InspectError),
    /// The file is not the one the operator expected.
    #[error(
        "the file's SHA-256 is {actual}, not the expected {expected}: it is not the file you meant, or it was damaged on the way; download it again"
    )]
    HashMismatch {
        /// What the operator gave.
        expected: String,
        /// What the file has.
        actual: String,
    },
    /// The vendor signature is missing or wrong.
    #[error(transparent)]
    Signature(#[from] signature::SignatureError),
    /// The same version string with other content.
    #[error(
        "{id} {version} is already installed from another file; a vendor ships a new build under a new version (or remove the installed one first with `pbx-host plugin remove {id} {version}`)"
    )]
    VersionClash {
        /// The plugin.
        id: String,
        /// Its version.
        version: String,
    },
    /// No such plugin.
    #[error("no plugin {0:?} is installed; install it with `pbx-host plugin install FILE`")]
    NotInstalled(String),
    /// No such version.
    #[error("{id} has no version {version:?}; installed: {}", installed.join(", "))]
    UnknownVersion {
        /// The plugin.
        id: String,
        /// The version asked for.
        version: String,
        /// What is installed.
        installed: Vec<String>,
    },
    /// The version asks for hosts (or kv-store space) the operator has
    /// not granted.
    #[error(
        "{id} {version} requests {}, which the operator has not granted; it stays installed but inactive: grant with `pbx-host plugin grant {id} PATTERN` (or --kv-keys/--kv-mib), then activate it",
        hosts.join(", ")
    )]
    NeedsGrants {
        /// The plugin.
        id: String,
        /// The version.
        version: String,
        /// The requested patterns no grant covers.
        hosts: Vec<String>,
    },
    /// The active version cannot be removed.
    #[error(
        "{id} {version} is the active version; activate another version (or roll back) before removing it"
    )]
    ActiveVersion {
        /// The plugin.
        id: String,
        /// The version.
        version: String,
    },
    /// Nothing to roll back to.
    #[error("{0} has no previous version to roll back to")]
    NoPrevious(String),
    /// A grant that is no pattern.
    #[error("{0}")]
    BadGrant(String),
    /// The new version's `migrate` export failed; the old one stays active.
    #[error("{id} {version} was not activated: its migration from {from} failed: {reason}")]
    Migration {
        /// The plugin.
        id: String,
        /// The version that was to become active.
        version: String,
        /// The version active before.
        from: String,
        /// What the plugin said.
        reason: String,
    },
    /// The file is signed by another key than the one the plugin id is
    /// pinned to (or not signed at all).
    #[error(
        "{id} is pinned to vendor key {pinned:?}, which signed its first version, but this file is {}; a file from another vendor must not take over {id}'s stored data. If the vendor really changed its key, re-pin explicitly: `pbx-host plugin install FILE --repin` (API: POST /api/plugins?repin=yes)",
        match signer { Some(key) => format!("signed by key {key:?}"), None => "not signed".to_string() }
    )]
    SignerChanged {
        /// The plugin.
        id: String,
        /// The key id it is pinned to.
        pinned: String,
        /// The key id that signed the file, if any.
        signer: Option<String>,
    },
    /// Activating a version older than the newest one activated.
    #[error(
        "{id} {version} is older than {newest}, which was active before: a downgrade can bring back fixed flaws, so it is refused; if you mean it, allow it explicitly: `pbx-host plugin activate {id} {version} --allow-downgrade` (API: \"allow_downgrade\": true), or `plugin rollback {id}`"
    )]
    Downgrade {
        /// The plugin.
        id: String,
        /// The version asked for.
        version: String,
        /// The newest version activated so far.
        newest: String,
    },
    /// Another change to the same plugin came first.
    #[error(
        "{0} was changed by someone else at the same time; look at `pbx-host plugin list` and try again"
    )]
    Conflict(String),
    /// Compilation or linking failed.
    #[error("the plugin cannot be loaded: {0}")]
    Load(String),
    /// Disk or store failure.
    #[error("the plugin could not be stored: {0}")]
    Storage(String),
}

impl From<crate::store::KvError> for InstallError {
    fn from(e: crate::store::KvError) -> Self {
        match e {
            crate::store::KvError::Conflict(key) => InstallError::Conflict(key),
            other => InstallError::Storage(other.to_string()),
        }
    }
}

/// Whether `install` makes the new version active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activate {
    /// Only when no version of the plugin is active yet (the default).
    #[default]
    IfNoneActive,
    /// Yes (`--activate`), if the operator's grants cover what it requests.
    Yes,
    /// No: installed and verified, activated later.
    No,
}

/// How to install a file.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The SHA-256 the operator expects (hex), checked before anything else.
    pub sha256: Option<String>,
    /// Whether to activate it.
    pub activate: Activate,
    /// Accept a file signed by another key than the one the plugin id is
    /// pinned to, and pin the id to that key (`--repin`).
    pub repin: bool,
    /// Allow activating it though it is older than the newest version
    /// activated (`--allow-downgrade`).
    pub allow_downgrade: bool,
}

/// One version of an installed plugin, as `plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionListing {
    /// The plugin's own version.
    pub version: String,
    /// SHA-256 of its file.
    pub sha256: String,
    /// The pbx:crm version it uses.
    pub api_version: String,
    /// Hosts its manifest requests.
    pub requested: Vec<String>,
    /// The vendor key that signed it.
    pub signed_by: Option<String>,
    /// Whether calls go to it.
    pub active: bool,
    /// Requested hosts no grant covers; it cannot be activated until they are.
    pub waiting_for_grants: Vec<String>,
}

/// An installed plugin with its versions, as `plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginListing {
    /// The plugin id.
    pub id: String,
    /// The active version's manifest, if one is active.
    pub manifest: Option<Manifest>,
    /// The active version.
    pub active: Option<String>,
    /// The version `plugin rollback` goes back to.
    pub previous: Option<String>,
    /// Hosts granted (configuration and `plugin grant`).
    pub granted: Vec<String>,
    /// Its kv-store quota: keys.
    pub kv_max_keys: u64,
    /// Its kv-store quota: bytes.
    pub kv_max_bytes: u64,
    /// Every installed version.
    pub versions: Vec<VersionListing>,
    /// The vendor key id the plugin id is pinned to, if any.
    #[serde(default)]
    pub pinned_key: Option<String>,
    /// The newest version ever activated (older ones need an explicit
    /// downgrade).
    #[serde(default)]
    pub newest_activated: Option<String>,
}

/// What `install` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallReport {
    /// The installed version (as the active plugin info, whether or not it
    /// became active).
    #[serde(flatten)]
    pub plugin: InstalledPlugin,
    /// Whether it is now the active version.
    pub activated: bool,
    /// Hosts its manifest requests (as `requested` in the listing), so the
    /// administrator sees them whether or not it became active.
    pub requested: Vec<String>,
    /// Requested hosts no grant covers (why it was not activated).
    pub waiting_for_grants: Vec<String>,
    /// The vendor key that signed it.
    pub signed_by: Option<String>,
}

/// What an activation or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activation {
    /// The plugin.
    pub id: String,
    /// The version now active.
    pub active: String,
    /// The version active before, if any.
    pub previous: Option<String>,
    /// Whether the version's `migrate` export ran.
    pub migrated: bool,
    /// How long the switch took (loading the version, migrating, swapping),
    /// in microseconds.
    pub swap_us: u64,
}

/// An installed plugin as the operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstalledPlugin {
    /// Its manifest.
    pub manifest: Manifest,
    /// SHA-256 of the component file, hex.
    pub sha256: String,
    /// The pbx:crm version it uses.
    pub api_version: String,
    /// Hosts the operator granted it.
    pub granted: Vec<String>,
}
