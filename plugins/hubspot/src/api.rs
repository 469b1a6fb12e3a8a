//! HTTP to HubSpot: requests through the host's `http-fetch`, HubSpot's
//! error bodies turned into [`ApiError`], its rate limits honoured (a 429's
//! `Retry-After` is remembered, and no request is sent before it passes),
//! and the CRM calls with the connection's bearer token ([`Hub`]).
//!
//! Messages quote HubSpot's `message` and `category`, never a URL: the
//! token-information path carries the access token itself.

use serde_json::Value;

use crate::bindings::pbx::crm::http_fetch::{self, Header, Method, Request, Response};
use crate::connection::Connector;
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use pbx_crm_sdk::http::{self, sanitize};

/// The wait assumed when a 429 names none: HubSpot's burst window.
const DEFAULT_RETRY_MS: u64 = 10_000;

/// A failed exchange with HubSpot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 429: wait this long.
    #[error("HubSpot's rate limit was reached; retrying after {} s", retry_after_ms.div_ceil(1000))]
    RateLimited { retry_after_ms: u64 },
    /// 401: the token expired or is unknown.
    #[error("HubSpot refused the access token ({0})")]
    Unauthorized(String),
    /// 403: a scope is missing.
    #[error("HubSpot refused the request ({0}); re-authorize the app with the scopes it asks for")]
    Forbidden(String),
    /// 404.
    #[error("HubSpot has no such record ({0})")]
    NotFound(String),
    /// 400: HubSpot refused the input; `category`/`status` and message.
    #[error("HubSpot refused the request: {message}")]
    Invalid { code: String, message: String },
    /// A 5xx: HubSpot answered that it failed.
    #[error("HubSpot is unavailable: {0}")]
    Unavailable(String),
    /// No answer (not reachable, a time-out) or an unreadable one: what
    /// was asked may or may not have been done.
    #[error("HubSpot did not answer: {0}")]
    Unanswered(String),
}

impl ApiError {
    /// Whether trying again later may succeed (the outbox keeps the work).
    pub fn transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Unavailable(_)
                | ApiError::Unanswered(_)
                | ApiError::Unauthorized(_)
        )
    }
}

impl From<ApiError> for PluginError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::RateLimited { .. } => PluginError::RateLimited(e.to_string()),
            ApiError::Unauthorized(_) => PluginError::NotConnected(format!(
                "{e}; authorize the HubSpot app again if this persists"
            )),
            ApiError::Forbidden(_) => PluginError::NotConnected(e.to_string()),
            ApiError::NotFound(_) => PluginError::NotFound(e.to_string()),
            ApiError::Invalid { .. } => PluginError::InvalidInput(e.to_string()),
            ApiError::Unavailable(_) | ApiError::Unanswered(_) => {
                PluginError::CrmUnavailable(e.to_string())
            }
        }
    }
}

/// HubSpot's error body: `message` and `category` (CRM) or `status`
/// (OAuth), bounded.
fn error_of(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["category"]
        .as_str()
        .or_else(|| v["status"].as_str())
        .unwrap_or("")
        .to_string();
    let message = v["message"].as_str().unwrap_or("no message").to_string();
    // Outside text: one line, bounded.
    (crate::cut(&sanitize(&code), 60), sanitize(&message))
}

