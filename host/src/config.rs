//! `pbx-host serve` settings: flags, or the same keys in a TOML file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::journal::JournalLimits;
use crate::outbound::{self, HostPattern};
use crate::runtime::Limits;
use crate::runtime::signature::Trust;
use crate::store::{Quota, RedisTarget, Store, StoreError};

/// The config file's keys (all optional; flags win).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Where the store is: `redb` (default, `DATA_DIR/store.redb`) or a
    /// Redis URL shared by replicas.
    pub store: Option<String>,
    /// Listen address of the portal, admin API and callback.
    pub listen: Option<SocketAddr>,
    /// The PBX's public URL (its FQDN).
    pub public_url: Option<String>,
    /// Extra CA certificates (PEM files) trusted for outbound HTTPS.
    #[serde(default)]
    pub trust_ca: Vec<PathBuf>,
    /// Grants, `PLUGIN_ID=URL_PATTERN`.
    #[serde(default)]
    pub grant: Vec<String>,
    /// Vendor keys trusted for plugin signatures, `KEY_ID=BASE64`.
    #[serde(default)]
    pub trusted_key: Vec<String>,
    /// Refuse plugin files without a trusted vendor signature.
    pub require_signature: Option<bool>,
    /// Per-call deadline in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Memory cap per instance in MiB.
    pub memory_mib: Option<usize>,
    /// Largest outbound response in MiB.
    pub max_response_mib: Option<u64>,
    /// Longest outbound HTTP exchange in milliseconds.
    pub http_timeout_ms: Option<u64>,
    /// kv-store quota per plugin: keys.
    pub kv_max_keys: Option<u64>,
    /// kv-store quota per plugin: MiB.
    pub kv_max_mib: Option<u64>,
    /// Open administrator pages in the system browser too.
    pub system_browser: Option<bool>,
    /// Default region for phone numbers (ISO 3166 alpha-2).
    pub default_region: Option<String>,
    /// The PBX's time zone, an IANA name such as America/Los_Angeles
    /// (default: the machine's).
    pub time_zone: Option<String>,
    /// How often pending call logs are delivered, in milliseconds.
    pub journal_interval_ms: Option<u64>,
    /// Serve HTTPS with this certificate chain (PEM); needs `tls-key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls-cert`.
    pub tls_key: Option<PathBuf>,
    /// A browser session unused this many seconds ends (default 1800).
    pub session_idle_secs: Option<u64>,
    /// A browser session this many seconds old ends (default 43200).
    pub session_max_secs: Option<u64>,
    /// Call events the host's retry queue holds at most.
    pub journal_queue_max: Option<usize>,
    /// Deliveries of one call event at most before it is a dead letter.
    pub journal_max_attempts: Option<u32>,
    /// Seconds a call event stays in the retry queue at most.
    pub journal_max_age_s: Option<u64>,
    /// Dead letters kept at most.
    pub journal_dead_letters_max: Option<usize>,
}

impl FileConfig {
    /// Read a TOML config file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }
}

/// A configuration problem, naming the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Data directory (store, plugins, cache, key, admin file).
    pub data_dir: PathBuf,
    /// Where the store keeps its namespaces.
    pub store: StoreLocation,
    /// Listen address.
    pub listen: SocketAddr,
    /// The PBX's public URL: the Homepage URL until the administrator sets
    /// one (`network::Network`, which composes the Callback URLs).
    pub public_url: Url,
    /// Whether the public URL was given; if not, it follows the bound address.
    pub public_url_given: bool,
    /// PEM bytes of extra trusted CAs.
    pub trust_ca_pem: Vec<Vec<u8>>,
    /// Grants by plugin id.
    pub grants: HashMap<String, Vec<HostPattern>>,
    /// Trusted vendor keys, and whether plugins must be signed.
    pub trust: Trust,
    /// Call limits.
    pub limits: Limits,
    /// Outbound limits.
    pub outbound: outbound::Limits,
    /// Open administrator pages in the system browser.
    pub system_browser: bool,
    /// Default region for phone numbers.
    pub default_region: String,
    /// The PBX's time zone: a call is dated on its day.
    pub time_zone: jiff::tz::TimeZone,
    /// How often the call ticker runs (plugins' pending deliveries, the
    /// host's call-event retry queue).
    pub journal_interval: Duration,
    /// Serve HTTPS with these files; plain HTTP without.
    pub tls: Option<TlsFiles>,
    /// Browser sessions (portal, agents) end after this long unused.
    pub session_idle: Duration,
    /// Browser sessions end this long after they began.
    pub session_max: Duration,
    /// The bounds of the retry queue and the dead letters.
    pub journal_limits: JournalLimits,
}

/// Where the store is (`serve --store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// One embedded redb file in the data directory: the default, nothing
    /// else to run.
    Embedded,
    /// Redis, one node or a cluster, shared by the replicas on it.
    Redis(RedisTarget),
}

