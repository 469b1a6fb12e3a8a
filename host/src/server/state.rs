//! What every request handler shares: the configuration, the runtime, the
//! PBX's services, and the portal's small in-memory records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::auth::Auth;
use crate::capabilities::Services;
use crate::config::HostConfig;
use crate::dialing::Originations;
use crate::journal::Journal;
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
