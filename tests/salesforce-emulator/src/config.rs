//! Configuration of an emulated org: listener, data, connected apps.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::EmulatorError;

/// The scopes a connected app gets when none are configured (those the
/// PBX set-up asks the administrator to select).
pub const DEFAULT_SCOPES: &[&str] = &[
    "full",
    "api",
    "web",
    "openid",
    "id",
    "profile",
    "email",
    "address",
    "phone",
    "refresh_token",
    "offline_access",
];

/// What happens to refresh tokens over time (the connected app's
/// "Refresh Token Policy").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefreshTokenPolicy {
    /// "Refresh token is valid until revoked" (Salesforce's default).
    #[default]
    UntilRevoked,
    /// "Immediately expire refresh token": every refresh fails.
    ImmediatelyExpire,
    /// "Expire refresh token after N": counted from issue.
    ExpireAfter { secs: u64 },
    /// "Expire refresh token if not used for N".
    ExpireIfUnused { secs: u64 },
}

/// A connected app (or external client app) of the org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectedApp {
    pub name: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// Exact-match callback URLs.
    pub callback_urls: Vec<String>,
    /// Scopes the app may grant.
    pub scopes: Vec<String>,
    /// "Require Proof Key for Code Exchange (PKCE)".
    pub pkce_required: bool,
    /// "Require Secret for Web Server Flow".
    pub require_secret: bool,
    /// "Require Secret for Refresh Token Flow".
    pub require_secret_for_refresh: bool,
    /// "Enable Refresh Token Rotation": each refresh answers a new refresh
    /// token and the old one dies.
    pub rotate_refresh_tokens: bool,
    pub refresh_token_policy: RefreshTokenPolicy,
    /// Authorization code lifetime for this app in seconds (the emulator's
    /// default when `None`).
    pub code_lifetime_secs: Option<u64>,
}

impl Default for ConnectedApp {
    fn default() -> ConnectedApp {
        ConnectedApp {
            name: "PBX Integration".into(),
            consumer_key: String::new(),
            consumer_secret: String::new(),
            callback_urls: Vec::new(),
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
            pkce_required: false,
            require_secret: true,
            require_secret_for_refresh: true,
            rotate_refresh_tokens: false,
            refresh_token_policy: RefreshTokenPolicy::UntilRevoked,
            code_lifetime_secs: None,
        }
    }
}

impl ConnectedApp {
    /// An app with a key, a secret and one callback URL; other settings default.
    pub fn new(
        key: impl Into<String>,
        secret: impl Into<String>,
        callback_url: impl Into<String>,
    ) -> ConnectedApp {
        ConnectedApp {
            consumer_key: key.into(),
            consumer_secret: secret.into(),
            callback_urls: vec![callback_url.into()],
            ..ConnectedApp::default()
        }
    }

    /// Parses the `--app KEY:SECRET:CALLBACK_URL` form (split on the first
    /// two colons only: the callback URL has colons of its own).
    pub fn parse_cli(spec: &str) -> Result<ConnectedApp, EmulatorError> {
        let mut parts = spec.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(k), Some(s), Some(cb)) if !k.is_empty() && !s.is_empty() && !cb.is_empty() => {
                Ok(ConnectedApp::new(k, s, cb))
            }
            _ => Err(EmulatorError::Seed(format!(
                "--app expects KEY:SECRET:CALLBACK_URL, got {spec:?}"
            ))),
        }
    }
}

/// Org data to load at start (JSON or TOML). Records are field maps with
/// Salesforce field names; `Id` may be given. Users may carry a `password`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Seed {
    pub org_name: Option<String>,
    pub users: Vec<Map<String, Value>>,
    pub accounts: Vec<Map<String, Value>>,
    pub contacts: Vec<Map<String, Value>>,
    pub leads: Vec<Map<String, Value>>,
    pub tasks: Vec<Map<String, Value>>,
    pub cases: Vec<Map<String, Value>>,
    pub apps: Vec<ConnectedApp>,
    /// The org's API use today at start (`[api_usage] used = 13500,
    /// max = 15000`), e.g. to start near the daily limit.
    pub api_usage: Option<SeedApiUsage>,
    /// The org has Person Accounts (`person_accounts = true`); its
    /// accounts with a `LastName` are person accounts.
    pub person_accounts: bool,
}