impl StoreLocation {
    /// `redb` (or nothing) is the embedded store; anything else must be a
    /// Redis URL.
    pub fn parse(text: Option<&str>) -> Result<StoreLocation, ConfigError> {
        match text.map(str::trim) {
            None | Some("") | Some("redb") => Ok(StoreLocation::Embedded),
            Some(url) => RedisTarget::parse(url)
                .map(StoreLocation::Redis)
                .map_err(|e| ConfigError(format!("store: {e}, or redb for the embedded store"))),
        }
    }

    /// Opens the store in `data_dir` (redb) or on Redis, with the host
    /// key of `data_dir`.
    pub fn open(&self, data_dir: &Path) -> Result<Store, StoreError> {
        match self {
            StoreLocation::Embedded => Store::open(data_dir),
            StoreLocation::Redis(target) => Store::open_redis(target, data_dir),
        }
    }
}

/// The certificate and key files of `serve --tls-cert --tls-key` (read at
/// start by `server::listener`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (PEM), the server's certificate first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl HostConfig {
    /// Validate `file` (with flags already merged into it).
    pub fn from_file(file: FileConfig) -> Result<HostConfig, ConfigError> {
        let journal_limits = journal_limits(&file)?;
        let store = StoreLocation::parse(file.store.as_deref())?;
        let data_dir = file
            .data_dir
            .ok_or_else(|| ConfigError("--data-dir is required".into()))?;
        let listen = file
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let tls = match (file.tls_cert, file.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "--tls-cert and --tls-key go together: give both PEM files to serve HTTPS, or neither".into(),
                ));
            }
        };
        let public_url_given = file.public_url.is_some();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = match file.public_url {
            Some(u) => parse_public_url(&u)?,
            None => parse_public_url(&format!("{scheme}://{listen}"))?,
        };
        let mut trust_ca_pem = Vec::new();
        for path in &file.trust_ca {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError(format!(
                    "cannot read CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            trust_ca_pem.push(pem);
        }
        let mut grants: HashMap<String, Vec<HostPattern>> = HashMap::new();
        for grant in &file.grant {
            let (id, pattern) = parse_grant(grant)?;
            grants.entry(id).or_default().push(pattern);
        }
        let mut limits = Limits::default();
        if let Some(ms) = file.deadline_ms {
            if ms == 0 {
                return Err(ConfigError("deadline-ms must be above 0".into()));
            }
            limits.deadline = Duration::from_millis(ms);
        }
        if let Some(mib) = file.memory_mib {
            limits.memory = mib << 20;
        }
        if let Some(keys) = file.kv_max_keys {
            limits.kv.max_keys = keys;
        }
        if let Some(mib) = file.kv_max_mib {
            limits.kv = Quota {
                max_bytes: mib << 20,
                ..limits.kv
            };
        }
        let mut outbound = outbound::Limits::default();
        if let Some(mib) = file.max_response_mib {
            outbound.max_response_bytes = mib << 20;
        }
        if let Some(ms) = file.http_timeout_ms {
            outbound.max_timeout = Duration::from_millis(ms.max(1));
        }
        let default_region = file.default_region.unwrap_or_else(|| "US".into());
        if default_region.len() != 2 || !default_region.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ConfigError(format!(
                "default-region {default_region:?} must be an ISO 3166 code such as US or DE"
            )));
        }
        let time_zone = match file.time_zone.as_deref().map(str::trim) {
            None | Some("") => jiff::tz::TimeZone::system(),
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| {
                ConfigError(format!(
                    "time-zone {name:?} is unknown ({e}); use an IANA name such as America/Los_Angeles or Europe/Berlin"
                ))
            })?,
        };
        let journal_interval = match file.journal_interval_ms {
            Some(0) => {
                return Err(ConfigError(
                    "journal-interval-ms must be above 0 (default 5000)".into(),
                ));
            }
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_secs(5),
        };
        let session_idle = Duration::from_secs(file.session_idle_secs.unwrap_or(30 * 60));
        let session_max = Duration::from_secs(file.session_max_secs.unwrap_or(12 * 60 * 60));
        if session_idle.is_zero() || session_max.is_zero() {
            return Err(ConfigError(
                "session-idle-secs and session-max-secs must be above 0 (defaults 1800 and 43200)"
                    .into(),
            ));
        }
        let require_signature = file.require_signature.unwrap_or(false);
        if require_signature && file.trusted_key.is_empty() {
            return Err(ConfigError(
                "require-signature needs at least one trusted-key (KEY_ID=BASE64 Ed25519 public key); otherwise no plugin could be installed".into(),
            ));
        }
        let trust = Trust::new(&file.trusted_key, require_signature).map_err(ConfigError)?;
        Ok(HostConfig {
            trust,
            journal_interval,
            journal_limits,
            data_dir,
            store,
            listen,
            public_url,
            public_url_given,
            trust_ca_pem,
            grants,
            limits,
            outbound,
            system_browser: file.system_browser.unwrap_or(false),
            default_region,
            time_zone,
            tls,
            session_idle,
            session_max,
        })
    }

    /// Whether browsers reach the host over https, so cookies get `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// The journal's bounds: the defaults, with what `file` sets (each above 0).
