//! Who may use the admin API and the portal: the admin token (CLI, scripts)
//! as a bearer token, or a portal session cookie obtained with that token;
//! and who an agent page's caller is (the administrator, or an agent
//! session scoped to one extension). The sessions themselves live in
//! `sessions`.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::sessions::{AGENT_COOKIE, Holder, LoginLimiter, SessionPolicy, Sessions, cookie};
use crate::store::{KvError, Namespace, Precondition, Quota, Store, Write};

/// The portal's session cookie.
pub const SESSION_COOKIE: &str = "pbx_session";

/// Who may call what: the token, the sessions, the login rate limit.
pub struct Auth {
    token: Token,
    /// Every browser session, the administrator's and agents'.
    pub sessions: Sessions,
    /// Failed logins (the portal's and agents'), per key.
    pub limiter: LoginLimiter,
}

/// Who is calling an agent route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The administrator (token or portal session): every extension.
    Administrator,
    /// An agent: only this extension.
    Agent(Holder),
    /// No valid credential.
    Anonymous,
}

impl Caller {
    /// Whether the caller may act for `extension`.
    pub fn may_use(&self, extension: &str) -> bool {
        match self {
            Caller::Administrator => true,
            Caller::Agent(holder) => holder.extension() == Some(extension),
            Caller::Anonymous => false,
        }
    }
}

/// A PBX's admin token, as its `Auth` is given it.
pub enum AdminToken {
    /// The host's own PBX's: read at start (its file, or the fleet's
    /// record) and the same for the life of the process.
    Fixed(String),
    /// A tenant's: kept in its store (here as read when it opened), so a
    /// new one the operator issues on any replica holds on every replica.
    Stored(String),
}

/// How long a replica trusts the tenant token it last read: an old token
/// the operator replaced on another replica is refused here within this.
/// A token that does not match is checked against the store at once, so
/// the new one works everywhere at once.
const TOKEN_RECHECK: Duration = Duration::from_secs(2);

enum Token {
    Fixed(String),
    Stored {
        admin: Namespace,
        known: Mutex<Option<(String, Instant)>>,
    },
}

impl Auth {
    /// The admin token, the sessions in `store` (the PBX's own).
    pub fn new(token: AdminToken, store: &Store, policy: SessionPolicy) -> Self {
        let token = match token {
            AdminToken::Fixed(token) => Token::Fixed(token),
            AdminToken::Stored(token) => Token::Stored {
                admin: store.namespace(ADMIN_NAMESPACE, Quota::UNLIMITED),
                known: Mutex::new(Some((token, Instant::now()))),
            },
        };
        Self {
            token,
            sessions: Sessions::new(store, policy),
            limiter: LoginLimiter::default(),
        }
    }

    /// Whether `candidate` is the admin token (constant time); an error
    /// when a tenant's token is to be read and its store cannot say.
    pub fn token_matches(&self, candidate: &str) -> Result<bool, KvError> {
        self.token_matches_at(candidate, Instant::now())
    }

