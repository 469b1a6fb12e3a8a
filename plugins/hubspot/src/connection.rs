//! The connection to one HubSpot account: the OAuth install (HubSpot's v1
//! token endpoints; HubSpot has no PKCE, the client secret proves the
//! app), the tokens and their refresh, the status, and disconnecting.
//!
//! Access tokens live 30 minutes and HubSpot advises refreshing by the
//! stored expiry, so a token within [`REFRESH_MARGIN_MS`] of its end is
//! refreshed before use. Concurrent calls share one refresh: the first
//! takes a kv lease and refreshes, the others keep using the old token
//! while it is still valid, or wait briefly for the new one.
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
use crate::lease::{LEASE_MS, Lease, Until};
use crate::settings::Settings;
use pbx_crm_sdk::pkce;
use pbx_crm_sdk::store::{Batch, Store};

/// The scopes the install asks for: contacts (and calls, which take the
/// contacts scopes), owners, and companies read for caller lookup.
pub const SCOPES: &str = "crm.objects.contacts.read crm.objects.contacts.write crm.objects.owners.read crm.objects.companies.read";
/// A token this close to its end is refreshed before use.
pub const REFRESH_MARGIN_MS: u64 = 5 * 60 * 1000;
/// How long an install attempt's `state` is accepted.
pub const ATTEMPT_MS: u64 = 10 * 60 * 1000;
/// How often and how long a call waits for another instance's refresh.
const WAIT_ROUNDS: u32 = 25;
const WAIT_MS: u64 = 200;

/// The tokens of the connected account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at_ms: u64,
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

