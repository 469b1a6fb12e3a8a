//! Browser sessions, the administrator's (portal, cookie `pbx_session`) and
//! agents' (one extension each, cookie `pbx_agent`), kept in the store in
//! one bounded table (so every replica sharing the store knows them), and
//! the rate limits on failed logins: per client address, per replica in
//! memory; per existing extension, in the store, so every replica counts
//! the same failures. One home so that expiry, the cap and "who is signed
//! in" hold the same way for both.
//!
//! A session ends when it is idle longer than the idle limit, older than
//! the absolute limit, signed out, ended by the administrator, or dropped as
//! the oldest when the table is full. Its id (the cookie) never leaves the
//! browser and this table; listings give a separate random handle.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::now_ms;
use crate::store::{KvError, Namespace, Precondition, Quota, Store, Write};

/// The agent page's session cookie (the portal's is `auth::SESSION_COOKIE`).
pub const AGENT_COOKIE: &str = "pbx_agent";

/// How an agent proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedInWith {
    /// The extension's password.
    Password,
    /// Their CRM account: `user` in `plugin`'s CRM.
    Crm { plugin: String, user: String },
}

/// Whose session it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Holder {
    /// The administrator (portal login with the admin token).
    Administrator,
    /// The person at one extension; the session reaches that extension only.
    Agent {
        extension: String,
        via: SignedInWith,
    },
}

impl Holder {
    /// The extension an agent session is scoped to.
    pub fn extension(&self) -> Option<&str> {
        match self {
            Holder::Agent { extension, .. } => Some(extension),
            Holder::Administrator => None,
        }
    }
}

/// Expiry and the cap.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session this old ends, used or not.
    pub max_age: Duration,
    /// At most this many sessions are kept; the oldest goes first.
    pub max_sessions: usize,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(12 * 60 * 60),
            max_sessions: 10_000,
        }
    }
}

/// One session as stored (`host/sessions`, under the SHA-256 of its id:
/// the id is the cookie, a secret, and store keys are kept in clear).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    handle: String,
    holder: Holder,
    since_ms: u64,
    last_seen_ms: u64,
}

/// What `GET /api/sessions` shows of a session: never its id.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// A non-secret handle, for `DELETE /api/sessions/{handle}`.
    pub handle: String,
    /// `administrator` or `agent`.
    pub kind: &'static str,
    /// The agent's extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// `password` or `crm` for agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<&'static str>,
    /// The CRM plugin an agent signed in through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The CRM user an agent signed in as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_user: Option<String>,
    /// When it began, ms since the Unix epoch.
    pub since_ms: u64,
    /// When it was last used.
    pub last_seen_ms: u64,
}

/// The store namespace of the sessions, shared by replicas.
pub const SESSIONS_NAMESPACE: &str = "host/sessions";

/// The session table, in the store: a session begun on one replica is
/// good on every replica sharing the store, and one ended anywhere ends
/// everywhere.
pub struct Sessions {
    policy: SessionPolicy,
    table: Namespace,
}