fn journal_limits(file: &FileConfig) -> Result<JournalLimits, ConfigError> {
    let d = JournalLimits::default();
    let above_zero = |name: &str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(ConfigError(format!(
            "{name} must be above 0 (default {default})"
        ))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(JournalLimits {
        queue_max: above_zero(
            "journal-queue-max",
            file.journal_queue_max.map(|n| n as u64),
            d.queue_max as u64,
        )? as usize,
        max_attempts: above_zero(
            "journal-max-attempts",
            file.journal_max_attempts.map(u64::from),
            u64::from(d.max_attempts),
        )?
        .min(u64::from(u32::MAX)) as u32,
        max_age: Duration::from_secs(above_zero(
            "journal-max-age-s",
            file.journal_max_age_s,
            d.max_age.as_secs(),
        )?),
        dead_letters_max: above_zero(
            "journal-dead-letters-max",
            file.journal_dead_letters_max.map(|n| n as u64),
            d.dead_letters_max as u64,
        )? as usize,
    })
}

/// `PLUGIN_ID=URL_PATTERN`.
pub fn parse_grant(grant: &str) -> Result<(String, HostPattern), ConfigError> {
    let (id, pattern) = grant.split_once('=').ok_or_else(|| {
        ConfigError(format!(
            "grant {grant:?} must be PLUGIN_ID=URL_PATTERN, e.g. salesforce=https://*.my.salesforce.com"
        ))
    })?;
    let pattern = pattern
        .parse::<HostPattern>()
        .map_err(|e| ConfigError(format!("grant {grant:?}: {e}")))?;
    Ok((id.trim().to_string(), pattern))
}

fn parse_public_url(input: &str) -> Result<Url, ConfigError> {
    let fix =
        "--public-url must be the PBX's address as browsers reach it, e.g. https://pbx.example.com";
    let url = Url::parse(input).map_err(|e| ConfigError(format!("{input:?}: {e}; {fix}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError(format!(
            "{input:?} is not an http(s) URL; {fix}"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError(format!(
            "{input:?} has a query or fragment; {fix}"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FileConfig {
        FileConfig {
            data_dir: Some("/tmp/x".into()),
            ..FileConfig::default()
        }
    }

    #[test]
    fn the_public_url_is_taken_as_given() {
        let config = HostConfig::from_file(FileConfig {
            public_url: Some("https://pbx.example.com/".into()),
            ..base()
        });
        assert_eq!(
            config.map(|c| c.public_url.to_string()).ok().as_deref(),
            Some("https://pbx.example.com/")
        );
    }

    #[test]
    fn bad_values_name_the_fix() {
        let bad = [
            FileConfig {
                public_url: Some("ftp://x".into()),
                ..base()
            },
            FileConfig {
                grant: vec!["salesforce".into()],
                ..base()
            },
            FileConfig {
                default_region: Some("usa".into()),
                ..base()
            },
            FileConfig {
                data_dir: None,
                ..base()
            },
            FileConfig {
                tls_cert: Some("/tmp/cert.pem".into()),
                ..base()
            },
            FileConfig {
                journal_queue_max: Some(0),
                ..base()
            },
            FileConfig {
                journal_max_attempts: Some(0),
                ..base()
            },
        ];
        for config in bad {
            assert!(HostConfig::from_file(config).is_err());
        }
    }

    #[test]
    fn the_journal_is_bounded_by_default_and_its_bounds_are_settings() {
        let default = HostConfig::from_file(base()).map(|c| c.journal_limits).ok();
        assert_eq!(default, Some(JournalLimits::default()));
        let parsed: Result<FileConfig, _> = toml::from_str(
            "data-dir = \"/d\"\njournal-queue-max = 5\njournal-max-attempts = 3\njournal-max-age-s = 60\njournal-dead-letters-max = 7\n",
        );
        let limits = parsed
            .ok()
            .and_then(|f| HostConfig::from_file(f).ok())
            .map(|c| c.journal_limits);
        assert_eq!(
            limits,
            Some(JournalLimits {
                queue_max: 5,
                max_attempts: 3,
                max_age: Duration::from_secs(60),
                dead_letters_max: 7,
            })
        );
    }

    #[test]
    fn a_toml_file_reads() {
        let parsed: Result<FileConfig, _> = toml::from_str(
            "data-dir = \"/d\"\npublic-url = \"https://pbx\"\ngrant = [\"salesforce=https://*.my.salesforce.com\"]\n",
        );
        assert_eq!(parsed.map(|c| c.grant.len()).ok(), Some(1));
    }
}
