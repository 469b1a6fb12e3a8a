//! What every request handler shares: the configuration, the runtime, the
//! PBX's services, and the portal's small in-memory records.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
use crate::store::{KvError, Namespace, Quota, Store, Write};
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
    /// The tenant this PBX is, if it is not the host's own.
    pub tenant: Option<String>,
}

/// What the last OAuth callback of a plugin ended with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationOutcome {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Whether it connected.
    pub ok: bool,
    /// The message shown on the callback page.
    pub message: String,
}

/// The store namespace of the outcomes: the callback may reach another
/// replica than the one whose portal asks.
pub const AUTHORIZATIONS_NAMESPACE: &str = "host/authorizations";

/// The last callback outcome of each plugin, for the portal and the CLI to
/// poll. The callback is open to anyone, so what it keeps is bounded: at
/// most [`AuthorizationOutcomes::MAX_ENTRIES`] plugins (the oldest outcome
/// goes first), each forgotten after [`AuthorizationOutcomes::MAX_AGE`]
/// (an authorization attempt lasts minutes, not hours).
pub struct AuthorizationOutcomes {
    by_plugin: Namespace,
}

impl AuthorizationOutcomes {
    /// How many plugins' outcomes are kept at most.
    pub const MAX_ENTRIES: usize = 64;
    /// How long an outcome is kept.
    pub const MAX_AGE: Duration = Duration::from_secs(60 * 60);

    /// The outcomes in `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            by_plugin: store.namespace(AUTHORIZATIONS_NAMESPACE, Quota::UNLIMITED),
        }
    }

    /// Keep `outcome` as `plugin`'s last one (its `at_ms` is its age).
    pub fn record(&self, plugin: &str, outcome: AuthorizationOutcome) -> Result<(), KvError> {
        let mut kept = self.all()?;
        let max_age = Self::MAX_AGE.as_millis() as u64;
        let mut gone: Vec<String> = kept
            .iter()
            .filter(|(_, o)| outcome.at_ms.saturating_sub(o.at_ms) >= max_age)
            .map(|(id, _)| id.clone())
            .collect();
        kept.retain(|(id, _)| !gone.contains(id));
        if !kept.iter().any(|(id, _)| id == plugin) && kept.len() >= Self::MAX_ENTRIES {
            kept.sort_by_key(|(_, o)| o.at_ms);
            let over = kept.len() + 1 - Self::MAX_ENTRIES;
            gone.extend(kept.into_iter().take(over).map(|(id, _)| id));
        }
        let value =
            serde_json::to_vec(&outcome).map_err(|e| KvError::Unavailable(e.to_string()))?;
        let mut writes: Vec<Write> = gone.into_iter().map(|key| Write::Delete { key }).collect();
        writes.push(Write::Set {
            key: plugin.to_string(),
            value,
        });
        self.by_plugin.batch(&[], &writes)
    }

    /// `plugin`'s last outcome, unless it is older than `MAX_AGE` at `now_ms`.
    /// An older one is forgotten.
    pub fn get(&self, plugin: &str, now_ms: u64) -> Result<Option<AuthorizationOutcome>, KvError> {
        let max_age = Self::MAX_AGE.as_millis() as u64;
        let Some(raw) = self.by_plugin.get(plugin)? else {
            return Ok(None);
        };
        match serde_json::from_slice::<AuthorizationOutcome>(&raw) {
            Ok(o) if now_ms.saturating_sub(o.at_ms) < max_age => Ok(Some(o)),
            _ => {
                self.by_plugin.delete(plugin)?;
                Ok(None)
            }
        }
    }

    fn all(&self) -> Result<Vec<(String, AuthorizationOutcome)>, KvError> {
        let mut out = Vec::new();
        for key in self.by_plugin.list_keys("")? {
            if let Some(outcome) = self
                .by_plugin
                .get(&key)?
                .and_then(|raw| serde_json::from_slice(&raw).ok())
            {
                out.push((key, outcome));
            }
        }
        Ok(out)
    }

    /// How many outcomes are kept.
    pub fn len(&self) -> usize {
        self.by_plugin.usage().map_or(0, |u| u.keys as usize)
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
            sessions: self.auth.sessions.list().map_or(0, |l| l.len()),
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

    fn outcomes_table() -> (tempfile::TempDir, AuthorizationOutcomes) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, AuthorizationOutcomes::new(&store))
    }

    #[test]
    fn outcomes_are_bounded_in_count_dropping_the_oldest() {
        let (_dir, outcomes) = outcomes_table();
        let start = 1_000_000;
        for i in 0..(AuthorizationOutcomes::MAX_ENTRIES as u64 + 10) {
            outcomes
                .record(&format!("plugin-{i}"), outcome(start + i))
                .expect("record");
        }
        assert_eq!(outcomes.len(), AuthorizationOutcomes::MAX_ENTRIES);
        let now = start + 1_000;
        assert!(
            outcomes.get("plugin-0", now).expect("get").is_none(),
            "the oldest went"
        );
        let newest = AuthorizationOutcomes::MAX_ENTRIES + 9;
        assert!(
            outcomes
                .get(&format!("plugin-{newest}"), now)
                .expect("get")
                .is_some()
        );
        // Replacing a kept plugin's outcome evicts nothing.
        outcomes
            .record(&format!("plugin-{newest}"), outcome(now))
            .expect("record");
        assert_eq!(outcomes.len(), AuthorizationOutcomes::MAX_ENTRIES);
        assert!(outcomes.get("plugin-10", now).expect("get").is_some());
    }

    #[test]
    fn outcomes_are_forgotten_after_their_age() {
        let (_dir, outcomes) = outcomes_table();
        outcomes
            .record("salesforce", outcome(1_000))
            .expect("record");
        let max_age = AuthorizationOutcomes::MAX_AGE.as_millis() as u64;
        assert!(
            outcomes
                .get("salesforce", 1_000 + max_age - 1)
                .expect("get")
                .is_some()
        );
        assert!(
            outcomes
                .get("salesforce", 1_000 + max_age)
                .expect("get")
                .is_none()
        );
        assert!(outcomes.is_empty());
    }
}