/// How long a 429 asks us to wait: `Retry-After` (seconds), else the
/// rate-limit interval header, else HubSpot's burst window.
pub fn retry_after_ms(response: &Response) -> u64 {
    http::response_header(response, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
        .or_else(|| {
            http::response_header(response, "x-hubspot-ratelimit-interval-milliseconds")
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(DEFAULT_RETRY_MS)
        .clamp(1000, 24 * 3600 * 1000)
}

/// Send one request; a non-2xx answer is an [`ApiError`]. A 429 is
/// remembered so no request goes out before HubSpot's wait is over.
pub fn send<H: Host>(
    host: &H,
    method: Method,
    url: &str,
    headers: Vec<Header>,
    body: Option<Vec<u8>>,
) -> Result<Response, ApiError> {
    let now = host.now_ms();
    if let Ok(Some(raw)) = host.kv_get(keys::RATE_LIMITED_UNTIL)
        && let Ok(until) = serde_json::from_slice::<u64>(&raw)
        && until > now
    {
        return Err(ApiError::RateLimited {
            retry_after_ms: until - now,
        });
    }
    let request = Request {
        method,
        url: url.to_string(),
        headers,
        body,
        timeout_ms: Some(http::TIMEOUT_MS),
    };
    let response = host.fetch(&request).map_err(|e| {
        ApiError::Unanswered(redact(
            url,
            match e {
                http_fetch::Error::Denied(d) => format!(
                    "the PBX does not let the plugin reach {} ({}); grant it in the plugin's hosts",
                    d.host, d.rule
                ),
                http_fetch::Error::Timeout => "no answer in time".into(),
                http_fetch::Error::Unreachable(why) => crate::cut(&why, 200),
                http_fetch::Error::TooLarge(n) => format!("an answer of {n} bytes is too large"),
                http_fetch::Error::Invalid(why) => crate::cut(&why, 200),
            },
        ))
    })?;
    if (200..300).contains(&response.status) {
        return Ok(response);
    }
    let (code, message) = error_of(&response.body);
    Err(match response.status {
        429 => {
            let wait = retry_after_ms(&response);
            let _ = host.kv_set(
                keys::RATE_LIMITED_UNTIL,
                (now + wait).to_string().as_bytes(),
            );
            ApiError::RateLimited {
                retry_after_ms: wait,
            }
        }
        401 => ApiError::Unauthorized(code),
        403 => ApiError::Forbidden(if code.is_empty() { message } else { code }),
        404 => ApiError::NotFound(message),
        400..=499 => ApiError::Invalid { code, message },
        s => ApiError::Unavailable(format!("HTTP {s} {message}")),
    })
}

/// `message` without the token a token endpoint's URL carries (a host's
/// transport error may quote the URL).
fn redact(url: &str, message: String) -> String {
    match url.rsplit_once("-tokens/") {
        Some((_, token)) if !token.is_empty() => message.replace(token, "…"),
        _ => message,
    }
}

/// A JSON body of a 2xx answer (an empty body is `null`).
pub fn json(response: &Response) -> Result<Value, ApiError> {
    if response.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| ApiError::Unanswered(format!("an unreadable answer ({e})")))
}

/// HubSpot's CRM API with the connection's access token, refreshed before
/// it expires; a 401 refreshes once and tries again.
pub struct Hub<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Hub<'h, H> {
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    /// `method path` with an optional JSON body; the answer's JSON.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PluginErrorOr> {
        let connector = Connector::new(self.host);
        let session = connector.session()?;
        let attempt = |token: &str| {
            let mut headers = vec![
                http::header("authorization", &format!("Bearer {token}")),
                http::header("accept", "application/json"),
            ];
            if body.is_some() {
                headers.push(http::header("content-type", "application/json"));
            }
            send(
                self.host,
                method,
                &format!("{}{path}", session.api_base),
                headers,
                body.map(|b| b.to_string().into_bytes()),
            )
        };
        match attempt(&session.access_token) {
            Err(ApiError::Unauthorized(_)) => {
                // HubSpot advises refreshing by expiry, but a token can
                // still die early (revoked, clock skew): refresh once.
                let fresh = connector.refresh_now(&session.access_token)?;
                Ok(json(&attempt(&fresh)?)?)
            }
            other => Ok(json(&other?)?),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, PluginErrorOr> {
        self.call(Method::Get, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, PluginErrorOr> {
        self.call(Method::Post, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, PluginErrorOr> {
        self.call(Method::Patch, path, Some(body))
    }
}

/// A failure of a CRM call: the plugin's own (not connected, store) or
/// HubSpot's answer, kept apart so the journal can tell a refusal from an
/// outage.
#[derive(Debug, thiserror::Error)]
pub enum PluginErrorOr {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl PluginErrorOr {
    /// Whether trying again later may succeed.
    pub fn transient(&self) -> bool {
        match self {
            PluginErrorOr::Api(e) => e.transient(),
            PluginErrorOr::Plugin(e) => matches!(
                e,
                PluginError::CrmUnavailable(_)
                    | PluginError::RateLimited(_)
                    | PluginError::Store(_)
            ),
        }
    }

    /// A 429's wait, if this is one.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            PluginErrorOr::Api(ApiError::RateLimited { retry_after_ms }) => Some(*retry_after_ms),
            _ => None,
        }
    }
}

impl From<PluginErrorOr> for PluginError {
    fn from(e: PluginErrorOr) -> Self {
        match e {
            PluginErrorOr::Plugin(p) => p,
            PluginErrorOr::Api(a) => a.into(),
        }
    }
}

/// Plain JSON accept header.
pub fn accept_json() -> Vec<Header> {
    vec![http::header("accept", "application/json")]
}

/// A path segment, percent-encoded (ids and tokens from outside).
pub fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn a_transport_error_never_quotes_a_token() {
        // The fake host has no network: its error quotes the URL.
        let host = FakeHost::default();
        let err = send(
            &host,
            Method::Get,
            "https://api.hs.test/oauth/v1/access-tokens/CAESsecret-token",
            accept_json(),
            None,
        );
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("api.hs.test"), "{text}");
        assert!(!text.contains("CAESsecret-token"), "{text}");
    }

    #[test]
    fn retry_after_prefers_the_header_then_the_interval() {
        let mut r = Response {
            status: 429,
            headers: vec![Header {
                name: "Retry-After".into(),
                value: "7".into(),
            }],
            body: Vec::new(),
        };
        assert_eq!(retry_after_ms(&r), 7000);
        r.headers = vec![Header {
            name: "X-HubSpot-RateLimit-Interval-Milliseconds".into(),
            value: "10000".into(),
        }];
        assert_eq!(retry_after_ms(&r), 10_000);
        r.headers.clear();
        assert_eq!(retry_after_ms(&r), DEFAULT_RETRY_MS);
    }
}