    fn token_matches_at(&self, candidate: &str, now: Instant) -> Result<bool, KvError> {
        let same = |token: &str| -> bool { candidate.as_bytes().ct_eq(token.as_bytes()).into() };
        let (admin, known) = match &self.token {
            Token::Fixed(token) => return Ok(same(token)),
            Token::Stored { admin, known } => (admin, known),
        };
        if let Some((token, read_at)) = &*known.lock().unwrap_or_else(|p| p.into_inner())
            && now.saturating_duration_since(*read_at) < TOKEN_RECHECK
            && same(token)
        {
            return Ok(true);
        }
        // Read with no lock held: other checks go on meanwhile. A removed
        // tenant's store has no token, so nothing matches.
        let current = admin
            .get("token")?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|t| t.len() >= 32);
        let matches = current.as_deref().is_some_and(same);
        *known.lock().unwrap_or_else(|p| p.into_inner()) = current.map(|token| (token, now));
        Ok(matches)
    }

    /// Forget the token read last, so the next check reads the store (the
    /// operator just issued a new one).
    pub fn token_replaced(&self) {
        if let Token::Stored { known, .. } = &self.token {
            *known.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// A new portal session id.
    pub fn new_session(&self) -> Result<String, KvError> {
        self.sessions.create(Holder::Administrator)
    }

    /// End a session.
    pub fn end_session(&self, id: &str) -> Result<(), KvError> {
        self.sessions.end(id)
    }

    /// Whether the request carries the token or a live session; an error
    /// when the store cannot say whether its session is live.
    pub fn allows(&self, headers: &HeaderMap) -> Result<bool, KvError> {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.token_matches(bearer.trim());
        }
        match session_id(headers) {
            Some(id) => Ok(self.sessions.check(&id)? == Some(Holder::Administrator)),
            None => Ok(false),
        }
    }

    /// Who calls an agent route: the administrator first, else the agent
    /// session in the `pbx_agent` cookie (an admin session id in that
    /// cookie, or an agent's in `pbx_session`, counts for nothing).
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, KvError> {
        if self.allows(headers)? {
            return Ok(Caller::Administrator);
        }
        let holder = match cookie(headers, AGENT_COOKIE) {
            Some(id) => self.sessions.check(&id)?,
            None => None,
        };
        Ok(match holder {
            Some(holder @ Holder::Agent { .. }) => Caller::Agent(holder),
            _ => Caller::Anonymous,
        })
    }
}

/// The session id in the request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The admin token, created (mode 0600) at first start.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let token = token.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
        anyhow::bail!(
            "{} holds no valid admin token; delete it and restart to create a new one",
            path.display()
        );
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    crate::files::write_private(path, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// The store namespace of the fleet's admin token (on a shared store), in
/// each PBX's scope: a tenant's is its own administrator's.
const ADMIN_NAMESPACE: &str = "host/admin";

/// The store namespace of the operator token (root store).
const OPERATOR_NAMESPACE: &str = "host/operator";

/// The admin token of every replica sharing `store`: the one in the store
/// (sealed, as every value), which this replica then also keeps in `path`
/// for its CLI; the first replica puts its own there. On an unshared
/// store, the file's ([`load_or_create_token`]).
pub fn fleet_token(store: &Store, path: &Path) -> anyhow::Result<String> {
    shared_token(store, ADMIN_NAMESPACE, path, "admin")
}

/// The operator token, kept as the admin token is (`fleet_token`), in the
/// root store: it reaches the operator API and, through it, every tenant.
pub fn operator_token(store: &Store, path: &Path) -> anyhow::Result<String> {
    shared_token(&store.root(), OPERATOR_NAMESPACE, path, "operator")
}

/// A new admin token for the tenant whose store is `store`, replacing the
/// one there: left by an earlier attempt to add it (no record points to
/// it, so no one holds it), or the one the operator replaces.
pub fn new_tenant_token(store: &Store) -> Result<String, KvError> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    store
        .namespace(ADMIN_NAMESPACE, Quota::UNLIMITED)
        .set("token", token.as_bytes())?;
    Ok(token)
}

/// The admin token of the tenant whose store is `store`.
pub fn tenant_token(store: &Store) -> anyhow::Result<String> {
    let bytes = store
        .namespace(ADMIN_NAMESPACE, Quota::UNLIMITED)
        .get("token")
        .context("cannot read the tenant's admin token")?
        .context(
            "the tenant has no admin token; issue one with `pbx-host tenant new-token NAME`",
        )?;
    String::from_utf8(bytes)
        .ok()
        .filter(|t| t.len() >= 32)
        .context("the tenant's admin token is unreadable; issue a new one with `pbx-host tenant new-token NAME`")
}

