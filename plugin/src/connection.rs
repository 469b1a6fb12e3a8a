//! The connection to Salesforce: authorizing (begin and complete), the
//! stored tokens and connection record, disconnecting, and the status the
//! portal shows.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::bindings::exports::pbx::crm::integration::{Authorization, ConnectionState, Status};
use crate::error::PluginError;
use crate::host::Host;
use crate::oauth::{self, Attempt, OAuthClient, TokenFailure};

/// A syntactically valid PKCE verifier for the preflight's fake code.
const PREFLIGHT_VERIFIER: &str = "pbx-preflight-verifier-0000000000000000000000000";
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::Audience;
use crate::salesforce::Backoff;
use crate::settings::Settings;
use crate::store::{Batch, Store, decode, keys};
use crate::time::clock;

/// At most this many stored attempts are looked at per pruning pass, so a
/// flood of abandoned attempts cannot make one call slow.
const PRUNE_LIMIT: usize = 64;

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
}

/// The connection feature over a host.
pub struct Connector<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Connector<'h, H> {
    /// The connector over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    /// The app's OAuth client from complete settings, with the raw bytes the
    /// settings were read as; or the NotConfigured error naming what to
    /// enter.
    fn app(&self) -> Result<(OAuthClient<'h, H>, Option<Vec<u8>>), PluginError> {
        let raw = self.store().get_raw(keys::SETTINGS)?;
        let settings: Settings = match &raw {
            None => Settings::default(),
            Some(bytes) => decode(keys::SETTINGS, bytes)?,
        };
        Ok((OAuthClient::from_settings(self.host, &settings)?, raw))
    }

    /// Start an authorization for `callback_url`: remember the attempt, ask
    /// the host to open the consent page, and return its URL.
    pub fn begin(&self, callback_url: &str) -> Result<Authorization, PluginError> {
        let (oauth, _) = self.app()?;
        let callback_url = checked_callback(callback_url)?;
        self.preflight(&oauth, &callback_url)?;
        self.prune_attempts();

        let state = oauth::random_token(self.host, 32);
        let verifier = oauth::new_verifier(self.host);
        let url = oauth::authorize_url(
            oauth.login_url(),
            oauth.client_id(),
            &callback_url,
            &state,
            &oauth::pkce_challenge(&verifier),
        )?;
        let now = self.host.now_ms();
        let attempt = Attempt {
            verifier,
            callback_url,
            login_url: oauth.login_url().to_string(),
            client_id: oauth.client_id().to_string(),
            created_at_ms: now,
            expires_at_ms: now + oauth::ATTEMPT_TTL_MS,
        };
        // The state is 32 fresh random bytes: a clash is a broken random
        // source, which the precondition turns into an error.
        self.store().commit(
            &Batch::new()
                .expect_raw(&keys::attempt(&state), None)
                .set(&keys::attempt(&state), &attempt)?,
        )?;
        if let Err(why) = self.host.open_browser(&url, &Audience::Administrator) {
            // The portal also shows the URL, so a host that cannot open a
            // browser does not stop the administrator.
            self.host.log(
                Level::Warn,
                &format!(
                    "could not open Salesforce's consent page for the administrator ({}); the portal shows its link",
                    crate::http::sanitize(&why)
                ),
            );
        }
        self.host.log(
            Level::Info,
            &format!(
                "Salesforce authorization started on {}; it expires at {}",
                attempt.login_url,
                clock(attempt.expires_at_ms)
            ),
        );
        Ok(Authorization {
            url,
            expires_at_ms: attempt.expires_at_ms,
        })
    }

    /// Check the login host and the Consumer Key before sending the
    /// administrator to Salesforce, so those mistakes show in the portal at
    /// Save instead of on Salesforce's error page. A token request with a
    /// code that cannot exist answers `invalid_client_id` for an unknown key
    /// and cannot connect to a login host the PBX may not reach; any other
    /// answer (normally `invalid_grant`) says both are fine.
    fn preflight(&self, oauth: &OAuthClient<'h, H>, callback_url: &str) -> Result<(), PluginError> {
        let login_url = oauth.login_url();
        match oauth.exchange_code("pbx-preflight-not-a-code", callback_url, PREFLIGHT_VERIFIER) {
            Err(failure @ TokenFailure::OAuth { .. })
                if failure.oauth_error() == Some("invalid_client_id") =>
            {
                Err(failure.for_authorization(callback_url, login_url))
            }
            Err(failure @ TokenFailure::Fetch(_)) => {
                Err(failure.for_authorization(callback_url, login_url))
            }
            _ => Ok(()),
        }
    }

    /// Delete expired or unreadable attempts. Best effort: a failure here
    /// must not stop a new authorization.
    fn prune_attempts(&self) {
        let store = self.store();
        let Ok(keys) = store.keys(keys::ATTEMPT_PREFIX) else {
            return;
        };
        let now = self.host.now_ms();
        for key in keys.into_iter().take(PRUNE_LIMIT) {
            let stale = match store.get::<Attempt>(&key) {
                Ok(Some(attempt)) => attempt.expires_at_ms <= now,
                Ok(None) => false,
                Err(_) => true,
            };
            if stale {
                let _ = store.delete(&key);
            }
        }
    }

    /// Finish an authorization with the callback's raw query string.
    pub fn complete(&self, callback_url: &str, query: &str) -> Result<Status, PluginError> {
        let start_again = "start the authorization again from the PBX portal (click Save)";
        let params = Callback::parse(query);
        let (oauth, settings_raw) = self.app()?;

        // Find the attempt first: an error answer consumes it too, so the
        // same state cannot be completed later.
        let attempt = match params.state.as_deref() {
            Some(state) if oauth::plausible_state(state) => {
                let key = keys::attempt(state);
                self.store()
                    .get_raw(&key)?
                    .map(|raw| (key, serde_json::from_slice::<Attempt>(&raw).ok(), raw))
            }
            _ => None,
        };

        if let Some(error) = &params.error {
            if let Some((key, _, raw)) = &attempt {
                let _ = self
                    .store()
                    .commit(&Batch::new().expect_raw(key, Some(raw.clone())).delete(key));
            }
            let said = match params
                .error_description
                .as_deref()
                .map(crate::http::sanitize)
            {
                Some(d) if !d.is_empty() => format!(" (Salesforce: \"{d}\")"),
                _ => String::new(),
            };
            let message = if error == "access_denied" || error == "access-denied" {
                format!(
                    "Salesforce access was denied (the Deny button was clicked){said}: click Save again and choose Allow"
                )
            } else {
                format!(
                    "Salesforce did not authorize the PBX ({}){said}: check the app's settings in Salesforce, then click Save again",
                    crate::http::sanitize(error)
                )
            };
            self.host.log(
                Level::Warn,
                &format!("Salesforce authorization failed: {message}"),
            );
            return Err(PluginError::AuthorizationFailed(message));
        }

        let Some(state) = params.state.as_deref() else {
            return Err(PluginError::AuthorizationFailed(format!(
                "the answer from Salesforce has no state parameter, so the PBX cannot tell which authorization it belongs to: {start_again}"
            )));
        };
        let Some((key, attempt, raw)) = attempt else {
            self.host.log(
                Level::Warn,
                &format!(
                    "an authorization callback with an unknown state ({} characters) was refused",
                    state.len()
                ),
            );
            return Err(PluginError::AuthorizationFailed(format!(
                "this authorization is unknown, was already used or was replaced: {start_again}"
            )));
        };
        let Some(attempt) = attempt else {
            let _ = self.store().delete(&key);
            return Err(PluginError::AuthorizationFailed(format!(
                "the stored authorization attempt is unreadable: {start_again}"
            )));
        };
        let now = self.host.now_ms();
        if now >= attempt.expires_at_ms {
            let _ = self
                .store()
                .commit(&Batch::new().expect_raw(&key, Some(raw)).delete(&key));
            return Err(PluginError::AuthorizationFailed(format!(
                "this authorization expired at {} (an attempt lasts 10 minutes): {start_again}",
                clock(attempt.expires_at_ms)
            )));
        }
        if !same_callback(&attempt.callback_url, callback_url) {
            return Err(PluginError::AuthorizationFailed(format!(
                "this authorization was started for the callback URL {}, not {}: {start_again}",
                attempt.callback_url,
                crate::http::sanitize(callback_url)
            )));
        }
        if attempt.login_url != oauth.login_url() || attempt.client_id != oauth.client_id() {
            let _ = self
                .store()
                .commit(&Batch::new().expect_raw(&key, Some(raw)).delete(&key));
            return Err(PluginError::AuthorizationFailed(format!(
                "the Consumer Key or login host changed after this authorization started: {start_again}"
            )));
        }
        let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
            let _ = self
                .store()
                .commit(&Batch::new().expect_raw(&key, Some(raw)).delete(&key));
            return Err(PluginError::AuthorizationFailed(format!(
                "the answer from Salesforce has neither a code nor an error: {start_again}"
            )));
        };

        // Consume the attempt before using the code: of two deliveries of
        // the same callback only one gets past this, so a code is exchanged
        // at most once.
        match self
            .store()
            .commit(&Batch::new().expect_raw(&key, Some(raw)).delete(&key))
        {
            Ok(()) => {}
            Err(PluginError::Conflict(_)) => {
                return Err(PluginError::AuthorizationFailed(format!(
                    "this authorization is already being completed or was used: {start_again}"
                )));
            }
            Err(e) => return Err(e),
        }

        let answer = oauth
            .exchange_code(code, &attempt.callback_url, &attempt.verifier)
            .map_err(|f| {
                let error = f.for_authorization(&attempt.callback_url, oauth.login_url());
                self.host.log(
                    Level::Warn,
                    &format!("Salesforce authorization failed: {error}"),
                );
                error
            })?;
        if !oauth.signed(&answer) {
            let message = "the answer's signature does not match the Consumer Secret: check the secret (enter it again and click Save), and that nothing between the PBX and Salesforce alters traffic";
            self.host.log(
                Level::Warn,
                &format!("Salesforce authorization failed: {message}"),
            );
            return Err(PluginError::AuthorizationFailed(message.into()));
        }
        let (Some(id_url), Some(instance_url)) = (answer.id.clone(), answer.instance_url.clone())
        else {
            return Err(PluginError::CrmUnavailable(
                "Salesforce's token answer lacks the identity or instance URL; try again, and check that the login host is a Salesforce login URL".into(),
            ));
        };
        let instance_url = checked_instance_url(&instance_url)?;
        let identity = oauth::identity(self.host, &id_url, &answer.access_token)?;
        let (org_from_url, user_from_url) = ids_from_identity_url(&id_url);

        let previous: Option<Tokens> = self.store().get(keys::TOKENS).ok().flatten();
        let tokens = Tokens {
            access_token: answer.access_token.clone(),
            refresh_token: answer.refresh_token.clone(),
            instance_url,
            id_url,
            issued_at_ms: answer.issued_at_ms().unwrap_or(now),
            scope: answer.scope.clone().unwrap_or_default(),
            generation: previous.map_or(1, |t| t.generation + 1),
            login_url: oauth.login_url().to_string(),
            client_id: oauth.client_id().to_string(),
        };
        let record = ConnectionRecord {
            state: LinkState::Connected,
            username: identity.username.clone(),
            display_name: identity.display_name.clone(),
            organization_id: identity.organization_id.clone().or(org_from_url),
            user_id: identity.user_id.clone().or(user_from_url),
            connected_at_ms: Some(now),
            changed_at_ms: now,
            reason: None,
            problem: None,
        };
        // Tokens and record in one batch, and only if the settings are still
        // the ones the code was exchanged with (a concurrent Save of another
        // app's key must not get this app's tokens).
        let batch = Batch::new()
            .expect_raw(keys::SETTINGS, settings_raw)
            .set(keys::TOKENS, &tokens)?
            .set(keys::CONNECTION, &record)?
            .delete(keys::REFRESH_LEASE)
            .delete(keys::BACKOFF);
        self.store().commit(&batch).map_err(|e| match e {
            PluginError::Conflict(_) => PluginError::AuthorizationFailed(format!(
                "the settings were changed while the authorization completed: {start_again}"
            )),
            other => other,
        })?;
        if tokens.refresh_token.is_none() {
            self.host.log(
                Level::Warn,
                "Salesforce gave no refresh token: add the \"refresh_token, offline_access\" scope to the app, or the connection ends when the session expires",
            );
        }
        self.host.log(
            Level::Info,
            &format!(
                "connected to Salesforce as {}",
                record.account().unwrap_or_else(|| "an unknown user".into())
            ),
        );
        Ok(self.status())
    }

    /// Revoke the session at Salesforce and forget the tokens, keeping the
    /// settings and everything else.
    pub fn disconnect(&self) -> Result<Status, PluginError> {
        let store = self.store();
        let tokens: Option<Tokens> = store.get(keys::TOKENS).unwrap_or(None);
        let record: Option<ConnectionRecord> = store.get(keys::CONNECTION).unwrap_or(None);
        if tokens.is_none() && record.is_none() {
            // Never connected: nothing to undo.
            return Ok(self.status());
        }
        let now = self.host.now_ms();
        let problem = match &tokens {
            Some(tokens) => {
                let token = tokens
                    .refresh_token
                    .as_deref()
                    .unwrap_or(&tokens.access_token);
                match OAuthClient::revoker(self.host, &tokens.login_url).revoke(token) {
                    Ok(()) => None,
                    Err(failure) => Some(format!(
                        "the token could not be revoked at Salesforce ({}): revoke it in Salesforce Setup > Connected Apps OAuth Usage",
                        failure.describe(&tokens.login_url)
                    )),
                }
            }
            None => None,
        };
        let mut record = record.unwrap_or(ConnectionRecord {
            state: LinkState::Disconnected,
            username: None,
            display_name: None,
            organization_id: None,
            user_id: None,
            connected_at_ms: None,
            changed_at_ms: now,
            reason: None,
            problem: None,
        });
        record.state = LinkState::Disconnected;
        record.changed_at_ms = now;
        record.reason = None;
        record.problem = problem;
        // The administrator's intent wins over a refresh in flight: no
        // precondition on the tokens.
        store.commit(
            &Batch::new()
                .delete(keys::TOKENS)
                .delete(keys::REFRESH_LEASE)
                .delete(keys::BACKOFF)
                .set(keys::CONNECTION, &record)?,
        )?;
        match &record.problem {
            Some(p) => self.host.log(
                Level::Warn,
                &format!("disconnected from Salesforce, but {p}"),
            ),
            None => self.host.log(Level::Info, "disconnected from Salesforce"),
        }
        Ok(self.status())
    }

    /// The status the portal shows.
    pub fn status(&self) -> Status {
        let store = self.store();
        let settings = match store.get::<Settings>(keys::SETTINGS) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                return Status {
                    state: ConnectionState::NotConfigured,
                    account: None,
                    message: "The stored settings cannot be read; save them again".into(),
                    problem: Some(e.to_string()),
                };
            }
        };
        if !settings.is_complete() {
            return Status {
                state: ConnectionState::NotConfigured,
                account: None,
                message: "Not configured: enter the Consumer Key and Consumer Secret of your Salesforce app".into(),
                problem: None,
            };
        }
        let record = match store.get::<ConnectionRecord>(keys::CONNECTION) {
            Ok(r) => r,
            Err(e) => {
                return Status {
                    state: ConnectionState::ReauthorizationNeeded,
                    account: None,
                    message: "The connection record cannot be read: authorize again (click Save)"
                        .into(),
                    problem: Some(e.to_string()),
                };
            }
        };
        let Some(record) = record else {
            return Status {
                state: ConnectionState::Configured,
                account: None,
                message: "Configured: click Save to authorize the connection to Salesforce".into(),
                problem: None,
            };
        };
        let now = self.host.now_ms();
        let backoff = store
            .get::<Backoff>(keys::BACKOFF)
            .ok()
            .flatten()
            .map(|b| b.problem(now));
        match record.state {
            LinkState::Connected => {
                let has_tokens = matches!(store.get_raw(keys::TOKENS), Ok(Some(_)));
                if has_tokens {
                    Status {
                        state: ConnectionState::Connected,
                        account: record.account(),
                        message: "Connected to Salesforce".into(),
                        problem: backoff.or(record.problem.clone()),
                    }
                } else {
                    Status {
                        state: ConnectionState::ReauthorizationNeeded,
                        account: record.account(),
                        message:
                            "The stored Salesforce tokens are missing: authorize again (click Save)"
                                .into(),
                        problem: None,
                    }
                }
            }
            LinkState::ReauthorizationNeeded => Status {
                state: ConnectionState::ReauthorizationNeeded,
                account: record.account(),
                message: record.reason.clone().unwrap_or_else(|| {
                    "Salesforce refused the stored authorization: authorize again (click Save)"
                        .into()
                }),
                problem: record.problem.clone(),
            },
            LinkState::Disconnected => Status {
                state: ConnectionState::Disconnected,
                account: None,
                message: "Disconnected from Salesforce: click Save to authorize again".into(),
                problem: record.problem.clone(),
            },
        }
    }

    /// Add to a settings `batch` what a change of app or login host means:
    /// tokens of another app or org are useless, so they go in the same
    /// batch and the status returns to Configured.
    pub fn on_settings_change(old: Option<&Settings>, new: &Settings, batch: Batch) -> Batch {
        let app = |s: &Settings| (s.consumer_key.clone(), s.login_url().ok());
        if old.map(app) == Some(app(new)) {
            return batch;
        }
        batch
            .delete(keys::TOKENS)
            .delete(keys::CONNECTION)
            .delete(keys::REFRESH_LEASE)
            .delete(keys::BACKOFF)
    }
}

