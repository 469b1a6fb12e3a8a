//! Authorizing the PBX in Salesforce: `begin` checks the app and login host
//! (the preflight), remembers the attempt and opens the consent page;
//! `complete` takes the callback, exchanges the code once, checks the
//! answer's signature and stores the tokens with the connection record.

use url::Url;

use super::{ConnectionRecord, Connector, LinkState, Tokens};
use crate::bindings::exports::pbx::crm::integration::{Authorization, Status};
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::Audience;
use crate::error::PluginError;
use crate::host::Host;
use crate::oauth::{self, Attempt, OAuthClient, SalesforceWording, TokenFailure};
use crate::store::{Batch, keys};
use crate::time::clock;

/// A syntactically valid PKCE verifier for the preflight's fake code.
const PREFLIGHT_VERIFIER: &str = "pbx-preflight-verifier-0000000000000000000000000";

/// At most this many stored attempts are looked at per pruning pass, so a
/// flood of abandoned attempts cannot make one call slow.
const PRUNE_LIMIT: usize = 64;

impl<'h, H: Host> Connector<'h, H> {
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

        // An error answer counts only for a pending attempt: without one it
        // is refused below like any unknown state, so a stranger cannot
        // change what the portal shows by calling the open callback.
        if let (Some(error), Some((key, _, raw))) = (&params.error, &attempt) {
            let _ = self
                .store()
                .commit(&Batch::new().expect_raw(key, Some(raw.clone())).delete(key));
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

        // No pending attempt matches: `not-found`, which the host does not
        // count as the outcome of an authorization.
        let Some(state) = params.state.as_deref() else {
            return Err(PluginError::NotFound(format!(
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
            return Err(PluginError::NotFound(format!(
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
}

/// The parameters of a callback query.
#[derive(Default)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the consent URL carried.
    pub state: Option<String>,
    /// The OAuth error code, when Salesforce refused.
    pub error: Option<String>,
    /// Salesforce's description of the error.
    pub error_description: Option<String>,
}

impl Callback {
    /// Parse a raw query string (a leading `?` is tolerated); the first of a
    /// repeated parameter wins.
    pub fn parse(query: &str) -> Self {
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