impl Sessions {
    /// The table in `store` with `policy`.
    pub fn new(store: &Store, policy: SessionPolicy) -> Self {
        Self {
            policy,
            table: store.namespace(SESSIONS_NAMESPACE, Quota::UNLIMITED),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// A new session for `holder`; its id (the cookie value).
    pub fn create(&self, holder: Holder) -> Result<String, KvError> {
        self.create_at(holder, now_ms())
    }

    fn create_at(&self, holder: Holder, now: u64) -> Result<String, KvError> {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let session = Session {
            handle: hex::encode(rand::random::<[u8; 8]>()),
            holder,
            since_ms: now,
            last_seen_ms: now,
        };
        if self.table.usage()?.keys >= self.policy.max_sessions as u64 {
            self.make_room(now)?;
        }
        self.table.set(&key_of(&id), &encode(&session)?)?;
        Ok(id)
    }

    /// Below the cap again: expired sessions go, then the oldest.
    fn make_room(&self, now: u64) -> Result<(), KvError> {
        let mut all = self.all()?;
        let mut gone: Vec<String> = Vec::new();
        all.retain(|(key, _, s)| {
            let live = self.live(s, now);
            if !live {
                gone.push(key.clone());
            }
            live
        });
        all.sort_by_key(|(_, _, s)| s.since_ms);
        let over = (all.len() + 1).saturating_sub(self.policy.max_sessions.max(1));
        gone.extend(all.into_iter().take(over).map(|(key, _, _)| key));
        self.delete(gone)
    }

    fn live(&self, s: &Session, now: u64) -> bool {
        let idle = self.policy.idle.as_millis() as u64;
        let max_age = self.policy.max_age.as_millis() as u64;
        now.saturating_sub(s.last_seen_ms) < idle && now.saturating_sub(s.since_ms) < max_age
    }

    /// How stale a session's last use may be in the store before a use
    /// writes it: a tenth of the idle limit, at most a minute, so a busy
    /// page does not write on every request.
    fn touch_every(&self) -> u64 {
        (self.policy.idle.as_millis() as u64 / 10).min(60_000)
    }

    /// Who holds the live session `id`; using it counts as activity. A
    /// store that cannot answer is an error, not "no session": the caller
    /// is told the store is away rather than sent to sign in again.
    pub fn check(&self, id: &str) -> Result<Option<Holder>, KvError> {
        self.check_at(id, now_ms())
    }

    fn check_at(&self, id: &str, now: u64) -> Result<Option<Holder>, KvError> {
        let key = key_of(id);
        let Some(raw) = self.table.get(&key)? else {
            return Ok(None);
        };
        let Ok(mut session) = serde_json::from_slice::<Session>(&raw) else {
            return Ok(None);
        };
        if !self.live(&session, now) {
            self.table.delete(&key)?;
            return Ok(None);
        }
        if now.saturating_sub(session.last_seen_ms) >= self.touch_every() {
            session.last_seen_ms = now;
            // Only over what was read: a session ended meanwhile on
            // another replica stays ended.
            if let Ok(value) = encode(&session) {
                let _ = self.table.batch(
                    &[Precondition {
                        key: key.clone(),
                        expected: Some(raw),
                    }],
                    &[Write::Set { key, value }],
                );
            }
        }
        Ok(Some(session.holder))
    }

    /// Whether `id` is still a live session, without counting as use (a
    /// stream asks this before each event it sends). While the store
    /// cannot answer, an open stream stays open: it carries pop-ups only,
    /// and ending every agent's stream on a store blip would lose them.
    pub fn alive(&self, id: &str) -> bool {
        let now = now_ms();
        match self.table.get(&key_of(id)) {
            Ok(raw) => raw
                .and_then(|raw| serde_json::from_slice::<Session>(&raw).ok())
                .is_some_and(|s| self.live(&s, now)),
            Err(_) => true,
        }
    }

    /// End session `id` (sign-out).
    pub fn end(&self, id: &str) -> Result<(), KvError> {
        self.table.delete(&key_of(id))
    }

    /// End the session with `handle`; whether there was one.
    pub fn end_handle(&self, handle: &str) -> Result<bool, KvError> {
        let gone: Vec<String> = self
            .all()?
            .into_iter()
            .filter(|(_, _, s)| s.handle == handle)
            .map(|(key, _, _)| key)
            .collect();
        let any = !gone.is_empty();
        self.delete(gone)?;
        Ok(any)
    }

    /// End every administrator session (the admin token was replaced:
    /// whoever logged in with the old one is out too); how many.
    pub fn end_administrators(&self) -> Result<usize, KvError> {
        let keys: Vec<String> = self
            .all()?
            .into_iter()
            .filter(|(_, _, s)| s.holder == Holder::Administrator)
            .map(|(key, _, _)| key)
            .collect();
        let count = keys.len();
        self.delete(keys)?;
        Ok(count)
    }

    /// End every agent session of `extension`; how many.
    pub fn end_extension(&self, extension: &str) -> Result<usize, KvError> {
        self.end_agents_where(|ext, _| ext == extension)
    }

    /// End the agent sessions `gone(extension, how)` picks; how many.
    pub fn end_agents_where(
        &self,
        gone: impl Fn(&str, &SignedInWith) -> bool,
    ) -> Result<usize, KvError> {
        let keys: Vec<String> = self
            .all()?
            .into_iter()
            .filter(|(_, _, s)| match &s.holder {
                Holder::Agent { extension, via } => gone(extension, via),
                Holder::Administrator => false,
            })
            .map(|(key, _, _)| key)
            .collect();
        let count = keys.len();
        self.delete(keys)?;
        Ok(count)
    }

    /// Every stored session: (key, raw, session); unreadable ones skipped.
    fn all(&self) -> Result<Vec<(String, Vec<u8>, Session)>, KvError> {
        let mut out = Vec::new();
        for key in self.table.list_keys("")? {
            if let Some(raw) = self.table.get(&key)?
                && let Ok(session) = serde_json::from_slice(&raw)
            {
                out.push((key, raw, session));
            }
        }
        Ok(out)
    }

    fn delete(&self, keys: Vec<String>) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let writes: Vec<Write> = keys.into_iter().map(|key| Write::Delete { key }).collect();
        self.table.batch(&[], &writes)
    }

    /// The live sessions, oldest first (expired ones are removed).
    pub fn list(&self) -> Result<Vec<SessionInfo>, KvError> {
        self.list_at(now_ms())
    }

    fn list_at(&self, now: u64) -> Result<Vec<SessionInfo>, KvError> {
        let (live, expired): (Vec<_>, Vec<_>) = self
            .all()?
            .into_iter()
            .partition(|(_, _, s)| self.live(s, now));
        self.delete(expired.into_iter().map(|(key, _, _)| key).collect())?;
        let mut out: Vec<SessionInfo> = live.into_iter().map(|(_, _, s)| info(s)).collect();
        out.sort_by_key(|s| (s.since_ms, s.handle.clone()));
        Ok(out)
    }
}

/// The store key of session `id`.
fn key_of(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn encode(session: &Session) -> Result<Vec<u8>, KvError> {
    serde_json::to_vec(session).map_err(|e| KvError::Unavailable(e.to_string()))
}

fn info(s: Session) -> SessionInfo {
    let (kind, extension, how, plugin, crm_user) = match s.holder {
        Holder::Administrator => ("administrator", None, None, None, None),
        Holder::Agent { extension, via } => match via {
            SignedInWith::Password => ("agent", Some(extension), Some("password"), None, None),
            SignedInWith::Crm { plugin, user } => (
                "agent",
                Some(extension),
                Some("crm"),
                Some(plugin),
                Some(user),
            ),
        },
    };
    SessionInfo {
        handle: s.handle,
        kind,
        extension,
        how,
        plugin,
        crm_user,
        since_ms: s.since_ms,
        last_seen_ms: s.last_seen_ms,
    }
}

/// A `Set-Cookie` value: HttpOnly always, `Secure` when the host is served
/// over https, SameSite as given; `max_age` 0 deletes it.
pub fn set_cookie(
    name: &str,
    value: &str,
    secure: bool,
    same_site: &str,
    max_age: Option<u64>,
) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    cookie
}

/// The value of cookie `name` in the request's headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string())
}

