//! Salesforce's OAuth 2.0 endpoints: the web-server flow with PKCE (consent
//! URL, code exchange), token refresh, revocation, the signature check and
//! the identity URL. The CRM-neutral client (the consent URL's query, the
//! grants, the token answer, the failures) is the SDK's
//! (`pbx_crm_sdk::oauth`); this file adds Salesforce's endpoints, its
//! answer's fields and signature, and its wording.
//!
//! Everything that holds a secret here has a hand-written `Debug` that masks
//! it, so `{:?}` can never leak one into a log or an error.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use pbx_crm_sdk::oauth::{self as sdk_oauth, AuthorizeParams};

use crate::bindings::pbx::crm::http_fetch::Response;
use crate::error::PluginError;
use crate::host::Host;
use crate::http;
use crate::settings::Settings;

pub use pbx_crm_sdk::oauth::{TokenFailure, failure};
pub use pbx_crm_sdk::pkce::{new_verifier, pkce_challenge, plausible_state, random_token};

/// The scopes the set-up guide has the administrator give the connected
/// app; asking for exactly these keeps the consent page and the app in
/// agreement.
pub const SCOPES: &str =
    "full api web openid id profile email address phone refresh_token offline_access";

/// How long an authorization attempt may take from consent URL to callback.
pub const ATTEMPT_TTL_MS: u64 = 10 * 60 * 1000;

/// The consent page's URL.
pub fn authorize_url(
    login_url: &str,
    client_id: &str,
    callback_url: &str,
    state: &str,
    challenge: &str,
) -> Result<String, PluginError> {
    consent_url(
        login_url,
        client_id,
        callback_url,
        SCOPES,
        state,
        challenge,
        &[],
    )
}

