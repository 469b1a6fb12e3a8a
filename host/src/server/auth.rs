//! Who may use the admin API and the portal: the admin token (CLI, scripts)
//! as a bearer token, or a portal session cookie obtained with that token;
//! and who an agent page's caller is (the administrator, or an agent
//! session scoped to one extension). The sessions themselves live in
//! `sessions`.

use std::path::Path;

use anyhow::Context;
use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::sessions::{AGENT_COOKIE, Holder, LoginLimiter, SessionPolicy, Sessions, cookie};
use crate::store::{KvError, Precondition, Quota, Store, Write};

/// The portal's session cookie.
pub const SESSION_COOKIE: &str = "pbx_session";

/// Who may call what: the token, the sessions, the login rate limit.
pub struct Auth {
    token: String,
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

impl Auth {
    /// The admin token, the sessions in `store`.
    pub fn new(token: String, store: &Store, policy: SessionPolicy) -> Self {
        Self {
            token,
            sessions: Sessions::new(store, policy),
            limiter: LoginLimiter::default(),
        }
    }

    /// Whether `candidate` is the admin token (constant time).
    pub fn token_matches(&self, candidate: &str) -> bool {
        candidate.as_bytes().ct_eq(self.token.as_bytes()).into()
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
            return Ok(self.token_matches(bearer.trim()));
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

/// A new admin token for the tenant whose store is `store`, replacing any
/// left there by an earlier attempt to add it (no record points to it, so
/// no one holds it).
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
        .context("the tenant has no admin token; remove it and add it again")?;
    String::from_utf8(bytes)
        .ok()
        .filter(|t| t.len() >= 32)
        .context("the tenant's admin token is unreadable; remove it and add it again")
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