/// Failed logins: at most `max_failures` per key (an extension, a client
/// address, the admin login) within `window`; then refused until the oldest
/// failure leaves the window. The table is bounded: when full, keys with no
/// failure left in the window go, then the stalest key.
pub struct LoginLimiter {
    max_failures: usize,
    window_ms: u64,
    max_keys: usize,
    failures: Mutex<HashMap<String, VecDeque<u64>>>,
}

/// Failed logins allowed per key within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;

/// How long a failed login counts.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(MAX_FAILURES, FAILURE_WINDOW, 10_000)
    }
}

impl LoginLimiter {
    /// `max_failures` per key within `window`, at most `max_keys` keys kept.
    pub fn new(max_failures: usize, window: Duration, max_keys: usize) -> Self {
        Self {
            max_failures,
            window_ms: window.as_millis() as u64,
            max_keys,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<u64>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// If any of `keys` has used up its failures: the seconds until it may
    /// try again.
    pub fn blocked(&self, keys: &[String]) -> Option<u64> {
        self.blocked_at(keys, now_ms())
    }

    fn blocked_at(&self, keys: &[String], now: u64) -> Option<u64> {
        let mut table = self.failures();
        keys.iter()
            .filter_map(|key| {
                let times = table.get_mut(key)?;
                times.retain(|&t| now.saturating_sub(t) < self.window_ms);
                (times.len() >= self.max_failures).then(|| {
                    let oldest = times.front().copied().unwrap_or(now);
                    (oldest + self.window_ms).saturating_sub(now).div_ceil(1000)
                })
            })
            .max()
    }

    /// Count a failed attempt against each of `keys`.
    pub fn failed(&self, keys: &[String]) {
        self.failed_at(keys, now_ms());
    }

    fn failed_at(&self, keys: &[String], now: u64) {
        let mut table = self.failures();
        for key in keys {
            if !table.contains_key(key) && table.len() >= self.max_keys {
                table.retain(|_, times| {
                    times
                        .back()
                        .is_some_and(|&t| now.saturating_sub(t) < self.window_ms)
                });
                if table.len() >= self.max_keys {
                    let stalest = table
                        .iter()
                        .min_by_key(|(_, times)| times.back().copied().unwrap_or(0))
                        .map(|(k, _)| k.clone());
                    if let Some(stalest) = stalest {
                        table.remove(&stalest);
                    }
                }
            }
            let times = table.entry(key.clone()).or_default();
            times.push_back(now);
            while times.len() > self.max_failures {
                times.pop_front();
            }
        }
    }

    /// A successful login clears `key`'s failures (the extension's, not
    /// the address's: one good password does not unlock guessing others).
    pub fn succeeded(&self, key: &str) {
        self.failures().remove(key);
    }

    /// How many keys are kept (for the bound's tests).
    pub fn len(&self) -> usize {
        self.failures().len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The store namespace of failed sign-ins per extension.
const EXTENSION_FAILURES_NAMESPACE: &str = "host/sign-in-failures";

/// Failed sign-ins of existing extensions, counted in the store: a guesser
/// of one extension's password gets the limit once for the whole fleet,
/// not once per replica behind the load balancer, and not again after a
/// restart. Only extensions the administrator made are counted here, so
/// the keys are as bounded as the extension directory; a made-up
/// extension is limited by the per-address count ([`LoginLimiter`]).
pub struct ExtensionFailures {
    failures: Namespace,
    max_failures: usize,
    window_ms: u64,
}

impl ExtensionFailures {
    /// `max_failures` per extension within `window`, in `store`.
    pub fn new(store: &Store, max_failures: usize, window: Duration) -> Self {
        Self {
            failures: store.namespace(EXTENSION_FAILURES_NAMESPACE, Quota::UNLIMITED),
            max_failures: max_failures.max(1),
            window_ms: window.as_millis() as u64,
        }
    }

    /// If `extension` has used up its failures: the seconds until it may
    /// try again.
    pub fn blocked(&self, extension: &str) -> Result<Option<u64>, KvError> {
        self.blocked_at(extension, now_ms())
    }

    fn blocked_at(&self, extension: &str, now: u64) -> Result<Option<u64>, KvError> {
        let times = self.recent(self.failures.get(extension)?.as_deref(), now);
        Ok((times.len() >= self.max_failures).then(|| {
            let oldest = times.first().copied().unwrap_or(now);
            (oldest + self.window_ms).saturating_sub(now).div_ceil(1000)
        }))
    }

    /// Count a failed sign-in of `extension`, over what every other
    /// replica counted meanwhile.
    pub fn failed(&self, extension: &str) -> Result<(), KvError> {
        self.failed_at(extension, now_ms())
    }

    fn failed_at(&self, extension: &str, now: u64) -> Result<(), KvError> {
        // Another replica counting the same extension at the same moment
        // makes the swap fail: read again and count on top of its count.
        for _ in 0..8 {
            let read = self.failures.get(extension)?;
            let mut times = self.recent(read.as_deref(), now);
            times.push(now);
            // Replicas' clocks differ a little: the newest are kept.
            times.sort_unstable();
            let keep = times.len().saturating_sub(self.max_failures);
            times.drain(..keep);
            let value =
                serde_json::to_vec(&times).map_err(|e| KvError::Unavailable(e.to_string()))?;
            match self.failures.batch(
                &[Precondition {
                    key: extension.to_string(),
                    expected: read,
                }],
                &[Write::Set {
                    key: extension.to_string(),
                    value,
                }],
            ) {
                Err(KvError::Conflict(_)) => continue,
                done => return done,
            }
        }
        Err(KvError::Unavailable(format!(
            "the failed sign-ins of extension {extension} could not be counted: too many at once"
        )))
    }

    /// Forget `extension`'s failures: it signed in, or was removed.
    pub fn forget(&self, extension: &str) -> Result<(), KvError> {
        self.failures.delete(extension)
    }

    /// The failure times in `value` within the window, oldest first (an
    /// unreadable value counts as none: it only ever held times).
    fn recent(&self, value: Option<&[u8]>, now: u64) -> Vec<u64> {
        let mut times: Vec<u64> = value
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or_default();
        times.retain(|&t| now.saturating_sub(t) < self.window_ms);
        times.sort_unstable();
        times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(ext: &str) -> Holder {
        Holder::Agent {
            extension: ext.into(),
            via: SignedInWith::Password,
        }
    }

    fn crm(ext: &str, user: &str) -> Holder {
        Holder::Agent {
            extension: ext.into(),
            via: SignedInWith::Crm {
                plugin: "salesforce".into(),
                user: user.into(),
            },
        }
    }

    /// A table in a store of its own (the directory lives as long as it).
    fn table(policy: SessionPolicy) -> (tempfile::TempDir, Sessions) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, Sessions::new(&store, policy))
    }

    fn policy(idle_s: u64, max_s: u64, max: usize) -> SessionPolicy {
        SessionPolicy {
            idle: Duration::from_secs(idle_s),
            max_age: Duration::from_secs(max_s),
            max_sessions: max,
        }
    }

    #[test]
    fn a_session_names_its_holder_and_scope() {
        let (_dir, s) = table(SessionPolicy::default());
        let a = s.create_at(agent("1001"), 0).expect("create");
        let admin = s.create_at(Holder::Administrator, 0).expect("create");
        assert_eq!(
            s.check_at(&a, 1)
                .expect("check")
                .as_ref()
                .and_then(Holder::extension),
            Some("1001")
        );
        assert_eq!(
            s.check_at(&admin, 1).expect("check"),
            Some(Holder::Administrator)
        );
        assert_eq!(s.check_at("not-a-session", 1).expect("check"), None);
        assert_ne!(a, admin);
    }

    #[test]
    fn an_idle_session_expires_and_use_keeps_it_alive() {
        let (_dir, s) = table(policy(60, 3600, 10));
        let id = s.create_at(agent("1001"), 0).expect("create");
        assert!(
            s.check_at(&id, 59_000).expect("check").is_some(),
            "used before the idle limit"
        );
        assert!(
            s.check_at(&id, 118_000).expect("check").is_some(),
            "use moved the idle clock"
        );
        assert!(
            s.check_at(&id, 178_001).expect("check").is_none(),
            "idle past the limit"
        );
        assert!(
            s.check_at(&id, 178_002).expect("check").is_none(),
            "and it stays gone"
        );
    }

    #[test]
    fn a_session_ends_at_its_absolute_limit_even_in_use() {
        let (_dir, s) = table(policy(60, 120, 10));
        let id = s.create_at(agent("1001"), 0).expect("create");
        for t in (30_000..120_000).step_by(30_000) {
            assert!(s.check_at(&id, t).expect("check").is_some(), "alive at {t}");
        }
        assert!(s.check_at(&id, 120_000).expect("check").is_none());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest() {
        let (_dir, s) = table(policy(600, 3600, 3));
        let ids: Vec<String> = (0..5u64)
            .map(|i| s.create_at(agent(&format!("100{i}")), i).expect("create"))
            .collect();
        assert_eq!(s.list_at(10).expect("list").len(), 3);
        assert!(s.check_at(&ids[0], 10).expect("check").is_none());
        assert!(s.check_at(&ids[1], 10).expect("check").is_none());
        assert!(s.check_at(&ids[4], 10).expect("check").is_some());
    }

    #[test]
    fn listing_shows_handles_never_ids_and_ending_by_handle_works() {
        let (_dir, s) = table(SessionPolicy::default());
        let id = s.create_at(crm("1002", "005A"), 5).expect("create");
        let list = s.list_at(6).expect("list");
        assert_eq!(list.len(), 1);
        let json = serde_json::to_string(&list).unwrap_or_default();
        assert!(!json.contains(&id), "the session id is never listed");
        assert_eq!(list[0].how, Some("crm"));
        assert_eq!(list[0].crm_user.as_deref(), Some("005A"));
        assert!(!s.end_handle("nope").expect("end"));
        assert!(s.end_handle(&list[0].handle).expect("end"));
        assert!(s.check_at(&id, 7).expect("check").is_none());
    }

    #[test]
    fn ending_an_extension_ends_only_its_agent_sessions() {
        let (_dir, s) = table(SessionPolicy::default());
        let a1 = s.create_at(agent("1001"), 0).expect("create");
        let a2 = s.create_at(crm("1001", "005A"), 0).expect("create");
        let b = s.create_at(agent("1002"), 0).expect("create");
        let admin = s.create_at(Holder::Administrator, 0).expect("create");
        assert_eq!(s.end_extension("1001").expect("end"), 2);
        assert!(
            s.check_at(&a1, 1).expect("check").is_none()
                && s.check_at(&a2, 1).expect("check").is_none()
        );
        assert!(
            s.check_at(&b, 1).expect("check").is_some()
                && s.check_at(&admin, 1).expect("check").is_some()
        );
    }

    #[test]
    fn the_limiter_refuses_after_five_failures_until_the_window_passes() {
        let l = LoginLimiter::new(5, Duration::from_secs(300), 100);
        let keys = vec!["ext:1001".to_string(), "ip:127.0.0.1".to_string()];
        for t in 0..5 {
            assert_eq!(l.blocked_at(&keys, t), None);
            l.failed_at(&keys, t);
        }
        assert_eq!(l.blocked_at(&keys, 10), Some(300));
        // Another extension from the same address is refused too.
        assert!(l.blocked_at(&["ip:127.0.0.1".to_string()], 10).is_some());
        assert_eq!(l.blocked_at(&keys, 300_000), None, "the first failure left");
        l.succeeded("ext:1001");
        assert!(l.blocked_at(&["ext:1001".to_string()], 10).is_none());
    }

    #[test]
    fn an_extension_s_failures_count_on_every_replica_and_end_with_a_sign_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        // Two replicas' counts over one store.
        let a = ExtensionFailures::new(&store, 5, Duration::from_secs(300));
        let b = ExtensionFailures::new(&store, 5, Duration::from_secs(300));
        for t in 0..3 {
            a.failed_at("1001", t).expect("counted");
        }
        for t in 3..5 {
            assert_eq!(b.blocked_at("1001", t).expect("read"), None);
            b.failed_at("1001", t).expect("counted");
        }
        assert_eq!(a.blocked_at("1001", 10).expect("read"), Some(300));
        assert_eq!(b.blocked_at("1001", 10).expect("read"), Some(300));
        assert_eq!(
            a.blocked_at("1002", 10).expect("read"),
            None,
            "per extension"
        );
        // More failures keep no more than the limit's worth.
        for t in 5..50 {
            a.failed_at("1001", t).expect("counted");
        }
        let kept: Vec<u64> = serde_json::from_slice(
            &store
                .namespace(EXTENSION_FAILURES_NAMESPACE, Quota::UNLIMITED)
                .get("1001")
                .expect("get")
                .unwrap_or_default(),
        )
        .expect("times");
        assert_eq!(kept, vec![45, 46, 47, 48, 49]);
        // The window passes for the oldest of them; a sign-in forgets all.
        assert_eq!(b.blocked_at("1001", 300_045).expect("read"), None);
        assert!(b.blocked_at("1001", 300_044).expect("read").is_some());
        a.forget("1001").expect("forgotten");
        assert_eq!(b.blocked_at("1001", 50).expect("read"), None);
    }

    #[test]
    fn the_limiter_keeps_a_bounded_number_of_keys() {
        let l = LoginLimiter::new(5, Duration::from_secs(300), 50);
        for i in 0..1_000 {
            l.failed_at(&[format!("ip:10.0.{}.{}", i / 256, i % 256)], i);
        }
        assert!(l.len() <= 50, "{} keys kept", l.len());
    }

    #[test]
    fn cookies_are_secure_over_https() {
        assert!(set_cookie(AGENT_COOKIE, "x", true, "Lax", None).contains("; Secure"));
        let plain = set_cookie(AGENT_COOKIE, "x", false, "Lax", Some(0));
        assert!(
            !plain.contains("Secure") && plain.contains("HttpOnly") && plain.contains("Max-Age=0")
        );
    }

    #[test]
    fn the_store_holds_no_session_id_and_an_ended_session_is_not_touched_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let s = Sessions::new(&store, policy(600, 3600, 10));
        let id = s.create_at(agent("1001"), 0).expect("create");
        let table = store.namespace(SESSIONS_NAMESPACE, Quota::UNLIMITED);
        let keys = table.list_keys("").expect("keys");
        assert_eq!(keys.len(), 1);
        assert_ne!(keys[0], id, "the cookie is not a store key");
        let value = table.get(&keys[0]).expect("get").unwrap_or_default();
        assert!(!String::from_utf8_lossy(&value).contains(&id));

        // Another replica (a second table on the same store) ends it.
        let other = Sessions::new(&store, policy(600, 3600, 10));
        assert!(
            other.check_at(&id, 1_000).expect("check").is_some(),
            "known on every replica"
        );
        other.end(&id).expect("end");
        assert!(
            s.check_at(&id, 120_000).expect("check").is_none(),
            "ended everywhere"
        );
        assert!(table.list_keys("").expect("keys").is_empty());
    }
}
