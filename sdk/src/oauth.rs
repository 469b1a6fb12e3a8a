//! An OAuth 2.0 authorization-code client (RFC 6749), CRM-neutral: the
//! consent page's URL (PKCE's S256 challenge when the CRM takes one), the
//! token request for the `authorization_code` and `refresh_token` grants
//! as a form POST through the host's http-fetch, the parsed answer with
//! the fields a CRM adds kept aside, and why a request failed, classified
//! so a plugin knows whether to ask for a new authorization, retry later
//! or have the administrator fix the settings.
//!
//! What is one CRM's alone (its endpoints, an answer's signature, its
//! wording) stays in its plugin, built on these types.
//!
//! Everything that holds a secret has a hand-written `Debug` that masks
//! it, so `{:?}` never leaks one into a log or an error.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use url::Url;

use crate::bindings::pbx::crm::http_fetch::{Error as FetchError, Response};
use crate::error::PluginError;
use crate::host::Host;
use crate::http;

/// What the consent page's URL carries.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeParams<'a> {
    /// The app's client id.
    pub client_id: &'a str,
    /// Where the consent page sends the browser back (the host's Callback
    /// URL).
    pub redirect_uri: &'a str,
    /// Space-separated scopes.
    pub scope: &'a str,
    /// The random `state` that ties the callback to this attempt.
    pub state: &'a str,
    /// PKCE's S256 challenge ([`crate::pkce::pkce_challenge`]), for CRMs
    /// that take one; `None` sends no `code_challenge`.
    pub code_challenge: Option<&'a str>,
}

/// The consent page's URL: `endpoint` with `response_type=code`, the
/// client id, redirect URI and scope, then `extra` (a CRM's own
/// parameters, e.g. `prompt=login`), the state and the PKCE challenge.
pub fn authorize_url(
    endpoint: &str,
    params: &AuthorizeParams<'_>,
    extra: &[(&str, &str)],
) -> Result<String, url::ParseError> {
    let mut url = Url::parse(endpoint)?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", params.client_id)
            .append_pair("redirect_uri", params.redirect_uri)
            .append_pair("scope", params.scope);
        for (name, value) in extra {
            query.append_pair(name, value);
        }
        query.append_pair("state", params.state);
        if let Some(challenge) = params.code_challenge {
            query
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
    }
    Ok(url.into())
}

/// The token endpoint's answer. Only `access_token` is required, so a
/// refresh answer (which may omit fields) parses with the same type.
#[derive(Clone, Deserialize)]
pub struct TokenAnswer {
    /// The access token.
    pub access_token: String,
    /// A refresh token: present on the first grant when the app may have
    /// one, and on refresh when the CRM rotates them.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds the access token lives, when the CRM says (a number, or a
    /// string of one).
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub expires_in: Option<u64>,
    /// Space-separated scopes granted.
    #[serde(default)]
    pub scope: Option<String>,
    /// Every other field, as the CRM sent it (e.g. Salesforce's
    /// `instance_url`, `id`, `issued_at`, `signature`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            // Extra fields are shown by name only: a CRM may add secrets
            // (an id token, a signature).
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// An extra field of a token answer that is not the string the CRM
/// sends (names the field, never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token answer's {0} is not a string")]
pub struct NotAString(pub String);

impl TokenAnswer {
    /// The extra field `name` when it is a string (`None`: absent or
    /// null); an error when it is something else, which a CRM that always
    /// sends a string treats as a malformed answer.
    pub fn extra_str(&self, name: &str) -> Result<Option<&str>, NotAString> {
        match self.extra.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(NotAString(name.to_string())),
        }
    }

    /// When the access token lapses, ms since the Unix epoch, for an
    /// answer received at `now_ms`; `None` when the CRM does not say.
    pub fn expires_at_ms(&self, now_ms: u64) -> Option<u64> {
        self.expires_in
            .map(|s| now_ms.saturating_add(s.saturating_mul(1000)))
    }
}

fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// What a failed token (or revoke) request means for the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The grant is dead (`invalid_grant`: the code expired or was used,
    /// the refresh token was revoked or expired): a new authorization is
    /// needed; retrying cannot help.
    Revoked,
    /// The app's settings are wrong (unknown client, wrong secret, a
    /// redirect URI the app does not list, a host the PBX refuses): the
    /// administrator must correct them.
    Misconfigured,
    /// The CRM refused for another reason it named (an OAuth error code).
    Refused,
    /// The CRM could not be reached, failed (5xx), limited the request
    /// (429) or answered something unreadable: try again later.
    Transient,
}

/// Why a call to a token or revoke endpoint failed. Never holds a token:
/// the CRM's words are sanitized and bounded.
#[derive(Debug)]
pub enum TokenFailure {
    /// An OAuth error answer (`error`, `error_description`).
    OAuth {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code, e.g. `invalid_grant`.
        error: String,
        /// The CRM's description, sanitized (empty when none).
        description: String,
    },
    /// The host could not complete the exchange.
    Fetch(FetchError),
    /// A server error (5xx).
    Server {
        /// The HTTP status.
        status: u16,
    },
    /// An answer that is not the JSON OAuth prescribes.
    Malformed {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        what: String,
    },
}

/// Error codes that say the grant is dead: RFC 6749's, and HubSpot's
/// (its token endpoint answers `{"status": "BAD_…", "message"}`).
const REVOKED: &[&str] = &["invalid_grant", "BAD_REFRESH_TOKEN", "BAD_AUTH_CODE"];

/// Error codes that name a wrong app configuration (RFC 6749's,
/// Salesforce's `invalid_client_id`, HubSpot's).
const MISCONFIGURED: &[&str] = &[
    "invalid_client",
    "invalid_client_id",
    "unauthorized_client",
    "redirect_uri_mismatch",
    "unsupported_grant_type",
    "invalid_scope",
    "BAD_CLIENT_ID",
    "BAD_CLIENT_SECRET",
    "BAD_REDIRECT_URI",
    "BAD_GRANT_TYPE",
];

impl TokenFailure {
    /// The OAuth error code, if the CRM sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            TokenFailure::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }

    /// What the failure means: see [`FailureKind`].
    pub fn kind(&self) -> FailureKind {
        match self {
            TokenFailure::OAuth { status: 429, .. } => FailureKind::Transient,
            TokenFailure::OAuth { error, .. } if REVOKED.contains(&error.as_str()) => {
                FailureKind::Revoked
            }
            TokenFailure::OAuth { error, .. } if MISCONFIGURED.contains(&error.as_str()) => {
                FailureKind::Misconfigured
            }
            TokenFailure::OAuth { .. } => FailureKind::Refused,
            TokenFailure::Fetch(FetchError::Denied(_) | FetchError::Invalid(_)) => {
                FailureKind::Misconfigured
            }
            TokenFailure::Fetch(_)
            | TokenFailure::Server { .. }
            | TokenFailure::Malformed { .. } => FailureKind::Transient,
        }
    }

