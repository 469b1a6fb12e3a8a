//! The connection to one HubSpot account: the OAuth install (HubSpot's v1
//! token endpoints; HubSpot has no PKCE, the client secret proves the
//! app), the tokens and their refresh, the status, and disconnecting.
//!
//! Access tokens live 30 minutes and HubSpot advises refreshing by the
//! stored expiry: the SDK's single-flight refresh (`pbx_crm_sdk::session`)
//! refreshes a token within [`REFRESH_MARGIN_MS`] of its end, one instance
//! at a time under a kv lease; while one refreshes, the others keep using
//! the old token as long as it lives. The tokens are stored apart from the
//! connection's account and state (`connection/tokens`), as the SDK's
//! protocol fences on their exact bytes.
//!
//! The same install flow identifies an agent for `user-sign-in`
//! (`Purpose::SignIn`); only the administrator's tokens are kept.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{self, ApiError};
use crate::bindings::exports::pbx::crm::integration::{Authorization, ConnectionState, Status};
use crate::bindings::pbx::crm::http_fetch::Method;
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::Audience;
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::lease::Lease;
use crate::settings::Settings;
use pbx_crm_sdk::oauth::{FailureKind, OAuthClient, TokenFailure};
use pbx_crm_sdk::pkce;
use pbx_crm_sdk::session::{self, RefreshEnd, RefreshFailure, Sessions};
use pbx_crm_sdk::store::{Batch, SaveAgain, Store};

/// The scopes the install asks for: contacts (and calls, which take the
/// contacts scopes), owners, and companies read for caller lookup.
pub const SCOPES: &str = "crm.objects.contacts.read crm.objects.contacts.write crm.objects.owners.read crm.objects.companies.read";
/// A token this close to its end is refreshed before use (the SDK's
/// margin).
pub const REFRESH_MARGIN_MS: u64 = session::EXPIRY_MARGIN_MS;
/// An access token's life when HubSpot's answer does not say (its
/// documented 30 minutes).
const DEFAULT_LIFETIME_MS: u64 = 30 * 60 * 1000;
/// How long an install attempt's `state` is accepted.
pub const ATTEMPT_MS: u64 = 10 * 60 * 1000;

/// The tokens of the connected account, under `connection/tokens`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at_ms: u64,
    /// Bumped by every refresh (the SDK's fencing).
    #[serde(default)]
    pub generation: u64,
}

/// Masked: `{:?}` never shows a token.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Who and where the tokens are for (HubSpot's token information).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub hub_id: u64,
    pub hub_domain: String,
    pub user: String,
    #[serde(default)]
    pub user_id: Option<u64>,
}

/// The stored connection: whom it is for and its state (the tokens are
/// stored apart, under `connection/tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connection {
    pub account: Option<Account>,
    /// Why the administrator must authorize again, if so.
    pub reauth: Option<String>,
    pub disconnected: bool,
}

/// Whose install a `state` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    Admin,
    SignIn,
}

/// An install attempt, under `auth/{state}` until used or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub purpose: Purpose,
    pub callback_url: String,
    pub expires_at_ms: u64,
}

/// What a usable token comes with.
pub struct Session {
    pub access_token: String,
    pub api_base: String,
    pub app_base: String,
    pub hub_id: u64,
}

/// Why a completed install did not give tokens.
#[derive(Debug)]
pub enum Refused {
    /// The person declined on HubSpot's page.
    Denied(String),
    /// The state is unknown, used or expired.
    Expired,
    /// Anything else.
    Failed(PluginError),
}

impl From<PluginError> for Refused {
    fn from(e: PluginError) -> Self {
        Refused::Failed(e)
    }
}

impl From<Refused> for PluginError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Denied(why) => PluginError::AuthorizationFailed(format!(
                "the install was declined in HubSpot{}; start it again and approve it",
                if why.is_empty() { String::new() } else { format!(" ({why})") }
            )),
            Refused::Expired => PluginError::AuthorizationFailed(
                "this authorization link is unknown, used or expired; start the authorization again"
                    .into(),
            ),
            Refused::Failed(e) => e,
        }
    }
}

/// The tokens HubSpot answered and whom they are for.
pub struct Granted {
    pub tokens: Tokens,
    pub account: Account,
}