fn shared_token(store: &Store, namespace: &str, path: &Path, what: &str) -> anyhow::Result<String> {
    if !store.is_shared() {
        return load_or_create_token(path);
    }
    let admin = store.namespace(namespace, Quota::UNLIMITED);
    let shared = |bytes: Vec<u8>| -> anyhow::Result<String> {
        let token = String::from_utf8(bytes)
            .ok()
            .filter(|t| t.len() >= 32)
            .with_context(|| format!("the shared store holds no valid {what} token; fix: restore the store from a backup, or start the fleet on a new one"))?;
        let local = std::fs::read_to_string(path).unwrap_or_default();
        if local.trim() != token {
            crate::files::write_private(path, format!("{token}\n").as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(file = %path.display(), "the fleet's {what} token is kept here");
        }
        Ok(token)
    };
    if let Some(bytes) = admin
        .get("token")
        .with_context(|| format!("cannot read the {what} token"))?
    {
        return shared(bytes);
    }
    let token = load_or_create_token(path)?;
    let first = admin.batch(
        &[Precondition {
            key: "token".into(),
            expected: None,
        }],
        &[Write::Set {
            key: "token".into(),
            value: token.clone().into_bytes(),
        }],
    );
    match first {
        Ok(()) => Ok(token),
        // Another replica started at the same moment and was first.
        Err(KvError::Conflict(_)) => shared(
            admin
                .get("token")
                .with_context(|| format!("cannot read the {what} token"))?
                .unwrap_or_default(),
        ),
        Err(e) => Err(anyhow::anyhow!("cannot keep the {what} token: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::sessions::Holder;

    #[test]
    fn a_new_tenant_token_holds_on_every_replica_and_the_old_one_stops_within_the_recheck() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store").tenant("acme");
        let old = new_tenant_token(&store).expect("token");
        // Two replicas of the tenant, each with its own view of the token.
        let here = Auth::new(
            AdminToken::Stored(old.clone()),
            &store,
            SessionPolicy::default(),
        );
        let there = Auth::new(
            AdminToken::Stored(old.clone()),
            &store,
            SessionPolicy::default(),
        );
        let start = Instant::now();
        assert!(there.token_matches_at(&old, start).expect("store"));
        let admin_session = there
            .sessions
            .create(Holder::Administrator)
            .expect("session");

        // The operator issues a new token on `here`.
        let new = new_tenant_token(&store).expect("token");
        here.token_replaced();
        assert_ne!(new, old);
        assert!(!here.token_matches_at(&old, start).expect("store"));
        assert!(here.token_matches_at(&new, start).expect("store"));
        assert_eq!(here.sessions.end_administrators().expect("store"), 1);
        assert_eq!(there.sessions.check(&admin_session).expect("store"), None);

        // `there` takes the new one at once (it does not match what it
        // knew, so it reads the store), and refuses the old one after.
        assert!(there.token_matches_at(&new, start).expect("store"));
        assert!(!there.token_matches_at(&old, start).expect("store"));

        // A replica that has not looked since refuses the old token once
        // the recheck interval has passed.
        let late = Auth::new(
            AdminToken::Stored(old.clone()),
            &store,
            SessionPolicy::default(),
        );
        assert!(
            late.token_matches_at(&old, start + TOKEN_RECHECK / 2)
                .expect("store"),
            "trusted within the interval"
        );
        assert!(
            !late
                .token_matches_at(&old, start + TOKEN_RECHECK * 2)
                .expect("store")
        );
        assert!(!late.token_matches_at("", start).expect("store"));

        // A removed tenant keeps no token: nothing matches.
        store.remove_tenant_data().expect("removed");
        assert!(
            !there
                .token_matches_at(&new, start + TOKEN_RECHECK * 2)
                .expect("store")
        );
    }

    #[test]
    fn the_host_s_own_token_is_fixed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let token = "f".repeat(64);
        let auth = Auth::new(
            AdminToken::Fixed(token.clone()),
            &store,
            SessionPolicy::default(),
        );
        assert!(auth.token_matches(&token).expect("store"));
        assert!(!auth.token_matches(&"e".repeat(64)).expect("store"));
        assert!(!auth.token_matches("").expect("store"));
    }
}