    /// A plain error for the failure, naming `crm` ("HubSpot"), for a
    /// plugin that has no wording of its own: revoked grants are
    /// NotConnected (authorize again), a wrong app NotConfigured, another
    /// refusal AuthorizationFailed, the rest CrmUnavailable (try again).
    /// Never holds a token: only the CRM's sanitized code and description.
    pub fn to_error(&self, crm: &str) -> PluginError {
        let said = match self {
            TokenFailure::OAuth {
                error, description, ..
            } => Self::quoted(error, description),
            TokenFailure::Fetch(FetchError::Denied(d)) => format!(
                "the PBX does not allow connections to {}: ask the operator to grant it",
                d.host
            ),
            TokenFailure::Fetch(FetchError::Timeout) => "no answer in time".into(),
            TokenFailure::Fetch(FetchError::Unreachable(why) | FetchError::Invalid(why)) => {
                http::sanitize(why)
            }
            TokenFailure::Fetch(FetchError::TooLarge(bytes)) => {
                format!("an answer of {bytes} bytes, larger than the PBX accepts")
            }
            TokenFailure::Server { status } => format!("HTTP {status}"),
            TokenFailure::Malformed { status, what } => format!("HTTP {status}, {what}"),
        };
        match self.kind() {
            FailureKind::Revoked => PluginError::NotConnected(format!(
                "{crm} refused the stored authorization ({said}): authorize again from the PBX portal"
            )),
            FailureKind::Misconfigured => PluginError::NotConfigured(format!(
                "{crm} refused the app's settings ({said}): check the client id, the client secret and the redirect URL, then authorize again"
            )),
            FailureKind::Refused => PluginError::AuthorizationFailed(format!(
                "{crm} refused the request ({said}): check the app's settings, then authorize again"
            )),
            FailureKind::Transient => PluginError::CrmUnavailable(format!(
                "{crm} could not answer the token request ({said}); try again in a few minutes"
            )),
        }
    }

    /// The CRM's `error: "description"` (or `error` alone), for messages.
    pub fn quoted(error: &str, description: &str) -> String {
        if description.is_empty() {
            error.to_string()
        } else {
            format!("{error}: \"{description}\"")
        }
    }
}

/// An error answer: RFC 6749's `error` and `error_description`, or
/// HubSpot's `status` and `message`.
#[derive(Deserialize)]
struct OAuthErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

impl OAuthErrorBody {
    /// The error code and its description, when the body names one.
    fn code(self) -> Option<(String, String)> {
        match (self.error, self.status, self.message) {
            (Some(error), _, _) => Some((error, self.error_description.unwrap_or_default())),
            (None, Some(Value::String(status)), Some(message)) => Some((status, message)),
            _ => None,
        }
    }
}

/// The token endpoint's answer: the tokens, or why there are none.
pub fn token_answer(response: &Response) -> Result<TokenAnswer, TokenFailure> {
    if !(200..=299).contains(&response.status) {
        return Err(failure(response));
    }
    serde_json::from_slice::<TokenAnswer>(&response.body).map_err(|e| TokenFailure::Malformed {
        status: response.status,
        // serde's message would name values; say only what kind it was.
        what: if e.is_data() {
            "no access_token in it".to_string()
        } else {
            "not JSON".to_string()
        },
    })
}

/// A non-2xx answer of an OAuth endpoint.
pub fn failure(response: &Response) -> TokenFailure {
    if response.status >= 500 {
        return TokenFailure::Server {
            status: response.status,
        };
    }
    let code = serde_json::from_slice::<OAuthErrorBody>(&response.body)
        .ok()
        .and_then(OAuthErrorBody::code);
    match code {
        Some((error, description)) => TokenFailure::OAuth {
            status: response.status,
            error: http::sanitize(&error),
            description: http::sanitize(&description),
        },
        None => TokenFailure::Malformed {
            status: response.status,
            what: "not an OAuth error".to_string(),
        },
    }
}

/// A CRM's token endpoint with an app's credentials, sent in the form
/// body (`client_secret_post`).
pub struct OAuthClient<'h, H: Host> {
    host: &'h H,
    token_url: String,
    client_id: String,
    client_secret: String,
}

impl<H: Host> fmt::Debug for OAuthClient<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish_non_exhaustive()
    }
}