/// Connection management over a host.
pub struct Connector<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Connector<'h, H> {
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    fn settings(&self) -> Result<Settings, PluginError> {
        Ok(self.store().get(keys::SETTINGS)?.unwrap_or_default())
    }

    /// The stored connection with its raw bytes (for compare-and-swap).
    fn read(&self) -> Result<(Connection, Option<Vec<u8>>), PluginError> {
        Ok(match self.store().get_with_raw(keys::CONNECTION)? {
            Some((c, raw)) => (c, Some(raw)),
            None => (Connection::default(), None),
        })
    }

    /// The stored tokens, if connected.
    fn tokens(&self) -> Result<Option<Tokens>, PluginError> {
        self.store().get(keys::TOKENS)
    }

    /// The connected account, if any.
    pub fn account(&self) -> Option<Account> {
        match self.tokens() {
            Ok(Some(_)) => self.read().ok().and_then(|(c, _)| c.account),
            _ => None,
        }
    }

    /// A settings change that makes the tokens another app's drops them in
    /// the same write.
    pub fn on_settings_change(old: Option<&Settings>, next: &Settings, batch: Batch) -> Batch {
        match old {
            Some(old) if old.changes_connection(next) => {
                batch.delete(keys::CONNECTION).delete(keys::TOKENS)
            }
            _ => batch,
        }
    }

    // --- install ---------------------------------------------------------

    /// Start an install for `purpose`: remember a single-use `state` and
    /// build HubSpot's install URL for `callback_url`.
    pub fn begin(
        &self,
        callback_url: &str,
        purpose: Purpose,
    ) -> Result<(Authorization, String), PluginError> {
        let settings = self.settings()?;
        let (client_id, _) = settings.credentials()?;
        let callback = url::Url::parse(callback_url.trim()).map_err(|_| {
            PluginError::InvalidInput("the callback URL is not an absolute URL".into())
        })?;
        let state = pkce::random_token(self.host, 24);
        let expires_at_ms = self.host.now_ms() + ATTEMPT_MS;
        let attempt = Attempt {
            purpose,
            callback_url: callback.as_str().to_string(),
            expires_at_ms,
        };
        self.store()
            .put(&format!("{}{state}", keys::AUTH_PREFIX), &attempt)?;
        let mut url = url::Url::parse(&format!("{}/oauth/authorize", settings.app_base()))
            .map_err(|_| PluginError::InvalidInput("the HubSpot app URL is not a URL".into()))?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", callback.as_str())
            .append_pair("scope", SCOPES)
            .append_pair("state", &state);
        Ok((
            Authorization {
                url: url.into(),
                expires_at_ms,
            },
            state,
        ))
    }

    /// The administrator's install: begin, and open the page for them.
    pub fn begin_admin(&self, callback_url: &str) -> Result<Authorization, PluginError> {
        let (auth, _) = self.begin(callback_url, Purpose::Admin)?;
        if let Err(why) = self.host.open_browser(&auth.url, &Audience::Administrator) {
            // The URL is in the answer too: the portal shows it.
            self.host.log(
                Level::Info,
                &format!(
                    "could not open HubSpot's install page: {}",
                    crate::cut(&why, 200)
                ),
            );
        }
        Ok(auth)
    }

    /// Finish an install: check and spend the `state`, exchange the code,
    /// and read whom the tokens are for.
    pub fn exchange(
        &self,
        callback_url: &str,
        query: &str,
        purpose: Purpose,
    ) -> Result<Granted, Refused> {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let state = get("state").unwrap_or("");
        if !pkce::plausible_state(state) {
            return Err(Refused::Expired);
        }
        let key = format!("{}{state}", keys::AUTH_PREFIX);
        let store = self.store();
        let Some((attempt, raw)) = store.get_with_raw::<Attempt>(&key)? else {
            return Err(Refused::Expired);
        };
        // Spend the state first: a replayed callback finds it gone.
        store
            .commit(&Batch::new().expect_raw(&key, Some(raw)).delete(&key))
            .map_err(|_| Refused::Expired)?;
        if attempt.purpose != purpose || attempt.expires_at_ms <= self.host.now_ms() {
            return Err(Refused::Expired);
        }
        let callback = url::Url::parse(callback_url.trim()).map(String::from);
        if callback.as_deref().ok() != Some(attempt.callback_url.as_str()) {
            return Err(Refused::Failed(PluginError::AuthorizationFailed(
                "the callback URL differs from the one the authorization started with; start again"
                    .into(),
            )));
        }
        if let Some(error) = get("error") {
            let why = get("error_description").unwrap_or(error);
            return Err(Refused::Denied(crate::cut(why, 200)));
        }
        let code = get("code").filter(|c| !c.is_empty()).ok_or_else(|| {
            PluginError::AuthorizationFailed(
                "HubSpot's answer has no code; start the authorization again".into(),
            )
        })?;
        let settings = self.settings()?;
        let answer = oauth_client(self.host, &settings)?
            .exchange_code(code, &attempt.callback_url, None)
            .map_err(|f| match f.kind() {
                FailureKind::Transient => f.to_error("HubSpot"),
                _ => PluginError::AuthorizationFailed(format!(
                    "HubSpot did not accept the authorization ({}); check the Client ID and secret and start again",
                    said(&f)
                )),
            })?;
        let Some(refresh_token) = answer.refresh_token.clone() else {
            return Err(Refused::Failed(PluginError::AuthorizationFailed(
                "HubSpot's token answer has no refresh token; start the authorization again".into(),
            )));
        };
        let now = self.host.now_ms();
        let tokens = Tokens {
            access_token: answer.access_token.clone(),
            refresh_token,
            expires_at_ms: answer
                .expires_at_ms(now)
                .unwrap_or(now + DEFAULT_LIFETIME_MS),
            generation: 0,
        };
        let account = self.token_info(&settings, &tokens.access_token)?;
        Ok(Granted { tokens, account })
    }

    /// The administrator's install, finished: the tokens are stored.
    pub fn complete_admin(&self, callback_url: &str, query: &str) -> Result<Status, PluginError> {
        let granted = self.exchange(callback_url, query, Purpose::Admin)?;
        let connection = Connection {
            account: Some(granted.account),
            reauth: None,
            disconnected: false,
        };
        self.store().commit(
            &Batch::new()
                .set(keys::CONNECTION, &connection)?
                .set(keys::TOKENS, &granted.tokens)?,
        )?;
        self.host.log(Level::Info, "HubSpot connected");
        Ok(self.status())
    }

    /// `GET /oauth/v1/access-tokens/{token}`: the account and user.
    pub fn token_info(
        &self,
        settings: &Settings,
        access_token: &str,
    ) -> Result<Account, PluginError> {
        let response = api::send(
            self.host,
            Method::Get,
            &format!(
                "{}/oauth/v1/access-tokens/{}",
                settings.api_base(),
                api::segment(access_token)
            ),
            api::accept_json(),
            None,
        )
        .map_err(|e| {
            PluginError::AuthorizationFailed(format!(
                "HubSpot's token information failed ({e}); start the authorization again"
            ))
        })?;
        let v: Value = api::json(&response)?;
        let hub_id = v["hub_id"].as_u64().ok_or_else(|| {
            PluginError::AuthorizationFailed(
                "HubSpot's token information has no hub_id; start the authorization again".into(),
            )
        })?;
        Ok(Account {
            hub_id,
            hub_domain: v["hub_domain"].as_str().unwrap_or("").to_string(),
            user: v["user"].as_str().unwrap_or("").to_string(),
            user_id: v["user_id"].as_u64(),
        })
    }

    /// `DELETE /oauth/v1/refresh-tokens/{token}`.
    pub fn revoke(&self, settings: &Settings, refresh_token: &str) -> Result<(), ApiError> {
        api::send(
            self.host,
            Method::Delete,
            &format!(
                "{}/oauth/v1/refresh-tokens/{}",
                settings.api_base(),
                api::segment(refresh_token)
            ),
            api::accept_json(),
            None,
        )
        .map(drop)
    }

    // --- tokens ----------------------------------------------------------

    /// A usable access token, refreshed first if it is near its end.
    pub fn session(&self) -> Result<Session, PluginError> {
        let settings = self.settings()?;
        let Some(tokens) = self.tokens()? else {
            return Err(self.not_connected());
        };
        let now = self.host.now_ms();
        let lease = self.store().get_raw(keys::REFRESH_LEASE)?;
        // While another instance refreshes, a token that still lives
        // serves: no need to wait for the new one.
        let tokens =
            if tokens.expires_at_ms > now && Lease::<RefreshEnd>::live_raw(lease.as_deref(), now) {
                tokens
            } else {
                self.sessions(&settings).current()?
            };
        Ok(self.make(&settings, &tokens))
    }

    /// A new access token after `stale` was refused (unless another call
    /// has replaced it already).
    pub fn refresh_now(&self, stale: &str) -> Result<String, PluginError> {
        let settings = self.settings()?;
        let Some(tokens) = self.tokens()? else {
            return Err(self.not_connected());
        };
        if tokens.access_token != stale {
            return Ok(tokens.access_token);
        }
        Ok(self.sessions(&settings).after_expiry(&tokens)?.access_token)
    }

    fn sessions(&self, settings: &Settings) -> Sessions<'h, H, HubSession<'h, H>> {
        Sessions::new(
            self.host,
            HubSession {
                host: self.host,
                settings: settings.clone(),
            },
        )
    }

    fn make(&self, settings: &Settings, tokens: &Tokens) -> Session {
        Session {
            access_token: tokens.access_token.clone(),
            api_base: settings.api_base().to_string(),
            app_base: settings.app_base().to_string(),
            hub_id: self
                .read()
                .ok()
                .and_then(|(c, _)| c.account)
                .map_or(0, |a| a.hub_id),
        }
    }

    fn not_connected(&self) -> PluginError {
        not_connected(&self.read().map(|(c, _)| c).unwrap_or_default())
    }

    // --- status and disconnect -------------------------------------------

    /// The status the portal shows.
    pub fn status(&self) -> Status {
        let settings = self.settings().unwrap_or_default();
        let status = |state, account: Option<String>, message: &str| Status {
            state,
            account,
            message: message.into(),
            problem: None,
            api_usage: None,
        };
        if !settings.configured() {
            return status(
                ConnectionState::NotConfigured,
                None,
                "Enter the HubSpot app's Client ID and Client secret",
            );
        }
        let conn = match self.read() {
            Ok((conn, _)) => conn,
            Err(e) => return status(ConnectionState::Configured, None, &e.to_string()),
        };
        let tokens = match self.tokens() {
            Ok(tokens) => tokens,
            Err(e) => return status(ConnectionState::Configured, None, &e.to_string()),
        };
        match (&tokens, &conn.reauth) {
            (Some(_), _) => status(
                ConnectionState::Connected,
                conn.account
                    .as_ref()
                    .map(|a| format!("{} @ {} (hub {})", a.user, a.hub_domain, a.hub_id)),
                "Connected",
            ),
            (None, Some(why)) => status(ConnectionState::ReauthorizationNeeded, None, why),
            (None, None) if conn.disconnected => status(
                ConnectionState::Disconnected,
                None,
                "Disconnected; authorize again to reconnect",
            ),
            (None, None) => status(
                ConnectionState::Configured,
                None,
                "Authorize the HubSpot app to connect",
            ),
        }
    }

    /// Revoke the refresh token and forget the tokens; the settings and
    /// associations stay.
    pub fn disconnect(&self) -> Result<Status, PluginError> {
        let (conn, raw) = self.read()?;
        let tokens_raw = self.store().get_raw(keys::TOKENS)?;
        if let Some(tokens) = self.tokens()? {
            let settings = self.settings()?;
            if let Err(e) = self.revoke(&settings, &tokens.refresh_token) {
                // Forgetting the tokens is what matters locally; HubSpot's
                // side can be revoked from its Connected apps page.
                self.host.log(
                    Level::Warn,
                    &format!("HubSpot did not revoke the refresh token: {e}"),
                );
            }
        }
        let next = Connection {
            account: conn.account,
            reauth: None,
            disconnected: true,
        };
        self.store().commit(
            &Batch::new()
                .expect_raw(keys::CONNECTION, raw)
                .expect_raw(keys::TOKENS, tokens_raw)
                .set(keys::CONNECTION, &next)?
                .delete(keys::TOKENS),
        )?;
        self.host.log(Level::Info, "HubSpot disconnected");
        Ok(self.status())
    }
}

