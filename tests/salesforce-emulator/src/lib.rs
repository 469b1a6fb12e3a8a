//! A Salesforce org emulator over HTTPS, for end-to-end tests of
//! Salesforce integrations. Real clients (jsforce, simple-salesforce)
//! work against it unchanged.
//!
//! It speaks the OAuth 2.0 web-server flow (HTML login and consent pages,
//! PKCE, single-use expiring codes, refresh with optional rotation,
//! revoke, identity URL, userinfo, OpenID discovery) and the REST API
//! under `/services/data/vNN.N/` (SOQL and SOSL subsets with paging,
//! sobjects create/read/update/describe with Salesforce's validation
//! errors, composite, `Sforce-Limit-Info`). Faults can be switched on at
//! run time ([`Faults`], or `POST /__admin/faults`), and the org's state
//! can be inspected ([`Emulator::tasks`], `GET /__admin/state`, ...).
//!
//! There is one host: the login host is also the instance host, so the
//! token response's `instance_url` and `id` use [`Emulator::base_url`].
//!
//! # Using it from tests
//!
//! From async code (a tokio runtime; a multi-thread runtime is best if
//! the test also blocks):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use salesforce_emulator::{ConnectedApp, Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig {
//!     apps: vec![ConnectedApp::new("key", "secret", "https://pbx.example.com/oauth/callback")],
//!     ..EmulatorConfig::default()
//! })
//! .await?;
//! let ca_pem = emu.ca_cert_pem(); // trust this in the client
//! emu.faults().expire_sessions();
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! From sync code (plain `#[test]`, or a test that blocks on child
//! processes): [`Emulator::start_blocking`] runs the server on its own
//! runtime; stop it with [`Emulator::shutdown_blocking`] or by dropping it.
//!
//! ```no_run
//! use salesforce_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start_blocking(EmulatorConfig::default()).unwrap();
//! println!("{}", emu.base_url());
//! emu.shutdown_blocking();
//! ```
//!
//! Do not call [`Emulator::start`] on a current-thread runtime whose
//! thread then blocks (e.g. waiting for a child process): the server
//! would never run. Use `start_blocking` there.

mod admin;
mod config;
mod control;
mod error;
mod generate;
mod http;
mod id_token;
pub mod ids;
mod oauth;
mod pages;
pub mod phone;
mod rest;
pub mod schema;
mod server;
pub mod soql;
pub mod sosl;
mod state;
pub mod store;
/// Date-time text; the kit's, re-exported where it always was.
pub use emulator_kit::time;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use emulator_kit::server::{self as kit, CaName, Server};
use serde_json::{Map, Value};

pub use config::{
    ConnectedApp, DEFAULT_SCOPES, EmulatorConfig, RefreshTokenPolicy, Seed, SeedApiUsage,
};
pub use control::{ApiUsageSpec, AppUpdate, FailSpec, FaultRequest, Faults, NewUser};
pub use error::{ApiError, EmulatorError};
pub use oauth::{TokenResponse, pkce_challenge, signature};
pub use rest::CURRENT_VERSION;
pub use state::{AppTokenStats, TokenStats};

use state::{ApiUsage, AuthState, Cursors, FaultState, Settings, Shared};

/// A running emulated org.
///
/// Dropping it stops the server (without waiting); prefer
/// [`Emulator::shutdown`] / [`Emulator::shutdown_blocking`].
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    faults: Faults,
    server: Server,
}

/// Names the test CA so a client's certificate error says whose it is.
const CA: CaName = CaName {
    common_name: "Salesforce Emulator Test CA",
    organization: "salesforce-emulator",
};

impl Emulator {
    /// Starts a server on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let bound = kit::bind(config.listen, config.tls.then_some(CA))
            .await
            .map_err(EmulatorError::from)?;
        let base_url = bound.base_url().to_string();

