//! Who may use the admin API and the portal: the admin token (CLI, scripts)
//! as a bearer token, or a portal session cookie obtained with that token.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The portal's session cookie.
pub const SESSION_COOKIE: &str = "pbx_session";

/// Token and sessions.
pub struct Auth {
    token: String,
    sessions: Mutex<HashSet<String>>,
}

impl Auth {
    /// The admin token, with no session yet.
    pub fn new(token: String) -> Self {
        Self {
            token,
            sessions: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `candidate` is the admin token (constant time).
    pub fn token_matches(&self, candidate: &str) -> bool {
        candidate.as_bytes().ct_eq(self.token.as_bytes()).into()
    }

    /// A new portal session id.
    pub fn new_session(&self) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        id
    }

    /// End a session.
    pub fn end_session(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Whether the request carries the token or a live session.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.token_matches(bearer.trim());
        }
        session_id(headers).is_some_and(|id| {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
        })
    }
}

/// The session id in the request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
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
