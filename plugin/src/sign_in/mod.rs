//! An agent's sign-in (`user-sign-in`, pbx:crm 0.3.0): a person proves to
//! the PBX which Salesforce user they are by logging in to Salesforce.
//!
//! `begin` builds the sign-in page (the app's consent URL with PKCE S256,
//! scope `openid` only, `prompt=login` so a shared browser never signs in
//! as the previous person) and keeps the attempt under its single-use state
//! in `sign-in/pending/` (apart from the administrator's authorization
//! attempts, so neither flow can complete the other; at most
//! [`MAX_PENDING`], the oldest dropped first, each valid for
//! [`oauth::ATTEMPT_TTL_MS`]). `complete` consumes the state in a
//! compare-and-swap before anything else, exchanges the code at the org's
//! token endpoint, reads the user id from the identity URL (checked against
//! the token answer's identity URL), refuses a deactivated user, revokes
//! every token it got, and only then answers the 18-character user id.
//! Nothing of the person's session is stored.

use url::Url;

use crate::auth::ConnectionRecord;
use crate::bindings::exports::pbx::crm::user_sign_in::{SignInError, SignInRequest};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::http;
use crate::oauth::{
    self, Attempt, Identity, OAuthClient, SalesforceWording, TokenAnswer, TokenFailure,
};
use crate::settings::Settings;
use crate::store::{Batch, Store, decode, keys};

#[cfg(test)]
mod tests;

/// At most this many sign-ins wait for their callback; a new one beyond
/// it drops the oldest, so abandoned sign-ins cannot fill the store.
pub const MAX_PENDING: usize = 200;

/// What a person is told to do after a failed sign-in.
const START_AGAIN: &str = "start the sign-in again from the PBX";

