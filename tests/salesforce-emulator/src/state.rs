//! The emulator's shared state: org data, OAuth grants, faults, counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::ConnectedApp;
use crate::schema::ObjectSchema;
use crate::store::Org;

/// Locks ignoring poisoning: a panicked handler must not take the org down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// An authorization request waiting for Allow or Deny.
#[derive(Debug, Clone)]
pub struct PendingAuth {
    pub app: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub user_id: String,
    pub browser_session: String,
    pub created: Instant,
}

/// An issued, not yet exchanged authorization code.
#[derive(Debug, Clone)]
pub struct AuthCode {
    pub app: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub expires: Instant,
}

/// A live access token (session).
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub app: Option<String>,
    pub scopes: Vec<String>,
    pub last_used: Instant,
    pub refresh_token: Option<String>,
}

/// A live refresh token.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub app: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub issued: Instant,
    pub last_used: Instant,
}

/// Token endpoint counters of one connected app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AppTokenStats {
    pub authorization_code_grants: u64,
    pub refresh_grants: u64,
    pub revocations: u64,
    pub failed_token_requests: u64,
    pub consents_allowed: u64,
    pub consents_denied: u64,
}

/// Token counters, in total and per connected app (by consumer key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenStats {
    pub authorization_code_grants: u64,
    pub refresh_grants: u64,
    pub revocations: u64,
    pub failed_token_requests: u64,
    pub per_app: BTreeMap<String, AppTokenStats>,
}

impl TokenStats {
    pub fn bump(&mut self, app: &str, f: impl Fn(&mut AppTokenStats)) {
        f(self.per_app.entry(app.to_string()).or_default());
        let mut totals = AppTokenStats::default();
        for s in self.per_app.values() {
            totals.authorization_code_grants += s.authorization_code_grants;
            totals.refresh_grants += s.refresh_grants;
            totals.revocations += s.revocations;
            totals.failed_token_requests += s.failed_token_requests;
        }
        self.authorization_code_grants = totals.authorization_code_grants;
        self.refresh_grants = totals.refresh_grants;
        self.revocations = totals.revocations;
        self.failed_token_requests = totals.failed_token_requests;
    }
}

/// Everything OAuth.
#[derive(Debug, Default)]
pub struct AuthState {
    pub apps: BTreeMap<String, ConnectedApp>,
    pub passwords: HashMap<String, String>,
    pub browser_sessions: HashMap<String, String>,
    pub pending: HashMap<String, PendingAuth>,
    pub codes: HashMap<String, AuthCode>,
    pub sessions: HashMap<String, Session>,
    pub refresh: HashMap<String, RefreshGrant>,
    pub stats: TokenStats,
}

/// Switchable faults.
#[derive(Debug, Default)]
pub struct FaultState {
    pub drop_next: AtomicU32,
    pub fail_next: AtomicU32,
    pub fail_status: AtomicU32,
    pub limit_next: AtomicU32,
    pub latency_ms: AtomicU64,
    pub search_lag_ms: AtomicU64,
    /// Token answers whose `signature` is altered, as by a tampering proxy.
    pub tamper_signatures: AtomicU32,
}

pub use emulator_kit::server::take_one;

/// A server-side query cursor (`nextRecordsUrl`).
#[derive(Debug)]
pub struct Cursor {
    pub schema: &'static ObjectSchema,
    pub fields: Vec<usize>,
    pub rows: Vec<u32>,
    pub batch: usize,
    pub last_used: Instant,
}

#[derive(Debug, Default)]
pub struct Cursors {
    pub next: u64,
    pub map: HashMap<String, Cursor>,
}

/// Cursors idle longer than this are gone (Salesforce: 15 minutes).
pub const CURSOR_IDLE: Duration = Duration::from_secs(15 * 60);
pub const MAX_CURSORS: usize = 500;

/// The daily API budget.
#[derive(Debug)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
    pub day: i64,
}

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub code_lifetime: Duration,
    pub session_timeout: Duration,
    pub admin_password: String,
}

/// State shared by every connection and by the library handle.
#[derive(Debug)]
pub struct Shared {
    pub base_url: String,
    pub tls: bool,
    pub org: RwLock<Org>,
    pub auth: Mutex<AuthState>,
    pub faults: FaultState,
    pub requests: Mutex<BTreeMap<String, u64>>,
    pub api: Mutex<ApiUsage>,
    pub cursors: Mutex<Cursors>,
    pub settings: RwLock<Settings>,
}

impl Shared {
    pub fn count_request(&self, key: String) {
        *lock(&self.requests).entry(key).or_insert(0) += 1;
    }

    pub fn search_lag(&self) -> Duration {
        Duration::from_millis(self.faults.search_lag_ms.load(Ordering::SeqCst))
    }

    /// `api-usage=USED/MAX`.
    pub fn limit_info(&self) -> String {
        let api = lock(&self.api);
        format!("api-usage={}/{}", api.used, api.max)
    }
}
