//! What every request handler shares: the configuration, the runtime, the
//! PBX's services, and the portal's small in-memory records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::agent_sign_in::PendingSignIns;
use super::auth::Auth;
use crate::capabilities::Services;
use crate::config::HostConfig;
use crate::dialing::Originations;
use crate::directory::passwords::ExtensionPasswords;
use crate::journal::Journal;
use crate::recent_calls::RecentCalls;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::user_sync::SyncJobs;

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// The validated configuration.
    pub config: HostConfig,
    /// The plugin runtime.
    pub runtime: Arc<Runtime>,
    /// Host services (directory, browser requests, HTTP client).
    pub services: Arc<Services>,
    /// The store.
    pub store: Store,
    /// The admin token and portal sessions.
    pub(super) auth: Auth,
    /// User sync jobs.
    pub syncs: SyncJobs,
    /// The last OAuth callback's outcome per plugin, for the portal's pop-up.
    pub authorizations: Mutex<HashMap<String, AuthorizationOutcome>>,
    /// Call events: delivery, the retry queue, pending counts, the ticker.
    pub journal: Arc<Journal>,
    /// Click-to-call requests the host originated.
    pub originations: Originations,
    /// Extension passwords (agents without a CRM account).
    pub passwords: ExtensionPasswords,
    /// Agents' CRM sign-ins waiting for their callback.
    pub(super) agent_sign_ins: PendingSignIns,
    /// Each extension's recent calls, for its agent page.
    pub recent_calls: RecentCalls,
    /// Password hashing is slow on purpose: at most this many at once, so
    /// a flood of logins cannot take every core.
    pub(super) hashing: tokio::sync::Semaphore,
    /// Set when the host shuts down (ends live streams).
    pub(super) stopping: tokio::sync::watch::Sender<bool>,
}

/// What the last OAuth callback of a plugin ended with.
#[derive(Debug, Clone, Serialize)]
pub struct AuthorizationOutcome {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Whether it connected.
    pub ok: bool,
    /// The message shown on the callback page.
    pub message: String,
}

/// How much the host keeps for browsers (each bounded), for tests.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct BrowserBookkeeping {
    /// Live sessions, the administrator's and agents'.
    pub sessions: usize,
    /// Agent sign-ins waiting for their callback.
    pub pending_sign_ins: usize,
    /// Keys with failed logins counted.
    pub login_failure_keys: usize,
}

impl AppState {
    /// What the host keeps for browsers right now.
    pub fn browser_bookkeeping(&self) -> BrowserBookkeeping {
        BrowserBookkeeping {
            sessions: self.auth.sessions.list().len(),
            pending_sign_ins: self.agent_sign_ins.len(),
            login_failure_keys: self.auth.limiter.len(),
        }
    }
}
