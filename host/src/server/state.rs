//! What every request handler shares: the configuration, the runtime, the
//! PBX's services, and the portal's small in-memory records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::agent_sign_in::PendingSignIns;
use super::auth::Auth;
use crate::capabilities::Services;
use crate::config::HostConfig;
use crate::dialing::Originations;
use crate::directory::passwords::ExtensionPasswords;
use crate::journal::Journal;
use crate::network::Network;
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
    /// The Homepage URL, from which Callback URLs are composed.
    pub network: Network,
    /// The admin token and portal sessions.
    pub(super) auth: Auth,
    /// User sync jobs.
    pub syncs: SyncJobs,
    /// The last OAuth callback's outcome per plugin, for the portal's pop-up.
    pub authorizations: AuthorizationOutcomes,
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

/// The last callback outcome of each plugin, for the portal and the CLI to
/// poll. The callback is open to anyone, so what it keeps is bounded: at
/// most [`AuthorizationOutcomes::MAX_ENTRIES`] plugins (the oldest outcome
/// goes first), each forgotten after [`AuthorizationOutcomes::MAX_AGE`]
/// (an authorization attempt lasts minutes, not hours).
#[derive(Default)]
pub struct AuthorizationOutcomes {
    by_plugin: Mutex<HashMap<String, AuthorizationOutcome>>,
}

impl AuthorizationOutcomes {
    /// How many plugins' outcomes are kept at most.
    pub const MAX_ENTRIES: usize = 64;
    /// How long an outcome is kept.
    pub const MAX_AGE: Duration = Duration::from_secs(60 * 60);

    /// Keep `outcome` as `plugin`'s last one (its `at_ms` is its age).
    pub fn record(&self, plugin: &str, outcome: AuthorizationOutcome) {
        let mut map = self.by_plugin.lock().unwrap_or_else(|p| p.into_inner());
        forget_old(&mut map, outcome.at_ms);
        if !map.contains_key(plugin) && map.len() >= Self::MAX_ENTRIES {
            let oldest = map
                .iter()
                .min_by_key(|(_, o)| o.at_ms)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(plugin.to_string(), outcome);
    }

    /// `plugin`'s last outcome, unless it is older than `MAX_AGE` at `now_ms`.
    pub fn get(&self, plugin: &str, now_ms: u64) -> Option<AuthorizationOutcome> {
        let mut map = self.by_plugin.lock().unwrap_or_else(|p| p.into_inner());
        forget_old(&mut map, now_ms);
        map.get(plugin).cloned()
    }

    /// How many outcomes are kept.
    pub fn len(&self) -> usize {
        self.by_plugin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn forget_old(map: &mut HashMap<String, AuthorizationOutcome>, now_ms: u64) {
    let max_age = AuthorizationOutcomes::MAX_AGE.as_millis() as u64;
    map.retain(|_, o| now_ms.saturating_sub(o.at_ms) < max_age);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(at_ms: u64) -> AuthorizationOutcome {
        AuthorizationOutcome {
            at_ms,
            ok: false,
            message: format!("at {at_ms}"),
        }
    }

    #[test]
    fn outcomes_are_bounded_in_count_dropping_the_oldest() {
        let outcomes = AuthorizationOutcomes::default();
        let start = 1_000_000;
        for i in 0..(AuthorizationOutcomes::MAX_ENTRIES as u64 + 10) {
            outcomes.record(&format!("plugin-{i}"), outcome(start + i));
        }
        assert_eq!(outcomes.len(), AuthorizationOutcomes::MAX_ENTRIES);
        let now = start + 1_000;
        assert!(outcomes.get("plugin-0", now).is_none(), "the oldest went");
        let newest = AuthorizationOutcomes::MAX_ENTRIES + 9;
        assert!(outcomes.get(&format!("plugin-{newest}"), now).is_some());
        // Replacing a kept plugin's outcome evicts nothing.
        outcomes.record(&format!("plugin-{newest}"), outcome(now));
        assert_eq!(outcomes.len(), AuthorizationOutcomes::MAX_ENTRIES);
        assert!(outcomes.get("plugin-10", now).is_some());
    }

    #[test]
    fn outcomes_are_forgotten_after_their_age() {
        let outcomes = AuthorizationOutcomes::default();
        outcomes.record("salesforce", outcome(1_000));
        let max_age = AuthorizationOutcomes::MAX_AGE.as_millis() as u64;
        assert!(outcomes.get("salesforce", 1_000 + max_age - 1).is_some());
        assert!(outcomes.get("salesforce", 1_000 + max_age).is_none());
        assert!(outcomes.is_empty());
    }
}