fn not_connected(conn: &Connection) -> PluginError {
    match &conn.reauth {
        Some(why) => PluginError::NotConnected(why.clone()),
        None => PluginError::NotConnected(
            "HubSpot is not connected: authorize the HubSpot app in the PBX portal".into(),
        ),
    }
}

/// HubSpot's side of the SDK's single-flight refresh.
struct HubSession<'h, H: Host> {
    host: &'h H,
    settings: Settings,
}

impl<H: Host> session::Session for HubSession<'_, H> {
    type Tokens = Tokens;
    type Repair = SaveAgain;
    const CRM: &'static str = "HubSpot";
    const TOKENS_KEY: &'static str = keys::TOKENS;
    const LEASE_KEY: &'static str = keys::REFRESH_LEASE;

    fn generation(tokens: &Tokens) -> u64 {
        tokens.generation
    }

    fn same_session(a: &Tokens, b: &Tokens) -> bool {
        a.generation == b.generation && a.access_token == b.access_token
    }

    fn expires_at_ms(tokens: &Tokens) -> Option<u64> {
        Some(tokens.expires_at_ms)
    }

    /// `grant_type=refresh_token`; HubSpot answers the same refresh token
    /// (kept when an answer omits it). `BAD_REFRESH_TOKEN` (the app was
    /// uninstalled or the token revoked) ends the connection.
    fn refresh(&self, current: &Tokens) -> Result<Tokens, RefreshFailure> {
        let client = oauth_client(self.host, &self.settings).map_err(RefreshFailure::Failed)?;
        match client.refresh(&current.refresh_token) {
            Ok(answer) => {
                let now = self.host.now_ms();
                Ok(Tokens {
                    access_token: answer.access_token.clone(),
                    refresh_token: answer
                        .refresh_token
                        .clone()
                        .unwrap_or_else(|| current.refresh_token.clone()),
                    expires_at_ms: answer
                        .expires_at_ms(now)
                        .unwrap_or(now + DEFAULT_LIFETIME_MS),
                    generation: current.generation + 1,
                })
            }
            Err(f) if f.kind() == FailureKind::Revoked => Err(RefreshFailure::Revoked(format!(
                "HubSpot refused the refresh token ({}); authorize the app again",
                said(&f)
            ))),
            Err(f) => Err(RefreshFailure::Failed(f.to_error("HubSpot"))),
        }
    }

    fn hold_off(&self, now_ms: u64) -> Option<PluginError> {
        let until: u64 = Store::<H>::new(self.host)
            .get(keys::RATE_LIMITED_UNTIL)
            .ok()
            .flatten()?;
        (until > now_ms).then(|| {
            PluginError::RateLimited(format!(
                "HubSpot's rate limit was reached; retrying after {} s",
                (until - now_ms).div_ceil(1000)
            ))
        })
    }

    fn record_revoked(&self, batch: Batch, reason: &str) -> Result<Batch, PluginError> {
        let mut conn: Connection = Store::<H>::new(self.host)
            .get(keys::CONNECTION)?
            .unwrap_or_default();
        conn.reauth = Some(reason.to_string());
        batch.set(keys::CONNECTION, &conn)
    }

    fn not_connected(&self) -> PluginError {
        Connector::new(self.host).not_connected()
    }
}

/// HubSpot's token endpoint (`POST /oauth/v1/token`) with the app's
/// credentials, through the SDK's OAuth client.
fn oauth_client<'h, H: Host>(
    host: &'h H,
    settings: &Settings,
) -> Result<OAuthClient<'h, H>, PluginError> {
    let (client_id, secret) = settings.credentials()?;
    Ok(OAuthClient::new(
        host,
        &format!("{}/oauth/v1/token", settings.api_base()),
        client_id,
        secret,
    ))
}

/// What HubSpot said about a failed token request (its code and message),
/// else what went wrong; never a token.
fn said(f: &TokenFailure) -> String {
    match f {
        TokenFailure::OAuth {
            error, description, ..
        } => TokenFailure::quoted(error, description),
        other => other.to_error("HubSpot").to_string(),
    }
}