        let cfg = config.clone();
        let (org, passwords) =
            tokio::task::spawn_blocking(move || generate::build_org(&cfg)).await??;
        let mut auth = AuthState {
            passwords,
            ..AuthState::default()
        };
        let seed_apps = config
            .seed
            .as_ref()
            .map(|s| s.apps.clone())
            .unwrap_or_default();
        for app in config.apps.iter().chain(seed_apps.iter()) {
            auth.apps.insert(app.consumer_key.clone(), app.clone());
        }
        let seed_usage = config.seed.as_ref().and_then(|s| s.api_usage);
        let shared = Arc::new(Shared {
            base_url,
            tls: config.tls,
            org: RwLock::new(org),
            auth: Mutex::new(auth),
            faults: FaultState {
                fail_status: AtomicU32::new(503),
                search_lag_ms: AtomicU64::new(0),
                ..FaultState::default()
            },
            requests: Mutex::new(BTreeMap::new()),
            api: Mutex::new(ApiUsage {
                used: seed_usage.map_or(0, |u| u.used),
                max: seed_usage
                    .and_then(|u| u.max)
                    .unwrap_or(config.api_daily_limit),
                day: time::now_ms().div_euclid(86_400_000),
            }),
            cursors: Mutex::new(Cursors::default()),
            settings: RwLock::new(Settings {
                code_lifetime: config.code_lifetime,
                session_timeout: config.session_timeout,
                admin_password: config.admin_password.clone(),
            }),
        });
        let server = bound.serve({
            let shared = shared.clone();
            move |req| server::handle(shared.clone(), req)
        });
        Ok(Emulator {
            faults: Faults {
                shared: shared.clone(),
            },
            shared,
            server,
        })
    }

    /// Starts a server on a runtime of its own (for sync code). Must not
    /// be called from inside an async context.
    pub fn start_blocking(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let rt = kit::own_runtime("salesforce-emulator")?;
        let mut emu = rt.block_on(Emulator::start(config))?;
        emu.server.keep_runtime(rt);
        Ok(emu)
    }

    /// The base URL, e.g. `https://127.0.0.1:PORT` (login and instance URL).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The PEM of the CA that signed the server certificate (empty
    /// without TLS).
    pub fn ca_cert_pem(&self) -> String {
        self.server.ca_cert_pem().to_string()
    }

    /// The org id (`00D...`).
    pub fn org_id(&self) -> String {
        state::read(&self.shared.org).org_id.clone()
    }

    /// Fault switches.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Takes the org off the network: the listening socket closes and open
    /// connections are cut, so clients get "connection refused" until
    /// [`Emulator::come_back`]. Returns once that is in effect.
    pub async fn go_down(&self) {
        self.server.set_online(false).await;
    }

    /// Listens on the same address again after [`Emulator::go_down`];
    /// returns once connections are accepted.
    pub async fn come_back(&self) {
        self.server.set_online(true).await;
    }

    /// Shorthand for `faults().expire_sessions()`.
    pub fn expire_sessions(&self) {
        self.faults.expire_sessions();
    }

    /// Shorthand for `faults().revoke_refresh_tokens()`.
    pub fn revoke_refresh_tokens(&self) {
        self.faults.revoke_refresh_tokens();
    }

    /// Every Task, as the REST API shows records (all fields).
    pub fn tasks(&self) -> Vec<Value> {
        self.shared.records("Task")
    }

    pub fn contacts(&self) -> Vec<Value> {
        self.shared.records("Contact")
    }

    pub fn leads(&self) -> Vec<Value> {
        self.shared.records("Lead")
    }

    pub fn accounts(&self) -> Vec<Value> {
        self.shared.records("Account")
    }

    /// Every Case.
    pub fn cases(&self) -> Vec<Value> {
        self.shared.records("Case")
    }

    pub fn users(&self) -> Vec<Value> {
        self.shared.records("User")
    }

    /// Token endpoint counters (grants, refreshes, revocations), in total
    /// and per connected app.
    pub fn token_stats(&self) -> TokenStats {
        self.shared.token_stats()
    }

    /// Every live access and refresh token, so tests can search logs and
    /// pages for leaks.
    pub fn live_tokens(&self) -> Vec<String> {
        self.shared.live_tokens()
    }

    /// How many live access and refresh tokens `user_id` has (0 once
    /// every token of theirs is revoked or expired).
    pub fn live_tokens_of(&self, user_id: &str) -> usize {
        self.shared.live_tokens_of(user_id)
    }

    /// Requests by endpoint, e.g. `"GET query"`, `"POST sobjects/Task"`,
    /// `"POST oauth2/token"`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.request_counts()
    }

    /// API calls used today and the daily maximum.
    pub fn api_usage(&self) -> (u64, u64) {
        let api = state::lock(&self.shared.api);
        (api.used, api.max)
    }

    /// Adds an active user; returns its id.
    pub fn add_user(&self, user: NewUser) -> Result<String, EmulatorError> {
        self.shared.add_user(&user)
    }

    /// Deactivates a user (it can no longer log in or refresh).
    pub fn deactivate_user(&self, id: &str) -> Result<(), EmulatorError> {
        self.shared.set_user_active(id, false)
    }

    /// Reactivates a user.
    pub fn activate_user(&self, id: &str) -> Result<(), EmulatorError> {
        self.shared.set_user_active(id, true)
    }

    /// Changes a user's fields (`{"FirstName": "Ann"}`, `{"UserType":
    /// "CsnOnly"}`, ...), bumping its `SystemModstamp` as Salesforce does.
    pub fn update_user(
        &self,
        id: &str,
        fields: serde_json::Map<String, Value>,
    ) -> Result<(), EmulatorError> {
        self.shared.update_user(id, &fields)
    }

    /// Registers (or replaces) a connected app.
    pub fn add_app(&self, app: ConnectedApp) {
        self.shared.add_app(app);
    }

    /// Changes a connected app's settings; answers the new settings.
    pub fn update_app(
        &self,
        consumer_key: &str,
        update: AppUpdate,
    ) -> Result<ConnectedApp, EmulatorError> {
        self.shared.update_app(consumer_key, &update)
    }

    /// Turns refresh-token rotation on or off.
    pub fn set_refresh_token_rotation(
        &self,
        consumer_key: &str,
        on: bool,
    ) -> Result<(), EmulatorError> {
        self.update_app(
            consumer_key,
            AppUpdate {
                rotate_refresh_tokens: Some(on),
                ..AppUpdate::default()
            },
        )
        .map(drop)
    }

    /// Requires PKCE or not.
    pub fn set_pkce_required(&self, consumer_key: &str, on: bool) -> Result<(), EmulatorError> {
        self.update_app(
            consumer_key,
            AppUpdate {
                pkce_required: Some(on),
                ..AppUpdate::default()
            },
        )
        .map(drop)
    }

    /// Sets the authorization code lifetime of an app.
    pub fn set_code_lifetime(
        &self,
        consumer_key: &str,
        lifetime: std::time::Duration,
    ) -> Result<(), EmulatorError> {
        let update = AppUpdate {
            code_lifetime_secs: Some(lifetime.as_secs()),
            ..AppUpdate::default()
        };
        self.update_app(consumer_key, update).map(drop)
    }

    /// Sets the refresh token policy of an app.
    pub fn set_refresh_token_policy(
        &self,
        consumer_key: &str,
        policy: RefreshTokenPolicy,
    ) -> Result<(), EmulatorError> {
        self.update_app(
            consumer_key,
            AppUpdate {
                refresh_token_policy: Some(policy),
                ..AppUpdate::default()
            },
        )
        .map(drop)
    }

    /// Issues tokens for a user of an app as if the web-server flow had run.
    pub fn issue_token(
        &self,
        consumer_key: &str,
        username: &str,
    ) -> Result<TokenResponse, EmulatorError> {
        self.shared.issue_token(consumer_key, username)
    }

    /// Creates a record (any sObject) with system privileges, e.g. a
    /// Contact for a caller. Honors the search-lag fault.
    pub fn insert(
        &self,
        object: &str,
        fields: Map<String, Value>,
    ) -> Result<String, EmulatorError> {
        self.shared.insert_record(object, &fields)
    }

    /// Turns the org's Person Accounts on or off (`POST /__admin/org
    /// {"person_accounts": true}`).
    pub fn set_person_accounts(&self, on: bool) {
        self.shared.set_person_accounts(on);
    }

    /// The admin summary (`GET /__admin/state`).
    pub fn state(&self) -> Value {
        self.shared.summary()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Stops a server started with [`Emulator::start_blocking`] and waits.
    pub fn shutdown_blocking(self) {
        self.server.shutdown_blocking();
    }
}