/// The stored connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connection {
    pub tokens: Option<Tokens>,
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

    /// The connected account, if any.
    pub fn account(&self) -> Option<Account> {
        self.read().ok().and_then(|(c, _)| c.tokens.and(c.account))
    }

    /// A settings change that makes the tokens another app's drops them in
    /// the same write.
    pub fn on_settings_change(old: Option<&Settings>, next: &Settings, batch: Batch) -> Batch {
        match old {
            Some(old) if old.changes_connection(next) => batch.delete(keys::CONNECTION),
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
                &format!("could not open HubSpot's install page: {}", crate::cut(&why, 200)),
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
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
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
        let (client_id, secret) = settings.credentials()?;
        let tokens = self
            .token_request(
                &settings,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                    ("redirect_uri", &attempt.callback_url),
                    ("code", code),
                ],
            )
            .map_err(|e| {
                PluginError::AuthorizationFailed(format!(
                    "HubSpot did not accept the authorization ({e}); check the Client ID and secret and start again"
                ))
            })?;
        let account = self.token_info(&settings, &tokens.access_token)?;
        Ok(Granted { tokens, account })
    }

    /// The administrator's install, finished: the tokens are stored.
    pub fn complete_admin(&self, callback_url: &str, query: &str) -> Result<Status, PluginError> {
        let granted = self.exchange(callback_url, query, Purpose::Admin)?;
        let connection = Connection {
            tokens: Some(granted.tokens),
            account: Some(granted.account),
            reauth: None,
            disconnected: false,
        };
        self.store().put(keys::CONNECTION, &connection)?;
        self.host.log(Level::Info, "HubSpot connected");
        Ok(self.status())
    }

    /// `POST /oauth/v1/token` with `form`.
    fn token_request(&self, settings: &Settings, form: &[(&str, &str)]) -> Result<Tokens, ApiError> {
        let response = api::send(
            self.host,
            Method::Post,
            &format!("{}/oauth/v1/token", settings.api_base()),
            api::form_headers(),
            Some(api::form(form)),
        )?;
        let v = api::json(&response)?;
        let text = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        match (text("access_token"), text("refresh_token")) {
            (Some(access_token), Some(refresh_token)) => Ok(Tokens {
                access_token,
                refresh_token,
                expires_at_ms: self.host.now_ms()
                    + v["expires_in"].as_u64().unwrap_or(1800).saturating_mul(1000),
            }),
            _ => Err(ApiError::Unavailable(
                "the token answer has no access or refresh token".into(),
            )),
        }
    }

    /// `GET /oauth/v1/access-tokens/{token}`: the account and user.
    pub fn token_info(&self, settings: &Settings, access_token: &str) -> Result<Account, PluginError> {
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
        self.session_with(None)
    }

    /// A new access token after `stale` was refused (unless another call
    /// has replaced it already).
    pub fn refresh_now(&self, stale: &str) -> Result<String, PluginError> {
        Ok(self.session_with(Some(stale))?.access_token)
    }

    fn session_with(&self, stale: Option<&str>) -> Result<Session, PluginError> {
        let settings = self.settings()?;
        let make = |tokens: &Tokens, account: &Option<Account>| Session {
            access_token: tokens.access_token.clone(),
            api_base: settings.api_base().to_string(),
            app_base: settings.app_base().to_string(),
            hub_id: account.as_ref().map_or(0, |a| a.hub_id),
        };
        for _ in 0..WAIT_ROUNDS {
            let (conn, conn_raw) = self.read()?;
            let Some(tokens) = conn.tokens.as_ref() else {
                return Err(not_connected(&conn));
            };
            let now = self.host.now_ms();
            let forced = stale == Some(tokens.access_token.as_str());
            if !forced && tokens.expires_at_ms > now + REFRESH_MARGIN_MS {
                return Ok(make(tokens, &conn.account));
            }
            let lease_raw = self.store().get_raw(keys::REFRESH_LEASE)?;
            if Lease::<Until>::live_raw(lease_raw.as_deref(), now) {
                // Another call refreshes: the old token still serves
                // while it lives; otherwise wait for the new one.
                if !forced && tokens.expires_at_ms > now {
                    return Ok(make(tokens, &conn.account));
                }
                self.host.sleep_ms(WAIT_MS);
                continue;
            }
            let lease = Lease::take(self.host, Until::lease_from(now));
            let took = Batch::new()
                .expect_raw(keys::REFRESH_LEASE, lease_raw)
                .expect_raw(keys::CONNECTION, conn_raw.clone())
                .set(keys::REFRESH_LEASE, &lease)?;
            if self.store().commit(&took).is_err() {
                continue;
            }
            let fresh = self.refresh(&settings, conn, conn_raw);
            let _ = self.store().delete(keys::REFRESH_LEASE);
            let conn = fresh?;
            if let Some(tokens) = conn.tokens.as_ref() {
                return Ok(make(tokens, &conn.account));
            }
            return Err(not_connected(&conn));
        }
        Err(PluginError::CrmUnavailable(format!(
            "another call has been refreshing the HubSpot token for over {} s; try again",
            LEASE_MS / 1000
        )))
    }

    /// Refresh the tokens of `conn` (we hold the lease). A refused refresh
    /// token ends the connection: the administrator must authorize again.
    fn refresh(
        &self,
        settings: &Settings,
        mut conn: Connection,
        raw: Option<Vec<u8>>,
    ) -> Result<Connection, PluginError> {
        let Some(old) = conn.tokens.clone() else {
            return Ok(conn);
        };
        let (client_id, secret) = settings.credentials()?;
        match self.token_request(
            settings,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("refresh_token", &old.refresh_token),
            ],
        ) {
            Ok(tokens) => {
                conn.tokens = Some(tokens);
                self.store().commit(
                    &Batch::new()
                        .expect_raw(keys::CONNECTION, raw)
                        .set(keys::CONNECTION, &conn)?,
                )?;
                Ok(conn)
            }
            Err(ApiError::Invalid { code, message }) => {
                let why = format!(
                    "HubSpot refused the refresh token ({code} {message}); authorize the app again"
                );
                self.host.log(Level::Warn, &why);
                conn.tokens = None;
                conn.reauth = Some(why);
                self.store().commit(
                    &Batch::new()
                        .expect_raw(keys::CONNECTION, raw)
                        .set(keys::CONNECTION, &conn)?,
                )?;
                Ok(conn)
            }
            Err(e) if old.expires_at_ms > self.host.now_ms() => {
                // The old token still lives: use it, refresh next time.
                self.host
                    .log(Level::Info, &format!("token refresh postponed: {e}"));
                conn.tokens = Some(old);
                Ok(conn)
            }
            Err(e) => Err(e.into()),
        }
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
        match (&conn.tokens, &conn.reauth) {
            (Some(_), _) => status(
                ConnectionState::Connected,
                conn.account.as_ref().map(|a| {
                    format!("{} @ {} (hub {})", a.user, a.hub_domain, a.hub_id)
                }),
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
        if let Some(tokens) = &conn.tokens {
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
            tokens: None,
            account: conn.account,
            reauth: None,
            disconnected: true,
        };
        self.store().commit(
            &Batch::new()
                .expect_raw(keys::CONNECTION, raw)
                .set(keys::CONNECTION, &next)?,
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