/// Agents' sign-ins, over the host.
pub struct SignIn<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> SignIn<'h, H> {
    /// Sign-ins over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    /// The connected app from the settings (its key, secret and login host).
    fn app(&self) -> Result<OAuthClient<'h, H>, PluginError> {
        let settings: Settings = self.store().get(keys::SETTINGS)?.unwrap_or_default();
        OAuthClient::from_settings(self.host, &settings)
    }

    /// Start a sign-in whose callback goes to `callback_url`.
    pub fn begin(&self, callback_url: &str) -> Result<SignInRequest, PluginError> {
        let oauth = self.app()?;
        let callback_url = checked_callback(callback_url)?;
        self.make_room()?;

        let state = oauth::random_token(self.host, 32);
        let verifier = oauth::new_verifier(self.host);
        let url = oauth::sign_in_url(
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
        // 32 fresh random bytes: a clash is a broken random source, which
        // the precondition turns into an error rather than an overwrite.
        let key = keys::sign_in(&state);
        self.store()
            .commit(&Batch::new().expect_raw(&key, None).set(&key, &attempt)?)?;
        Ok(SignInRequest {
            url,
            state,
            expires_at_ms: attempt.expires_at_ms,
        })
    }

    /// Drop expired and unreadable pending sign-ins, and the oldest ones
    /// until a new one fits under [`MAX_PENDING`]. Only runs when the
    /// limit is reached, so a normal `begin` reads one key list.
    fn make_room(&self) -> Result<(), PluginError> {
        let store = self.store();
        let pending = store.keys(keys::SIGN_IN_PREFIX)?;
        if pending.len() < MAX_PENDING {
            return Ok(());
        }
        let values = store.get_many_raw(&pending)?;
        let now = self.host.now_ms();
        // (created, key): unreadable and expired ones sort first.
        let mut by_age: Vec<(u64, &String)> = pending
            .iter()
            .zip(&values)
            .filter_map(|(key, value)| {
                let raw = value.as_deref()?;
                Some(match decode::<Attempt>(key, raw) {
                    Ok(a) if a.expires_at_ms > now => (a.created_at_ms, key),
                    _ => (0, key),
                })
            })
            .collect();
        by_age.sort();
        let excess = (by_age.len() + 1).saturating_sub(MAX_PENDING);
        let expired = by_age.iter().take_while(|(at, _)| *at == 0).count();
        let doomed = excess.max(expired);
        if doomed == 0 {
            return Ok(());
        }
        let batch = by_age
            .iter()
            .take(doomed)
            .fold(Batch::new(), |batch, (_, key)| batch.delete(key));
        store.commit(&batch)
    }

    /// Finish a sign-in with the callback's raw query: the Salesforce user
    /// id, or why no one was identified.
    pub fn complete(&self, callback_url: &str, query: &str) -> Result<String, SignInError> {
        let params = Callback::parse(query);
        let attempt = self.consume(params.state.as_deref())?;
        if let Some(error) = &params.error {
            let said = params
                .error_description
                .as_deref()
                .map(http::sanitize)
                .unwrap_or_default();
            if error == "access_denied" {
                self.host.log(Level::Info, "an agent declined the sign-in");
                return Err(SignInError::Denied(said));
            }
            let shown = if said.is_empty() {
                http::sanitize(error)
            } else {
                format!("{}: \"{said}\"", http::sanitize(error))
            };
            return Err(failed(PluginError::AuthorizationFailed(format!(
                "Salesforce did not sign the person in ({shown}): {START_AGAIN}"
            ))));
        }
        if callback_url.trim() != attempt.callback_url.trim() {
            return Err(failed(PluginError::AuthorizationFailed(format!(
                "this sign-in was started for the callback URL {}, not {}: {START_AGAIN}",
                attempt.callback_url,
                http::sanitize(callback_url)
            ))));
        }
        let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(failed(PluginError::AuthorizationFailed(format!(
                "the answer from Salesforce has neither a code nor an error: {START_AGAIN}"
            ))));
        };
        let oauth = self.app().map_err(failed)?;
        if attempt.login_url != oauth.login_url() || attempt.client_id != oauth.client_id() {
            return Err(failed(PluginError::AuthorizationFailed(format!(
                "the Consumer Key or login host changed after this sign-in started: {START_AGAIN}"
            ))));
        }
        let answer = match oauth.exchange_code(code, &attempt.callback_url, &attempt.verifier) {
            Ok(answer) => answer,
            Err(TokenFailure::OAuth {
                error, description, ..
            }) if error == "invalid_grant" && description.contains("inactive user") => {
                return Err(SignInError::Inactive(
                    "Salesforce says this user is deactivated: ask the Salesforce administrator to activate the user".into(),
                ));
            }
            Err(failure) => {
                let error = failure.for_authorization(&attempt.callback_url, oauth.login_url());
                self.host
                    .log(Level::Warn, &format!("an agent's sign-in failed: {error}"));
                return Err(failed(error));
            }
        };
        // Whatever the outcome, no token of the person outlives this call.
        let outcome = self.identify(&oauth, &answer);
        let revoked = self.revoke_all(&oauth, &answer);
        let user_id = outcome?;
        revoked.map_err(failed)?;
        self.host.log(
            Level::Info,
            &format!("an agent signed in as Salesforce user {user_id}"),
        );
        Ok(user_id)
    }

    /// Take the pending sign-in of `state` out of the store (a
    /// compare-and-swap, so of two deliveries of one callback only one gets
    /// it); `Expired` when there is none, it is unreadable or too old.
    fn consume(&self, state: Option<&str>) -> Result<Attempt, SignInError> {
        let Some(state) = state.filter(|s| oauth::plausible_state(s)) else {
            return Err(SignInError::Expired);
        };
        let key = keys::sign_in(state);
        let raw = match self.store().get_raw(&key) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Err(SignInError::Expired),
            Err(e) => return Err(failed(e)),
        };
        match self.store().commit(
            &Batch::new()
                .expect_raw(&key, Some(raw.clone()))
                .delete(&key),
        ) {
            Ok(()) => {}
            Err(PluginError::Conflict(_)) => return Err(SignInError::Expired),
            Err(e) => return Err(failed(e)),
        }
        match decode::<Attempt>(&key, &raw) {
            Ok(attempt) if self.host.now_ms() < attempt.expires_at_ms => Ok(attempt),
            _ => Err(SignInError::Expired),
        }
    }

    /// Who signed in: the identity URL's answer, read with the new token,
    /// must name the user the token answer's identity URL names, in the
    /// connected org (when one is connected), and that user must be active.
    fn identify(
        &self,
        oauth: &OAuthClient<'h, H>,
        answer: &TokenAnswer,
    ) -> Result<String, SignInError> {
        if !oauth.signed(answer) {
            return Err(failed(PluginError::AuthorizationFailed(
                "Salesforce's answer to the sign-in is not signed with the app's Consumer Secret: ask the PBX administrator to check the secret".into(),
            )));
        }
        let Some(id_url) = answer.id.as_deref() else {
            return Err(failed(PluginError::CrmUnavailable(
                "Salesforce's token answer has no identity URL; try again".into(),
            )));
        };
        let Some((org_in_url, user_in_url)) = ids_from_identity_url(id_url) else {
            return Err(failed(PluginError::CrmUnavailable(format!(
                "Salesforce's identity URL {} names no user; try again",
                http::sanitize(id_url)
            ))));
        };
        let identity = self.identity(id_url, &answer.access_token)?;
        let user_id = identity.user_id.clone().unwrap_or_default();
        let org_id = identity.organization_id.clone().unwrap_or_default();
        if user_id.len() != 18 || !same_id(&user_id, &user_in_url) || !same_id(&org_id, &org_in_url)
        {
            return Err(failed(PluginError::AuthorizationFailed(format!(
                "Salesforce's identity answer does not match the signed-in user: {START_AGAIN}"
            ))));
        }
        let connected: Option<ConnectionRecord> = self.store().get(keys::CONNECTION).ok().flatten();
        if let Some(connected_org) = connected.and_then(|c| c.organization_id)
            && !same_id(&connected_org, &org_id)
        {
            return Err(failed(PluginError::AuthorizationFailed(format!(
                "this Salesforce user belongs to org {org_id}, but the PBX is connected to org {connected_org}: sign in with a user of that org"
            ))));
        }
        if identity.active == Some(false) {
            let who = identity
                .username
                .as_deref()
                .map_or_else(|| user_id.clone(), http::sanitize);
            return Err(SignInError::Inactive(format!(
                "the Salesforce user {who} is deactivated: ask the Salesforce administrator to activate the user"
            )));
        }
        Ok(user_id)
    }

    /// The identity URL's answer with `access_token`.
    fn identity(&self, id_url: &str, access_token: &str) -> Result<Identity, SignInError> {
        let origin = http::origin(id_url);
        let response = self
            .host
            .fetch(&http::get(id_url, Some(access_token)))
            .map_err(|e| {
                failed(http::fetch_failure(
                    &e,
                    &origin,
                    PluginError::AuthorizationFailed,
                ))
            })?;
        match response.status {
            200..=299 => serde_json::from_slice::<Identity>(&response.body).map_err(|_| {
                failed(PluginError::CrmUnavailable(format!(
                    "Salesforce at {origin} answered the identity request with something other than JSON; try again"
                )))
            }),
            status => Err(failed(PluginError::CrmUnavailable(format!(
                "Salesforce at {origin} refused to say who signed in (HTTP {status}): {START_AGAIN}"
            )))),
        }
    }

    /// Revoke the refresh token (which ends its access tokens too) and the
    /// access token. Both are tried; the first failure is answered.
    fn revoke_all(
        &self,
        oauth: &OAuthClient<'h, H>,
        answer: &TokenAnswer,
    ) -> Result<(), PluginError> {
        let tokens = answer
            .refresh_token
            .iter()
            .chain(std::iter::once(&answer.access_token));
        let mut first_failure = None;
        for token in tokens {
            match oauth.revoke(token) {
                Ok(()) => {}
                // Revoking the refresh token already ended the access token.
                Err(TokenFailure::OAuth { error, .. })
                    if error == "invalid_token" && answer.refresh_token.is_some() => {}
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                }
            }
        }
        match first_failure {
            None => Ok(()),
            Some(failure) => {
                let why = failure.describe(oauth.login_url());
                self.host.log(
                    Level::Warn,
                    &format!("could not end an agent's Salesforce session: {why}"),
                );
                Err(PluginError::CrmUnavailable(format!(
                    "Salesforce did not end the sign-in's session ({why}), so the PBX did not accept it: {START_AGAIN}"
                )))
            }
        }
    }
}

/// A failure that is neither denial, deactivation nor expiry.
fn failed(error: PluginError) -> SignInError {
    SignInError::Failed(error.into())
}

/// Whether two Salesforce ids name the same record: the 15 case-sensitive
/// characters decide; the 3 that make an 18-character id are a checksum.
fn same_id(a: &str, b: &str) -> bool {
    a.len() >= 15 && b.len() >= 15 && a.get(..15) == b.get(..15)
}

/// The org and user ids at the end of an identity URL
/// (`https://login.salesforce.com/id/<org>/<user>`).
fn ids_from_identity_url(id_url: &str) -> Option<(String, String)> {
    let url = Url::parse(id_url).ok()?;
    let segments: Vec<&str> = url.path_segments()?.collect();
    match segments.as_slice() {
        [.., "id", org, user] => Some(((*org).to_string(), (*user).to_string())),
        _ => None,
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
            http::sanitize(callback_url)
        ))),
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