impl<'h, H: Host> OAuthClient<'h, H> {
    /// A client of the token endpoint `token_url`.
    pub fn new(host: &'h H, token_url: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            host,
            token_url: token_url.to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
        }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The client id this client sends.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret, for checks a CRM adds (an answer's signature);
    /// never log it.
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// Exchange an authorization code for tokens; `verifier` is the PKCE
    /// verifier when the consent URL carried a challenge.
    pub fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<TokenAnswer, TokenFailure> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier));
        }
        self.token(&form)
    }

    /// A new access token for a refresh token.
    pub fn refresh(&self, refresh_token: &str) -> Result<TokenAnswer, TokenFailure> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
        ])
    }

    fn token(&self, form: &[(&str, &str)]) -> Result<TokenAnswer, TokenFailure> {
        let response = self
            .host
            .fetch(&http::post_form(&self.token_url, form))
            .map_err(TokenFailure::Fetch)?;
        token_answer(&response)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::bindings::pbx::crm::http_fetch::{Denial, Method};
    use crate::testing::FakeHost;

    const TOKEN_URL: &str = "https://crm.example.com/oauth/token";

    fn json(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn form(body: &[u8]) -> HashMap<String, String> {
        url::form_urlencoded::parse(body).into_owned().collect()
    }

    #[test]
    fn the_consent_url_carries_pkce_only_when_asked() {
        let mut params = AuthorizeParams {
            client_id: "app id",
            redirect_uri: "https://pbx.example.com/cb",
            scope: "crm.objects.contacts.read oauth",
            state: "s-123",
            code_challenge: None,
        };
        let plain = authorize_url("https://crm.example.com/oauth/authorize", &params, &[])
            .unwrap_or_default();
        assert_eq!(
            plain,
            "https://crm.example.com/oauth/authorize?response_type=code&client_id=app+id\
             &redirect_uri=https%3A%2F%2Fpbx.example.com%2Fcb\
             &scope=crm.objects.contacts.read+oauth&state=s-123"
        );
        params.code_challenge = Some("E9Mel");
        let pkce = authorize_url(
            "https://crm.example.com/oauth/authorize",
            &params,
            &[("prompt", "login")],
        )
        .unwrap_or_default();
        assert!(
            pkce.ends_with(
                "&scope=crm.objects.contacts.read+oauth&prompt=login&state=s-123\
                 &code_challenge=E9Mel&code_challenge_method=S256"
            ),
            "{pkce}"
        );
        assert!(authorize_url("not a url", &params, &[]).is_err());
    }

    #[test]
    fn a_code_is_exchanged_by_a_form_post_and_the_answer_keeps_extra_fields() {
        let host = FakeHost::default();
        host.on_fetch(|req| {
            assert_eq!(req.method, Method::Post);
            assert_eq!(req.url, TOKEN_URL);
            let f = form(req.body.as_deref().unwrap_or_default());
            assert_eq!(f["grant_type"], "authorization_code");
            assert_eq!(f["code"], "c0de");
            assert_eq!(f["client_id"], "id");
            assert_eq!(f["client_secret"], "s3cret");
            assert_eq!(f["redirect_uri"], "https://pbx/cb");
            assert!(!f.contains_key("code_verifier"));
            Ok(json(
                200,
                r#"{"access_token":"at","refresh_token":"rt","expires_in":1800,"hub_id":42,"instance_url":"https://x"}"#,
            ))
        });
        let client = OAuthClient::new(&host, TOKEN_URL, "id", "s3cret");
        let answer = client.exchange_code("c0de", "https://pbx/cb", None);
        let answer = answer.ok().unwrap_or_else(|| panic!("no answer"));
        assert_eq!(answer.access_token, "at");
        assert_eq!(answer.refresh_token.as_deref(), Some("rt"));
        assert_eq!(answer.expires_in, Some(1800));
        assert_eq!(answer.expires_at_ms(1_000), Some(1_801_000));
        assert_eq!(answer.extra_str("instance_url"), Ok(Some("https://x")));
        assert_eq!(answer.extra_str("hub_id"), Err(NotAString("hub_id".into())));
        assert_eq!(answer.extra_str("absent"), Ok(None));
    }

    #[test]
    fn a_verifier_and_a_refresh_are_sent_as_oauth_says() {
        let host = FakeHost::default();
        host.on_fetch(|req| {
            let f = form(req.body.as_deref().unwrap_or_default());
            match f["grant_type"].as_str() {
                "authorization_code" => assert_eq!(f["code_verifier"], "v"),
                "refresh_token" => assert_eq!(f["refresh_token"], "rt"),
                other => panic!("grant {other}"),
            }
            Ok(json(200, r#"{"access_token":"at","expires_in":"60"}"#))
        });
        let client = OAuthClient::new(&host, TOKEN_URL, "id", "s");
        assert!(client.exchange_code("c", "r", Some("v")).is_ok());
        let refreshed = client.refresh("rt").ok();
        assert_eq!(refreshed.and_then(|a| a.expires_in), Some(60));
        assert_eq!(host.all_requests().len(), 2);
    }

    #[test]
    fn failures_are_classified() {
        let kind = |status, body: &str| failure(&json(status, body)).kind();
        assert_eq!(
            kind(
                400,
                r#"{"error":"invalid_grant","error_description":"expired"}"#
            ),
            FailureKind::Revoked
        );
        assert_eq!(
            kind(400, r#"{"error":"invalid_client"}"#),
            FailureKind::Misconfigured
        );
        assert_eq!(
            kind(400, r#"{"error":"redirect_uri_mismatch"}"#),
            FailureKind::Misconfigured
        );
        assert_eq!(
            kind(400, r#"{"error":"access_denied"}"#),
            FailureKind::Refused
        );
        assert_eq!(
            kind(429, r#"{"error":"rate_limited"}"#),
            FailureKind::Transient
        );
        assert_eq!(kind(503, "down"), FailureKind::Transient);
        assert_eq!(kind(400, "<html>"), FailureKind::Transient);
        assert_eq!(
            TokenFailure::Fetch(FetchError::Timeout).kind(),
            FailureKind::Transient
        );
        let denied = TokenFailure::Fetch(FetchError::Denied(Denial {
            host: "crm.example.com".into(),
            rule: "not granted".into(),
        }));
        assert_eq!(denied.kind(), FailureKind::Misconfigured);
        assert!(matches!(
            token_answer(&json(200, r#"{"token":"x"}"#)),
            Err(TokenFailure::Malformed { what, .. }) if what == "no access_token in it"
        ));
    }

    #[test]
    fn failures_become_errors_that_say_what_to_do() {
        let revoked = failure(&json(
            400,
            r#"{"status":"BAD_REFRESH_TOKEN","message":"missing or invalid refresh token"}"#,
        ));
        assert!(matches!(
            revoked.to_error("HubSpot"),
            PluginError::NotConnected(m) if m.contains("HubSpot refused") && m.contains("authorize again")
        ));
        let secret = failure(&json(400, r#"{"error":"invalid_client"}"#));
        assert!(matches!(
            secret.to_error("Acme"),
            PluginError::NotConfigured(_)
        ));
        let down = failure(&json(502, ""));
        assert!(matches!(
            down.to_error("Acme"),
            PluginError::CrmUnavailable(m) if m.contains("HTTP 502")
        ));
        let denied = TokenFailure::Fetch(FetchError::Denied(Denial {
            host: "https://api.example.com".into(),
            rule: "not granted".into(),
        }));
        assert!(matches!(
            denied.to_error("Acme"),
            PluginError::NotConfigured(m) if m.contains("https://api.example.com")
        ));
    }

    #[test]
    fn nothing_secret_shows_in_debug_or_failures() {
        let answer: Option<TokenAnswer> = serde_json::from_str(
            r#"{"access_token":"AT-secret","refresh_token":"RT-secret","id_token":"ID-secret"}"#,
        )
        .ok();
        let shown = format!("{answer:?}");
        assert!(
            shown.contains("id_token") && !shown.contains("secret"),
            "{shown}"
        );
        let host = FakeHost::default();
        let client = OAuthClient::new(&host, TOKEN_URL, "id", "CS-secret");
        assert!(!format!("{client:?}").contains("CS-secret"));
        let f = failure(&json(
            400,
            "{\"error\":\"invalid_grant\",\"error_description\":\"bad\\r\\ntoken\"}",
        ));
        assert!(
            matches!(f, TokenFailure::OAuth { ref description, .. } if description == "bad token")
        );
    }
}
