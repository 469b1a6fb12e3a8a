//! A HubSpot account emulator over HTTPS, for end-to-end tests of HubSpot
//! integrations. HubSpot's official clients (`hubspot-api-client` on PyPI,
//! `@hubspot/api-client` on npm) work against it unchanged.
//!
//! It speaks HubSpot's OAuth 2.0 (an install page with a login form,
//! single-use expiring codes, `POST /oauth/v1/token`, token information,
//! refresh-token revocation, 30-minute access tokens), the owners API, the
//! CRM objects API for contacts, companies and calls (CRUD, batch read and
//! create, search with filter groups and an optional index lag), v4
//! associations, and HubSpot's rate limits (`X-HubSpot-RateLimit-*`
//! headers, 429 with `RATE_LIMITS`). See `docs/HUBSPOT.md`.
//!
//! ```no_run
//! use hubspot_emulator::{App, Emulator, EmulatorConfig};
//! let emu = Emulator::start_blocking(EmulatorConfig {
//!     apps: vec![App::new("id", "secret", "https://pbx.example.com/oauth/callback")],
//!     ..EmulatorConfig::default()
//! })
//! .unwrap();
//! let ca_pem = emu.ca_cert_pem(); // trust this in the client
//! emu.advance_clock(std::time::Duration::from_secs(1801)); // tokens expire
//! emu.shutdown_blocking();
//! ```
//!
//! As with the Salesforce emulator, do not call [`Emulator::start`] on a
//! current-thread runtime whose thread then blocks; use
//! [`Emulator::start_blocking`] there.

mod config;
mod crm;
mod error;
mod http;
mod oauth;
mod server;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emulator_kit::server::{self as kit, CaName, Server};
use serde_json::{Map, Value};

pub use config::{App, DEFAULT_SCOPES, EmulatorConfig, User};
pub use error::{EmulatorError, HsError};
pub use oauth::TokenResponse;
pub use state::TokenStats;

use state::{Account, Auth, Crm, FaultState, ObjType, Owner, RateState, Settings, Shared, lock};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A running emulated HubSpot account.
///
/// Dropping it stops the server (without waiting); prefer
/// [`Emulator::shutdown`] / [`Emulator::shutdown_blocking`].
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    server: Server,
}

/// Names the test CA so a client's certificate error says whose it is.
const CA: CaName = CaName {
    common_name: "HubSpot Emulator Test CA",
    organization: "hubspot-emulator",
};