/// The parameters of a callback query.
#[derive(Default)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Callback {
    /// Parse a raw query string (a leading `?` is tolerated); the first of a
    /// repeated parameter wins.
    fn parse(query: &str) -> Self {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut out = Callback::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut out.code,
                "state" => &mut out.state,
                "error" => &mut out.error,
                "error_description" => &mut out.error_description,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        out
    }
}

/// The callback URL, checked to be an absolute http(s) URL.
fn checked_callback(callback_url: &str) -> Result<String, PluginError> {
    let trimmed = callback_url.trim();
    match Url::parse(trimmed) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => {
            Ok(trimmed.to_string())
        }
        _ => Err(PluginError::InvalidInput(format!(
            "the callback URL {:?} is not an absolute http(s) URL: set the PBX's public URL (its FQDN)",
            crate::http::sanitize(callback_url)
        ))),
    }
}

/// Whether two callback URLs are the same (ignoring surrounding space).
fn same_callback(a: &str, b: &str) -> bool {
    a.trim() == b.trim()
}

/// The instance URL, checked to be https (Salesforce serves only https; the
/// emulator too), without a trailing slash.
fn checked_instance_url(instance_url: &str) -> Result<String, PluginError> {
    match Url::parse(instance_url) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {
            Ok(instance_url.trim_end_matches('/').to_string())
        }
        _ => Err(PluginError::CrmUnavailable(format!(
            "Salesforce's token answer names an unusable instance URL {:?}: check the login host",
            crate::http::sanitize(instance_url)
        ))),
    }
}

/// The org and user ids at the end of an identity URL
/// (`https://login.salesforce.com/id/<org>/<user>`).
fn ids_from_identity_url(id_url: &str) -> (Option<String>, Option<String>) {
    let Ok(url) = Url::parse(id_url) else {
        return (None, None);
    };
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    match segments.as_slice() {
        [.., "id", org, user] => (Some((*org).to_string()), Some((*user).to_string())),
        _ => (None, None),
    }
}