/// Salesforce's consent page on `login_url`, with PKCE.
fn consent_url(
    login_url: &str,
    client_id: &str,
    callback_url: &str,
    scope: &str,
    state: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> Result<String, PluginError> {
    let params = AuthorizeParams {
        client_id,
        redirect_uri: callback_url,
        scope,
        state,
        code_challenge: Some(challenge),
    };
    sdk_oauth::authorize_url(
        &format!("{login_url}/services/oauth2/authorize"),
        &params,
        extra,
    )
    .map_err(|e| {
        PluginError::NotConfigured(format!(
            "the login host {login_url} is not a valid URL ({e}); correct it in the settings"
        ))
    })
}

/// The scope of an agent's sign-in: only what identifying the person needs
/// (no API access, no refresh token).
pub const SIGN_IN_SCOPE: &str = "openid";

/// The sign-in page for an agent: the consent URL with PKCE, scope
/// [`SIGN_IN_SCOPE`], and `prompt=login`, so a browser shared by several
/// people never signs in as whoever used it last.
pub fn sign_in_url(
    login_url: &str,
    client_id: &str,
    callback_url: &str,
    state: &str,
    challenge: &str,
) -> Result<String, PluginError> {
    consent_url(
        login_url,
        client_id,
        callback_url,
        SIGN_IN_SCOPE,
        state,
        challenge,
        &[("prompt", "login")],
    )
}

/// A pending authorization, stored under `auth/attempt/<state>` until its
/// callback arrives or it expires.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The PKCE verifier (secret until the code is exchanged).
    pub verifier: String,
    /// The callback URL the consent page redirects to.
    pub callback_url: String,
    /// The login host the attempt started on.
    pub login_url: String,
    /// The Consumer Key the attempt started with.
    pub client_id: String,
    /// When it started, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

impl fmt::Debug for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("verifier", &"***")
            .field("callback_url", &self.callback_url)
            .field("login_url", &self.login_url)
            .field("client_id", &self.client_id)
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Salesforce's answer from the token endpoint: the SDK's answer with
/// Salesforce's fields read out of its extra ones. Only `access_token` is
/// required; the rest is optional so a refresh answer (which may omit
/// fields) reads with the same type.
#[derive(Clone, Deserialize)]
pub struct TokenAnswer {
    /// The session token.
    pub access_token: String,
    /// Present with the refresh_token scope, and on refresh with rotation.
    pub refresh_token: Option<String>,
    /// The org's data host.
    pub instance_url: Option<String>,
    /// The identity URL.
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch, as a string.
    pub issued_at: Option<String>,
    /// base64(HMAC-SHA256(consumer secret, id + issued_at)).
    pub signature: Option<String>,
    /// Space-separated scopes granted.
    pub scope: Option<String>,
}

impl fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("instance_url", &self.instance_url)
            .field("id", &self.id)
            .field("issued_at", &self.issued_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenAnswer {
    /// Salesforce's fields of the SDK's answer; one that is there but not
    /// a string makes the answer malformed, as it was when Salesforce's
    /// answer was parsed whole.
    pub fn from_sdk(answer: sdk_oauth::TokenAnswer) -> Result<Self, TokenFailure> {
        let text = |name: &str| {
            answer
                .extra_str(name)
                .map(|v| v.map(str::to_string))
                .map_err(|_| TokenFailure::Malformed {
                    status: 200,
                    what: "no access_token in it".to_string(),
                })
        };
        Ok(Self {
            instance_url: text("instance_url")?,
            id: text("id")?,
            issued_at: text("issued_at")?,
            signature: text("signature")?,
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            scope: answer.scope,
        })
    }

    /// `issued_at` as a number, if it is one.
    pub fn issued_at_ms(&self) -> Option<u64> {
        self.issued_at
            .as_deref()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// Whether `signature` is base64(HMAC-SHA256(secret, id + issued_at)),
/// compared in constant time.
pub fn signature_matches(secret: &str, id: &str, issued_at: &str, signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// Salesforce's words for the SDK's token failures: what the
/// administrator reads, naming Salesforce's settings.
pub trait SalesforceWording {
    /// The error an administrator sees when the code exchange failed.
    fn for_authorization(&self, callback_url: &str, login_url: &str) -> PluginError;
    /// The error for a failed refresh (other than `invalid_grant`, which
    /// the caller turns into "re-authorization needed").
    fn for_refresh(&self, login_url: &str) -> PluginError;
    /// One line for the status when a revocation failed.
    fn describe(&self, login_url: &str) -> String;
}

impl SalesforceWording for TokenFailure {
    /// The error an administrator sees when the code exchange failed.
    fn for_authorization(&self, callback_url: &str, login_url: &str) -> PluginError {
        let failed = PluginError::AuthorizationFailed;
        match self {
            TokenFailure::OAuth { error, .. } if error == "invalid_client_id" => failed(
                "Salesforce does not know the Consumer Key (invalid_client_id): copy it again from the app's \"Consumer Key and Secret\" page in Salesforce, click Save and authorize again"
                    .into(),
            ),
            TokenFailure::OAuth { error, .. } if error == "invalid_client" => failed(
                "Salesforce refused the Consumer Secret (invalid_client): copy the secret again from the app's \"Consumer Key and Secret\" page in Salesforce, enter it, click Save and authorize again"
                    .into(),
            ),
            TokenFailure::OAuth { error, .. } if error == "redirect_uri_mismatch" => failed(format!(
                "the Callback URL in your Salesforce app must be exactly {callback_url} (Salesforce answered redirect_uri_mismatch): correct it in the app's OAuth settings, wait a few minutes for Salesforce to apply it, then authorize again"
            )),
            TokenFailure::OAuth {
                error, description, ..
            } if error == "invalid_grant" => failed(format!(
                "the authorization code expired or was already used (Salesforce: {}): start the authorization again from the PBX portal",
                TokenFailure::quoted(error, description)
            )),
            TokenFailure::OAuth {
                error, description, ..
            } => failed(format!(
                "Salesforce refused the authorization ({}): check the app's settings in Salesforce, then start the authorization again from the PBX portal",
                TokenFailure::quoted(error, description)
            )),
            other => common(other, login_url, PluginError::AuthorizationFailed),
        }
    }

    /// The error for a failed refresh (other than `invalid_grant`, which
    /// the caller turns into "re-authorization needed").
    fn for_refresh(&self, login_url: &str) -> PluginError {
        match self {
            TokenFailure::OAuth { error, .. } if error == "invalid_client_id" => {
                PluginError::NotConfigured(
                    "Salesforce no longer knows the Consumer Key (invalid_client_id) while refreshing the session: copy it again from the app's \"Consumer Key and Secret\" page, click Save and authorize again"
                        .into(),
                )
            }
            TokenFailure::OAuth { error, .. } if error == "invalid_client" => {
                PluginError::NotConfigured(
                    "Salesforce refused the Consumer Secret (invalid_client) while refreshing the session: enter the app's current secret in the settings and click Save"
                        .into(),
                )
            }
            TokenFailure::OAuth {
                error, description, ..
            } => PluginError::NotConnected(format!(
                "Salesforce refused to refresh the session ({}): authorize again from the PBX portal",
                TokenFailure::quoted(error, description)
            )),
            other => common(other, login_url, PluginError::NotConfigured),
        }
    }

    /// One line for the status when a revocation failed.
    fn describe(&self, login_url: &str) -> String {
        match self {
            TokenFailure::OAuth {
                error, description, ..
            } => TokenFailure::quoted(error, description),
            other => common(other, login_url, PluginError::NotConfigured).to_string(),
        }
    }
}

/// Salesforce's words for failures that are not its OAuth errors.
fn common(
    failure: &TokenFailure,
    login_url: &str,
    denied: fn(String) -> PluginError,
) -> PluginError {
    match failure {
        TokenFailure::Fetch(e) => http::fetch_failure(e, login_url, denied),
        TokenFailure::Server { status } => PluginError::CrmUnavailable(format!(
            "Salesforce at {login_url} answered with a server error (HTTP {status}); try again in a few minutes"
        )),
        TokenFailure::Malformed { status, what } => PluginError::CrmUnavailable(format!(
            "Salesforce at {login_url} gave an answer the plugin cannot read (HTTP {status}, {what}): check that the login host is a Salesforce login URL"
        )),
        TokenFailure::OAuth {
            error, description, ..
        } => PluginError::CrmUnavailable(format!(
            "Salesforce refused the request ({})",
            TokenFailure::quoted(error, description)
        )),
    }
}

/// The token and revoke endpoints of one login host, with the app's
/// credentials.
pub struct OAuthClient<'h, H: Host> {
    host: &'h H,
    login_url: String,
    client: sdk_oauth::OAuthClient<'h, H>,
}

impl<H: Host> fmt::Debug for OAuthClient<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("login_url", &self.login_url)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<'h, H: Host> OAuthClient<'h, H> {
    /// A client for `login_url` (an origin without a trailing slash). The
    /// features build theirs with `from_settings`, `from_settings_at` or
    /// `revoker`, which read the settings once for all of them.
    pub(crate) fn new(host: &'h H, login_url: &str, client_id: &str, client_secret: &str) -> Self {
        let login_url = login_url.trim_end_matches('/').to_string();
        let token_url = format!("{login_url}/services/oauth2/token");
        Self {
            host,
            client: sdk_oauth::OAuthClient::new(host, &token_url, client_id, client_secret),
            login_url,
        }
    }

    /// The app the administrator's `settings` name, at the login host they
    /// name; NotConfigured naming what to enter when they are incomplete.
    pub fn from_settings(host: &'h H, settings: &Settings) -> Result<Self, PluginError> {
        let (client_id, secret) = settings.credentials()?;
        Ok(Self::new(host, &settings.login_url()?, client_id, secret))
    }

    /// The app the `settings` name, at `login_url`: the login host that
    /// issued stored tokens, where their refresh must go.
    pub fn from_settings_at(
        host: &'h H,
        settings: &Settings,
        login_url: &str,
    ) -> Result<Self, PluginError> {
        let (client_id, secret) = settings.credentials()?;
        Ok(Self::new(host, login_url, client_id, secret))
    }

    /// A client that only revokes tokens issued by `login_url`: revocation
    /// needs no client credentials.
    pub fn revoker(host: &'h H, login_url: &str) -> Self {
        Self::new(host, login_url, "", "")
    }

    /// The login host this client talks to.
    pub fn login_url(&self) -> &str {
        &self.login_url
    }

    /// The Consumer Key this client sends.
    pub fn client_id(&self) -> &str {
        self.client.client_id()
    }

    /// Exchange an authorization code (with its PKCE verifier) for tokens.
    pub fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenAnswer, TokenFailure> {
        TokenAnswer::from_sdk(
            self.client
                .exchange_code(code, redirect_uri, Some(verifier))?,
        )
    }

    /// Get a new access token with a refresh token.
    pub fn refresh(&self, refresh_token: &str) -> Result<TokenAnswer, TokenFailure> {
        TokenAnswer::from_sdk(self.client.refresh(refresh_token)?)
    }

    /// Revoke a refresh or access token.
    pub fn revoke(&self, token: &str) -> Result<(), TokenFailure> {
        let url = format!("{}/services/oauth2/revoke", self.login_url);
        let response = self
            .host
            .fetch(&http::post_form(&url, &[("token", token)]))
            .map_err(TokenFailure::Fetch)?;
        match response.status {
            200..=299 => Ok(()),
            _ => Err(failure(&response)),
        }
    }

    /// Whether the answer's signature proves it came from Salesforce for
    /// this app: base64(HMAC-SHA256(secret, id + issued_at)).
    pub fn signed(&self, answer: &TokenAnswer) -> bool {
        match (&answer.id, &answer.issued_at, &answer.signature) {
            (Some(id), Some(issued_at), Some(signature)) => {
                signature_matches(self.client.client_secret(), id, issued_at, signature)
            }
            _ => false,
        }
    }
}

/// The token endpoint's answer read as Salesforce's: the tokens, or why
/// there are none.
pub fn token_answer(response: &Response) -> Result<TokenAnswer, TokenFailure> {
    TokenAnswer::from_sdk(sdk_oauth::token_answer(response)?)
}

/// Who authorized: the identity URL's answer. Every field is optional so an
/// org that hides one still connects.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Identity {
    /// The user's id (005...).
    pub user_id: Option<String>,
    /// The org's id (00D...).
    pub organization_id: Option<String>,
    /// The login name.
    pub username: Option<String>,
    /// The full name.
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email: Option<String>,
    /// Whether the user is active (absent: not said).
    #[serde(default)]
    pub active: Option<bool>,
}

/// Read the identity URL with the new access token.
pub fn identity<H: Host>(
    host: &H,
    id_url: &str,
    access_token: &str,
) -> Result<Identity, PluginError> {
    let origin = http::origin(id_url);
    let response = host
        .fetch(&http::get(id_url, Some(access_token)))
        .map_err(|e| http::fetch_failure(&e, &origin, PluginError::AuthorizationFailed))?;
    match response.status {
        200..=299 => serde_json::from_slice::<Identity>(&response.body).map_err(|_| {
            PluginError::CrmUnavailable(format!(
                "Salesforce at {origin} answered the identity request with something other than JSON; try again in a few minutes"
            ))
        }),
        status if status >= 500 => Err(PluginError::CrmUnavailable(format!(
            "Salesforce at {origin} answered the identity request with a server error (HTTP {status}); try again in a few minutes"
        ))),
        status => Err(PluginError::AuthorizationFailed(format!(
            "Salesforce refused to say who authorized (HTTP {status} from the identity URL): check that the app's scopes include \"id\" and start the authorization again from the PBX portal"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_against_the_secret() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").ok();
        if let Some(m) = mac.as_mut() {
            m.update(b"https://x/id/1/2");
            m.update(b"1700000000000");
        }
        let sig = mac
            .map(|m| STANDARD.encode(m.finalize().into_bytes()))
            .unwrap_or_default();
        assert!(signature_matches(
            "secret",
            "https://x/id/1/2",
            "1700000000000",
            &sig
        ));
        assert!(!signature_matches(
            "other",
            "https://x/id/1/2",
            "1700000000000",
            &sig
        ));
        assert!(!signature_matches(
            "secret",
            "https://x/id/1/2",
            "1700000000001",
            &sig
        ));
        assert!(!signature_matches(
            "secret",
            "https://x/id/1/2",
            "1700000000000",
            "%%%"
        ));
    }

    #[test]
    fn token_answers_never_show_their_tokens() {
        let answer: Option<TokenAnswer> = serde_json::from_str(
            r#"{"access_token":"00Dxx!AQ0secret","refresh_token":"5Aep861secret","id":"https://x/id/1/2"}"#,
        )
        .ok();
        let shown = format!("{answer:?}");
        assert!(shown.contains("https://x/id/1/2"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