impl Emulator {
    /// Starts a server on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let bound = kit::bind(config.listen, config.tls.then_some(CA))
            .await
            .map_err(EmulatorError::from)?;
        let shared = Arc::new(Shared {
            base_url: bound.base_url().to_string(),
            hub_id: config.hub_id,
            hub_domain: config.hub_domain.clone(),
            clock_offset_ms: AtomicI64::new(0),
            crm: Mutex::new(Crm {
                next_id: 1000,
                ..Crm::default()
            }),
            auth: Mutex::new(Auth::default()),
            faults: FaultState {
                fail_status: AtomicU32::new(500),
                ..FaultState::default()
            },
            rate: Mutex::new(RateState {
                max_per_10s: config.rate_limit_per_10s,
                daily_max: config.daily_limit,
                search_per_second: config.search_rate_per_second,
                ..RateState::default()
            }),
            requests: Mutex::new(BTreeMap::new()),
            settings: Mutex::new(Settings {
                code_lifetime_ms: ms(config.code_lifetime),
                access_token_lifetime_ms: ms(config.access_token_lifetime),
                search_lag_ms: ms(config.search_lag),
            }),
        });
        // The account is complete before the first request is served.
        for app in config.apps {
            add_app(&shared, app);
        }
        for user in config.users {
            add_user(&shared, user);
        }
        let server = bound.serve({
            let shared = shared.clone();
            move |req| server::handle(shared.clone(), req)
        });
        Ok(Emulator { shared, server })
    }

    /// Starts a server on a runtime of its own (for sync code). Must not
    /// be called from inside an async context.
    pub fn start_blocking(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let rt = kit::own_runtime("hubspot-emulator")?;
        let mut emu = rt.block_on(Emulator::start(config))?;
        emu.server.keep_runtime(rt);
        Ok(emu)
    }

    /// The base URL, e.g. `https://127.0.0.1:PORT` (what `api.hubapi.com`
    /// and `app.hubspot.com` are in production).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The PEM of the CA that signed the server certificate (empty
    /// without TLS).
    pub fn ca_cert_pem(&self) -> String {
        self.server.ca_cert_pem().to_string()
    }

    pub fn hub_id(&self) -> u64 {
        self.shared.hub_id
    }

    // ---- accounts, apps, tokens ----

    /// Installs (or replaces) an app.
    pub fn add_app(&self, app: App) {
        add_app(&self.shared, app);
    }

    /// Adds a user who can log in; it is also an owner. Answers the
    /// owner id.
    pub fn add_user(&self, user: User) -> String {
        add_user(&self.shared, user)
    }

    /// Adds an owner (a user who cannot log in here); answers its id.
    pub fn add_owner(&self, email: &str, first_name: &str, last_name: &str) -> String {
        add_owner(&self.shared, email, first_name, last_name)
    }

    /// Archives (deactivates) an owner.
    pub fn archive_owner(&self, id: &str) -> Result<(), EmulatorError> {
        let mut crm = lock(&self.shared.crm);
        let o = crm
            .owners
            .iter_mut()
            .find(|o| o.id.to_string() == id)
            .ok_or_else(|| EmulatorError::UnknownUser(id.to_string()))?;
        o.archived = true;
        Ok(())
    }

    /// Every owner, as the owners API shows them (archived ones too).
    pub fn owners(&self) -> Vec<Value> {
        lock(&self.shared.crm)
            .owners
            .iter()
            .map(Owner::to_json)
            .collect()
    }

    /// Issues tokens for a user of an app as if the install flow had run,
    /// with the app's scopes (or `scopes` when given).
    pub fn issue_token(
        &self,
        client_id: &str,
        email: &str,
        scopes: Option<&[&str]>,
    ) -> Result<TokenResponse, EmulatorError> {
        let (app_scopes, user_id) = {
            let auth = lock(&self.shared.auth);
            let app = auth
                .apps
                .get(client_id)
                .ok_or_else(|| EmulatorError::UnknownApp(client_id.to_string()))?;
            let user = auth
                .accounts
                .iter()
                .find(|a| a.user.email.eq_ignore_ascii_case(email))
                .ok_or_else(|| EmulatorError::UnknownUser(email.to_string()))?;
            (app.scopes.clone(), user.user_id)
        };
        let scopes: Vec<String> = match scopes {
            Some(s) => s.iter().map(|s| s.to_string()).collect(),
            None => app_scopes,
        };
        Ok(oauth::issue(&self.shared, client_id, user_id, &scopes))
    }

    /// Token endpoint counters.
    pub fn token_stats(&self) -> TokenStats {
        lock(&self.shared.auth).stats
    }

    /// Every access token dies now (refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        let now = self.shared.now_ms();
        for t in lock(&self.shared.auth).access.values_mut() {
            t.expires_ms = t.expires_ms.min(now);
        }
    }

    /// Every refresh token is revoked.
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.shared.auth).refresh.clear();
    }

    /// Moves the emulator's clock forward: tokens and codes expire, the
    /// rate window rolls and the search index catches up as if that much
    /// time had passed.
    pub fn advance_clock(&self, d: Duration) {
        self.shared
            .clock_offset_ms
            .fetch_add(ms(d), Ordering::SeqCst);
    }

    /// The emulator's now (epoch milliseconds).
    pub fn now_ms(&self) -> i64 {
        self.shared.now_ms()
    }

    /// Sets the authorization code lifetime.
    pub fn set_code_lifetime(&self, d: Duration) {
        lock(&self.shared.settings).code_lifetime_ms = ms(d);
    }

    // ---- CRM data ----

    /// Creates a record with system privileges (`"contacts"`,
    /// `"companies"`, `"calls"`); answers its id. Honors the search lag.
    pub fn insert(
        &self,
        object_type: &str,
        properties: &[(&str, &str)],
    ) -> Result<String, EmulatorError> {
        let kind = ObjType::parse(object_type)
            .ok_or_else(|| EmulatorError::UnknownType(object_type.to_string()))?;
        let props = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut crm = lock(&self.shared.crm);
        crm::insert(&self.shared, &mut crm, kind, props, &[])
            .map(|id| id.to_string())
            .map_err(|e| EmulatorError::Record(e.body.to_string()))
    }

    /// Associates two records with the default association type.
    pub fn associate(
        &self,
        from_type: &str,
        from_id: &str,
        to_type: &str,
        to_id: &str,
    ) -> Result<(), EmulatorError> {
        let parse = |t: &str| ObjType::parse(t).ok_or_else(|| EmulatorError::UnknownType(t.into()));
        let id = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| EmulatorError::Record(format!("bad id {s}")))
        };
        let mut crm = lock(&self.shared.crm);
        crm::associate(
            &mut crm,
            parse(from_type)?,
            id(from_id)?,
            parse(to_type)?,
            id(to_id)?,
        )
        .map(drop)
        .map_err(|e| EmulatorError::Record(e.body.to_string()))
    }

    /// Every live record of a type with all its properties.
    pub fn records(&self, object_type: &str) -> Vec<Value> {
        let Some(kind) = ObjType::parse(object_type) else {
            return Vec::new();
        };
        let crm = lock(&self.shared.crm);
        crm.records
            .values()
            .filter(|r| r.kind == kind && !r.archived)
            .map(|r| {
                let names: Vec<String> = r.props.keys().cloned().collect();
                r.to_json(&names)
            })
            .collect()
    }

    /// Every call logged (all properties).
    pub fn calls(&self) -> Vec<Value> {
        self.records("calls")
    }

    pub fn contacts(&self) -> Vec<Value> {
        self.records("contacts")
    }

    pub fn companies(&self) -> Vec<Value> {
        self.records("companies")
    }

    /// Ids of the records of `to_type` associated with a record, with
    /// the association type id seen from it.
    pub fn associations_of(
        &self,
        object_type: &str,
        id: &str,
        to_type: &str,
    ) -> Vec<(String, u32)> {
        let (Some(from), Some(to), Ok(n)) = (
            ObjType::parse(object_type),
            ObjType::parse(to_type),
            id.parse::<u64>(),
        ) else {
            return Vec::new();
        };
        lock(&self.shared.crm)
            .associated(from, n, to)
            .into_iter()
            .map(|(o, t, _)| (o.to_string(), t))
            .collect()
    }

    /// Records created from now on stay invisible to search for `d`.
    pub fn set_search_lag(&self, d: Duration) {
        lock(&self.shared.settings).search_lag_ms = ms(d);
    }

    // ---- requests, limits, faults ----

    /// Requests by endpoint, e.g. `"POST /crm/v3/objects/calls"`,
    /// `"GET /crm/v3/objects/contacts/{id}"` (connections dropped by
    /// [`Emulator::drop_connections`] are not counted).
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.requests).clone()
    }

    /// Total requests seen.
    pub fn request_count(&self) -> u64 {
        lock(&self.shared.requests).values().sum()
    }

    /// Sets the budget per rolling 10 seconds and forgets the current
    /// window.
    pub fn set_rate_limit(&self, per_10s: u32) {
        let mut r = lock(&self.shared.rate);
        r.max_per_10s = per_10s;
        r.window.clear();
    }

    /// Sets (or, with `None`, lifts) the searches' own per-second limit.
    pub fn set_search_rate_limit(&self, per_second: Option<u32>) {
        let mut r = lock(&self.shared.rate);
        r.search_per_second = per_second;
        r.search_window.clear();
    }

    /// Sets a daily budget (as for a private app) and what is used of it
    /// today; answers carry the Daily headers from then on.
    pub fn set_daily_usage(&self, used: u64, max: u64) {
        let mut r = lock(&self.shared.rate);
        r.daily_used = used;
        r.daily_max = Some(max);
        r.day = self.shared.now_ms().div_euclid(86_400_000);
    }

    /// The next `n` requests answer `status` (5xx) with HubSpot's error body.
    pub fn fail_requests(&self, n: u32, status: u16) {
        let f = &self.shared.faults;
        f.fail_status.store(u32::from(status), Ordering::SeqCst);
        f.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests get their connection closed without an answer.
    pub fn drop_connections(&self, n: u32) {
        self.shared.faults.drop_next.store(n, Ordering::SeqCst);
    }

    /// Every request waits this long before it is handled.
    pub fn set_latency(&self, d: Duration) {
        self.shared.faults.latency_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Turns every fault off.
    pub fn clear_faults(&self) {
        let f = &self.shared.faults;
        f.fail_next.store(0, Ordering::SeqCst);
        f.drop_next.store(0, Ordering::SeqCst);
        f.latency_ms.store(0, Ordering::SeqCst);
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

/// Builds a JSON properties map (for tests comparing records).
pub fn props(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// [`Emulator::add_app`], usable before the server serves.
fn add_app(shared: &Shared, app: App) {
    lock(&shared.auth).apps.insert(app.client_id.clone(), app);
}

/// [`Emulator::add_user`], usable before the server serves.
fn add_user(shared: &Shared, user: User) -> String {
    let owner = add_owner(shared, &user.email, &user.first_name, &user.last_name);
    let user_id = {
        let crm = lock(&shared.crm);
        crm.owners
            .iter()
            .find(|o| o.id.to_string() == owner)
            .map_or(0, |o| o.user_id)
    };
    lock(&shared.auth).accounts.push(Account { user, user_id });
    owner
}

/// [`Emulator::add_owner`], usable before the server serves.
fn add_owner(shared: &Shared, email: &str, first_name: &str, last_name: &str) -> String {
    let now = shared.now_ms();
    let mut crm = lock(&shared.crm);
    let n = crm.owners.len() as u64 + 1;
    let id = 70_000_000 + n;
    crm.owners.push(Owner {
        id,
        user_id: 9_000_000 + n,
        email: email.to_string(),
        first_name: first_name.to_string(),
        last_name: last_name.to_string(),
        archived: false,
        created_ms: now,
        updated_ms: now,
    });
    id.to_string()
}