/// API requests used today and, if given, the daily limit (else the
/// emulator's `api_daily_limit`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApiUsage {
    pub used: u64,
    pub max: Option<u64>,
}

impl Seed {
    pub fn from_json(text: &str) -> Result<Seed, EmulatorError> {
        serde_json::from_str(text).map_err(|e| EmulatorError::Seed(e.to_string()))
    }

    pub fn from_toml(text: &str) -> Result<Seed, EmulatorError> {
        toml::from_str(text).map_err(|e| EmulatorError::Seed(e.to_string()))
    }

    /// Reads a seed file: TOML when the name ends in `.toml`, else JSON.
    pub fn from_path(path: &Path) -> Result<Seed, EmulatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EmulatorError::Seed(format!("{}: {e}", path.display())))?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            Seed::from_toml(&text)
        } else {
            Seed::from_json(&text)
        }
    }
}

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// HTTPS with a generated CA (default); plain HTTP when false.
    pub tls: bool,
    /// Users of a generated org (the first is `admin@example.org`).
    pub users: usize,
    /// Contacts, leads and accounts of a generated org.
    pub contacts: usize,
    pub leads: usize,
    pub accounts: usize,
    /// Data to load instead of generated contacts/leads/accounts (and users,
    /// when it has some).
    pub seed: Option<Seed>,
    pub apps: Vec<ConnectedApp>,
    /// Password of every generated user (and of seeded users without one).
    pub admin_password: String,
    /// Default authorization code lifetime.
    pub code_lifetime: Duration,
    /// Session inactivity timeout (Salesforce's default: 2 hours).
    pub session_timeout: Duration,
    /// Daily API request limit (`Sforce-Limit-Info` max).
    pub api_daily_limit: u64,
    pub org_name: String,
    /// The org has Person Accounts (so does it when the seed says so).
    pub person_accounts: bool,
}

impl Default for EmulatorConfig {
    fn default() -> EmulatorConfig {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            users: 10,
            contacts: 20,
            leads: 10,
            accounts: 5,
            seed: None,
            apps: Vec::new(),
            admin_password: "emulator".into(),
            code_lifetime: Duration::from_secs(15 * 60),
            session_timeout: Duration::from_secs(2 * 60 * 60),
            api_daily_limit: 100_000,
            org_name: "Emulated Org".into(),
            person_accounts: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_app_splits_on_first_two_colons() {
        let app =
            ConnectedApp::parse_cli("key:sec:https://pbx.example.com:8443/oauth/callback").unwrap();
        assert_eq!(app.consumer_key, "key");
        assert_eq!(app.consumer_secret, "sec");
        assert_eq!(
            app.callback_urls,
            vec!["https://pbx.example.com:8443/oauth/callback".to_string()]
        );
        assert!(ConnectedApp::parse_cli("key:sec").is_err());
        assert!(ConnectedApp::parse_cli("::x").is_err());
    }

    #[test]
    fn seeds_parse_from_json_and_toml() {
        let j = Seed::from_json(r#"{"contacts":[{"LastName":"Doe","Phone":"(415) 555-0100"}],"apps":[{"consumer_key":"k","rotate_refresh_tokens":true}]}"#).unwrap();
        assert_eq!(j.contacts.len(), 1);
        assert!(j.apps[0].rotate_refresh_tokens && j.apps[0].require_secret);
        let t =
            Seed::from_toml("org_name = \"Acme\"\n[[leads]]\nLastName = \"L\"\nCompany = \"C\"\n")
                .unwrap();
        assert_eq!(t.org_name.as_deref(), Some("Acme"));
        assert_eq!(t.leads[0]["Company"], "C");
        assert!(t.api_usage.is_none());
        assert!(Seed::from_json("{").is_err());
        let near = Seed::from_toml("[api_usage]\nused = 13500\nmax = 15000\n").unwrap();
        let u = near.api_usage.unwrap();
        assert_eq!((u.used, u.max), (13_500, Some(15_000)));
        assert!(Seed::from_toml("[api_usage]\nusd = 1\n").is_err());
        assert!(!near.person_accounts);
        assert!(
            Seed::from_toml("person_accounts = true\n")
                .unwrap()
                .person_accounts
        );
    }
}
