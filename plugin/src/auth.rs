//! What an authorization leaves in the kv-store: the OAuth tokens
//! (`auth/tokens`) and the connection record (`connection`) the portal's
//! state is derived from. Apart from `connection` (which writes them) so
//! that the REST client in `salesforce` can read them without importing
//! the connector, which itself reads the client's back-off.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The OAuth tokens, stored under `auth/tokens`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The session token sent as `Authorization: Bearer`.
    pub access_token: String,
    /// The refresh token; absent when the app's scopes lack `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The org's data host (REST calls go there, not to the login host).
    pub instance_url: String,
    /// The identity URL.
    pub id_url: String,
    /// When Salesforce issued the access token, ms since the Unix epoch.
    pub issued_at_ms: u64,
    /// The granted scopes, space separated.
    #[serde(default)]
    pub scope: String,
    /// Bumped by every refresh, so an instance that got a 401 can tell
    /// whether someone else already refreshed.
    pub generation: u64,
    /// The login host that issued the tokens (refreshes go there).
    pub login_url: String,
    /// The Consumer Key the tokens belong to.
    pub client_id: String,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("instance_url", &self.instance_url)
            .field("id_url", &self.id_url)
            .field("issued_at_ms", &self.issued_at_ms)
            .field("scope", &self.scope)
            .field("generation", &self.generation)
            .field("login_url", &self.login_url)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl Tokens {
    /// Whether `other` is the same session (same refresh generation and the
    /// same access token: comparing the token too keeps a disconnect and
    /// re-authorization, which restarts generations, from looking alike).
    pub fn same_session(&self, other: &Tokens) -> bool {
        self.generation == other.generation && self.access_token == other.access_token
    }
}

/// The connection's stored state (the portal's state is derived from it and
/// from the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// Authorized; tokens are stored.
    Connected,
    /// Salesforce refused the refresh token; tokens were deleted.
    ReauthorizationNeeded,
    /// The administrator disconnected; tokens were deleted.
    Disconnected,
}

/// The connection record, stored under `connection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The state.
    pub state: LinkState,
    /// The authorized user's login name.
    #[serde(default)]
    pub username: Option<String>,
    /// The authorized user's full name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The org's id (00D...).
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The user's id (005...).
    #[serde(default)]
    pub user_id: Option<String>,
    /// When the authorization completed, ms since the Unix epoch.
    #[serde(default)]
    pub connected_at_ms: Option<u64>,
    /// When the state last changed.
    #[serde(default)]
    pub changed_at_ms: u64,
    /// Why re-authorization is needed.
    #[serde(default)]
    pub reason: Option<String>,
    /// A problem to show beside the state (a revocation that failed).
    #[serde(default)]
    pub problem: Option<String>,
}

impl ConnectionRecord {
    /// The account as the portal shows it: "admin@example.org (org 00D...)".
    pub fn account(&self) -> Option<String> {
        let who = self
            .username
            .clone()
            .or_else(|| self.display_name.clone())
            .or_else(|| self.user_id.clone())?;
        Some(match &self.organization_id {
            Some(org) => format!("{who} (org {org})"),
            None => who,
        })
    }

    /// A record in `state` since `now` that knows no account (none was
    /// stored before).
    pub fn without_account(state: LinkState, now: u64) -> Self {
        Self {
            state,
            username: None,
            display_name: None,
            organization_id: None,
            user_id: None,
            connected_at_ms: None,
            changed_at_ms: now,
            reason: None,
            problem: None,
        }
    }
}
