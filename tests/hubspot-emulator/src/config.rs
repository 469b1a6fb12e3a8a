//! How to start an emulated HubSpot account: listener, apps, users, limits.

use std::net::SocketAddr;
use std::time::Duration;

/// The scopes an app gets when none are configured: what a PBX
/// integration reads and writes.
pub const DEFAULT_SCOPES: &[&str] = &[
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.owners.read",
];

/// A public app (OAuth client) installed on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub app_id: u64,
    pub client_id: String,
    pub client_secret: String,
    /// Redirect URLs registered for the app (exact match).
    pub redirect_uris: Vec<String>,
    /// Required scopes: the authorize URL's `scope` must name only these
    /// (and `oauth`-like ones the app has).
    pub scopes: Vec<String>,
    /// Scopes the authorize URL may ask for in `optional_scope`.
    pub optional_scopes: Vec<String>,
}

impl App {
    /// An app with one redirect URL and [`DEFAULT_SCOPES`].
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> App {
        App {
            app_id: 1_000_001,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: vec![redirect_uri.into()],
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
            optional_scopes: Vec::new(),
        }
    }
}

/// A user of the account who can log in on the consent page. Every user
/// is also a CRM owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub email: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
}

impl User {
    pub fn new(email: impl Into<String>, password: impl Into<String>) -> User {
        User {
            email: email.into(),
            password: password.into(),
            first_name: "Ada".into(),
            last_name: "Admin".into(),
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
    /// The account ("portal") id and domain the token info reports.
    pub hub_id: u64,
    pub hub_domain: String,
    pub apps: Vec<App>,
    /// Users (the first is `admin@example.com` / `emulator` by default).
    pub users: Vec<User>,
    /// Requests allowed per rolling 10 seconds (HubSpot: 110 for a public
    /// app on most accounts).
    pub rate_limit_per_10s: u32,
    /// Searches allowed per second, on top of the general budget (HubSpot
    /// documents a per-second search limit); `None`: none of their own.
    pub search_rate_per_second: Option<u32>,
    /// Requests allowed per day, reported in the Daily headers. HubSpot
    /// has none for OAuth apps (and sends no Daily headers to them), so
    /// `None` by default; private apps have one.
    pub daily_limit: Option<u64>,
    /// Lifetime of authorization codes.
    pub code_lifetime: Duration,
    /// Lifetime of access tokens (HubSpot: 30 minutes).
    pub access_token_lifetime: Duration,
    /// New records become searchable only after this long (HubSpot's
    /// search index is eventually consistent).
    pub search_lag: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> EmulatorConfig {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            hub_id: 62_515_001,
            hub_domain: "emulated.hubspot.example".into(),
            apps: Vec::new(),
            users: vec![User::new("admin@example.com", "emulator")],
            rate_limit_per_10s: 110,
            search_rate_per_second: None,
            daily_limit: None,
            code_lifetime: Duration::from_secs(5 * 60),
            access_token_lifetime: Duration::from_secs(30 * 60),
            search_lag: Duration::ZERO,
        }
    }
}
