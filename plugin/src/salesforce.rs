//! The one REST client every Salesforce API call goes through.
//!
//! It sends to the stored `instance_url` with the stored access token, and
//! owns what every call needs:
//! - **Session expiry**: a 401 refreshes the session once and retries once.
//!   Many instances may hit the 401 at the same moment; a lease in the
//!   kv-store makes exactly one of them refresh while the others wait for the
//!   new token (see [`Salesforce::session_after_expiry`]).
//! - **Limits and outages**: `403 REQUEST_LIMIT_EXCEEDED` and 5xx answers
//!   start a back-off (5 s, doubling up to 5 min); during it calls fail fast
//!   without sending anything.
//! - **Errors**: Salesforce's error array becomes a typed [`ApiError`].

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bindings::pbx::crm::http_fetch::{Header, Method, Request};
use crate::bindings::pbx::crm::log::Level;
use crate::connection::{ConnectionRecord, LinkState, Tokens};
use crate::error::PluginError;
use crate::host::Host;
use crate::http;
use crate::oauth::{self, OAuthClient, TokenFailure};
use crate::settings::Settings;
use crate::store::{Batch, Store, encode, keys};

/// The REST API version the plugin speaks.
pub const API_VERSION: &str = "v67.0";

/// How long a refresh lease lives. Longer than a call's deadline (10 s), so a
/// live holder never loses it; short enough that a crashed holder's lease
/// stops blocking others soon.
const LEASE_MS: u64 = 15_000;
/// How often a waiting instance looks whether the refresh is done.
const POLL_MS: u64 = 25;
/// How long an instance waits for another's refresh before giving up,
/// leaving room in the call's 10 s deadline for the retried request.
const WAIT_MS: u64 = 8_000;
/// The first back-off after a limit or server error.
const BACKOFF_FIRST_MS: u64 = 5_000;
/// The longest back-off.
const BACKOFF_MAX_MS: u64 = 5 * 60 * 1000;
/// At most this many query pages are followed in one call.
const MAX_PAGES: usize = 500;

/// "HH:MM:SS UTC" of a time in ms since the Unix epoch.
pub fn clock(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The refresh lease, stored under `auth/refresh-lease` while one instance
/// refreshes the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// A random nonce naming the holder.
    pub holder: String,
    /// When the lease lapses, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The token generation being refreshed.
    pub generation: u64,
}

/// The back-off after rate limits and server errors, stored under
/// `api/backoff` until a call succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Consecutive failures.
    pub failures: u32,
    /// No call is sent before this time, ms since the Unix epoch.
    pub until_ms: u64,
    /// Whether the cause is the API limit (else an outage).
    pub rate_limited: bool,
    /// What happened, for the status.
    pub cause: String,
}

impl Backoff {
    /// The problem line for the status, with when the PBX retries.
    pub fn problem(&self, now_ms: u64) -> String {
        if now_ms < self.until_ms {
            format!(
                "{}; the PBX retries after {}",
                self.cause,
                clock(self.until_ms)
            )
        } else {
            format!("{}; the PBX retries with the next request", self.cause)
        }
    }

    fn error(&self, now_ms: u64) -> PluginError {
        if self.rate_limited {
            PluginError::RateLimited(self.problem(now_ms))
        } else {
            PluginError::CrmUnavailable(self.problem(now_ms))
        }
    }

    /// The wait after `failures` consecutive failures.
    fn delay_ms(failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(16);
        (BACKOFF_FIRST_MS << doublings).min(BACKOFF_MAX_MS)
    }
}

/// One entry of Salesforce's error array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiErrorItem {
    /// The human-readable message.
    #[serde(default)]
    pub message: String,
    /// The code, e.g. `REQUIRED_FIELD_MISSING`.
    #[serde(rename = "errorCode", default)]
    pub error_code: String,
    /// The fields concerned, if any.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Salesforce refused a request: its status and error array, for callers to
/// act on (e.g. `REQUIRED_FIELD_MISSING`, `NOT_FOUND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The errors Salesforce listed (one synthesized when the body was not
    /// an error array).
    pub errors: Vec<ApiErrorItem>,
}

impl ApiError {
    /// Parse a non-2xx answer.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        let errors = serde_json::from_slice::<Vec<ApiErrorItem>>(body)
            .or_else(|_| serde_json::from_slice::<ApiErrorItem>(body).map(|e| vec![e]))
            .unwrap_or_else(|_| {
                vec![ApiErrorItem {
                    message: http::sanitize(&String::from_utf8_lossy(body)),
                    error_code: String::new(),
                    fields: Vec::new(),
                }]
            });
        Self { status, errors }
    }

    /// Whether any entry has `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.error_code == code)
    }

    /// The first entry's code, if any.
    pub fn code(&self) -> Option<&str> {
        self.errors
            .iter()
            .map(|e| e.error_code.as_str())
            .find(|c| !c.is_empty())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salesforce refused the request (HTTP {}", self.status)?;
        for e in &self.errors {
            let message = http::sanitize(&e.message);
            match (e.error_code.is_empty(), message.is_empty()) {
                (false, false) => write!(f, "; {}: {message}", http::sanitize(&e.error_code))?,
                (false, true) => write!(f, "; {}", http::sanitize(&e.error_code))?,
                (true, false) => write!(f, "; {message}")?,
                (true, true) => {}
            }
            if !e.fields.is_empty() {
                write!(f, " (fields: {})", http::sanitize(&e.fields.join(", ")))?;
            }
        }
        write!(f, ")")
    }
}

impl std::error::Error for ApiError {}

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// Salesforce answered, refusing the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Anything else (not connected, back-off, unreachable, ...), already
    /// worded for the administrator.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl From<SalesforceError> for PluginError {
    fn from(e: SalesforceError) -> Self {
        match e {
            SalesforceError::Plugin(p) => p,
            SalesforceError::Api(api) => {
                let message = api.to_string();
                match api.status {
                    404 => PluginError::NotFound(message),
                    409 | 412 => PluginError::Conflict(message),
                    _ => PluginError::InvalidInput(message),
                }
            }
        }
    }
}

/// A successful answer.
pub struct ApiResponse {
    /// The HTTP status (2xx).
    pub status: u16,
    /// The headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::CrmUnavailable(format!(
                "Salesforce's answer to {what} could not be read ({}); try again later",
                http::sanitize(&e.to_string())
            ))
        })
    }
}

/// One page of a SOQL query's answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage<T> {
    /// How many records match in all.
    pub total_size: u64,
    /// Whether this is the last page.
    pub done: bool,
    /// The path of the next page, when not done.
    #[serde(default)]
    pub next_records_url: Option<String>,
    /// This page's records.
    pub records: Vec<T>,
}

/// The REST client. Cheap to create; holds no state of its own.
pub struct Salesforce<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Salesforce<'h, H> {
    /// A client over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    /// GET `path` (relative to `/services/data/v67.0/`, or absolute on the
    /// instance when it starts with `/`) and parse the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, SalesforceError> {
        let response = self.send(Method::Get, path, None, &[])?;
        Ok(response.json(&format!("GET {path}"))?)
    }

    /// POST `body` as JSON to `path` and parse the JSON answer.
    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, SalesforceError> {
        let response = self.send(Method::Post, path, Some(encode(body)?), &[])?;
        Ok(response.json(&format!("POST {path}"))?)
    }

    /// PATCH `body` as JSON to `path` (Salesforce answers 204 No Content).
    pub fn patch_json<B: Serialize>(&self, path: &str, body: &B) -> Result<(), SalesforceError> {
        self.send(Method::Patch, path, Some(encode(body)?), &[])?;
        Ok(())
    }

    /// The first page of a SOQL query.
    pub fn query_page<T: DeserializeOwned>(
        &self,
        soql: &str,
    ) -> Result<QueryPage<T>, SalesforceError> {
        self.get(&query_path(soql))
    }

    /// A further page, from a previous page's `nextRecordsUrl`.
    pub fn query_more<T: DeserializeOwned>(
        &self,
        next_records_url: &str,
    ) -> Result<QueryPage<T>, SalesforceError> {
        if !next_records_url.starts_with("/services/data/") {
            return Err(PluginError::CrmUnavailable(format!(
                "Salesforce gave an unexpected next-page link {:?}; try again later",
                http::sanitize(next_records_url)
            ))
            .into());
        }
        self.get(next_records_url)
    }

    /// The first page of a SOQL query, sending `headers` too (e.g.
    /// `Sforce-Query-Options: batchSize=2000`).
    pub fn query_page_with<T: DeserializeOwned>(
        &self,
        soql: &str,
        headers: &[Header],
    ) -> Result<QueryPage<T>, SalesforceError> {
        let path = query_path(soql);
        let response = self.send(Method::Get, &path, None, headers)?;
        Ok(response.json(&format!("GET {path}"))?)
    }

    /// A further page (see `query_more`), sending `headers` too.
    pub fn query_more_with<T: DeserializeOwned>(
        &self,
        next_records_url: &str,
        headers: &[Header],
    ) -> Result<QueryPage<T>, SalesforceError> {
        if !next_records_url.starts_with("/services/data/") {
            return self.query_more(next_records_url);
        }
        let response = self.send(Method::Get, next_records_url, None, headers)?;
        Ok(response.json(&format!("GET {next_records_url}"))?)
    }

    /// All records of a SOQL query, following `nextRecordsUrl`.
    pub fn query<T: DeserializeOwned>(&self, soql: &str) -> Result<Vec<T>, SalesforceError> {
        let mut page: QueryPage<T> = self.query_page(soql)?;
        let mut records = std::mem::take(&mut page.records);
        for _ in 0..MAX_PAGES {
            match (page.done, page.next_records_url.take()) {
                (false, Some(next)) => {
                    page = self.query_more(&next)?;
                    records.append(&mut page.records);
                }
                _ => return Ok(records),
            }
        }
        Err(PluginError::CrmUnavailable(format!(
            "the query returned more than {MAX_PAGES} pages; narrow it"
        ))
        .into())
    }

    /// Send one request with the stored session: refresh once on a 401,
    /// back off on limits and outages. `body` is JSON.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[Header],
    ) -> Result<ApiResponse, SalesforceError> {
        let store = self.store();
        let backoff: Option<Backoff> = store.get(keys::BACKOFF).unwrap_or(None);
        if let Some(b) = &backoff {
            let now = self.host.now_ms();
            if now < b.until_ms {
                // Fail fast: nothing is sent while backing off.
                return Err(b.error(now).into());
            }
        }
        let Some((tokens, _)) = store.get_with_raw::<Tokens>(keys::TOKENS)? else {
            return Err(self.not_connected().into());
        };
        let mut response = self.exchange(&tokens, method, path, body.clone(), headers)?;
        if response.status == 401 {
            // Salesforce says INVALID_SESSION_ID; any 401 means the token is
            // no good, so it is treated alike (as jsforce does).
            let fresh = self.session_after_expiry(&tokens)?;
            response = self.exchange(&fresh, method, path, body, headers)?;
            if response.status == 401 {
                return Err(PluginError::NotConnected(format!(
                    "Salesforce refused even a fresh session ({}): check that the authorized user may use the API, then authorize again",
                    ApiError::parse(401, &response.body)
                ))
                .into());
            }
        }
        let status = response.status;
        let limit = status == 403
            && ApiError::parse(403, &response.body).has_code("REQUEST_LIMIT_EXCEEDED");
        if limit || status >= 500 {
            return Err(self.record_failure(limit, status, &response.body).into());
        }
        if backoff.is_some() {
            // Salesforce answers again: the outage or limit is over.
            let _ = store.delete(keys::BACKOFF);
            self.host
                .log(Level::Info, "Salesforce answers again; back-off cleared");
        }
        if (200..=299).contains(&status) {
            Ok(ApiResponse {
                status,
                headers: response.headers,
                body: response.body,
            })
        } else {
            Err(ApiError::parse(status, &response.body).into())
        }
    }

    /// Send one request with `tokens`.
    fn exchange(
        &self,
        tokens: &Tokens,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[Header],
    ) -> Result<crate::bindings::pbx::crm::http_fetch::Response, PluginError> {
        let mut headers = vec![
            http::header("authorization", &format!("Bearer {}", tokens.access_token)),
            http::header("accept", "application/json"),
        ];
        if body.is_some() {
            headers.push(http::header("content-type", "application/json"));
        }
        headers.extend(extra.iter().cloned());
        let request = Request {
            method,
            url: api_url(&tokens.instance_url, path),
            headers,
            body,
            timeout_ms: Some(http::TIMEOUT_MS),
        };
        self.host
            .fetch(&request)
            .map_err(|e| http::fetch_failure(&e, &tokens.instance_url, PluginError::NotConfigured))
    }

    /// Record a limit or server error and return the error for the caller.
    fn record_failure(&self, rate_limited: bool, status: u16, body: &[u8]) -> PluginError {
        let store = self.store();
        let now = self.host.now_ms();
        let failures = store
            .get::<Backoff>(keys::BACKOFF)
            .ok()
            .flatten()
            .map_or(1, |b| b.failures.saturating_add(1));
        let cause = if rate_limited {
            let api = ApiError::parse(status, body);
            let said = api
                .errors
                .iter()
                .map(|e| http::sanitize(&e.message))
                .find(|m| !m.is_empty())
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            format!("Salesforce's API limit was reached{said}")
        } else {
            format!("Salesforce is unavailable (HTTP {status})")
        };
        let backoff = Backoff {
            failures,
            until_ms: now + Backoff::delay_ms(failures),
            rate_limited,
            cause,
        };
        // A lost update between two failing instances only shortens one
        // back-off step, so no compare-and-swap here.
        if let Err(e) = store.put(keys::BACKOFF, &backoff) {
            self.host
                .log(Level::Error, &format!("could not record the back-off: {e}"));
        }
        let error = backoff.error(now);
        self.host.log(Level::Warn, &error.to_string());
        error
    }

    /// Why there are no tokens, for the caller.
    fn not_connected(&self) -> PluginError {
        let record: Option<ConnectionRecord> = self.store().get(keys::CONNECTION).unwrap_or(None);
        PluginError::NotConnected(match record {
            Some(ConnectionRecord {
                state: LinkState::ReauthorizationNeeded,
                reason,
                ..
            }) => reason.unwrap_or_else(|| {
                "Salesforce refused the stored authorization: authorize again from the PBX portal"
                    .into()
            }),
            Some(ConnectionRecord {
                state: LinkState::Disconnected,
                ..
            }) => "Salesforce is disconnected: authorize again from the PBX portal (click Save)"
                .into(),
            _ => "the PBX is not connected to Salesforce: enter the app's settings in the PBX portal, click Save and allow access".into(),
        })
    }

    /// A session newer than `used`, which Salesforce just refused.
    ///
    /// Exactly one instance refreshes; the others wait for its result:
    /// 1. Re-read the tokens. If they are not the session `used`, someone
    ///    already refreshed: use them.
    /// 2. Otherwise, if no live lease exists, take one with a batch whose
    ///    preconditions are "the lease is still what I read (absent or the
    ///    exact lapsed value)" and "the tokens are still what I read". The
    ///    second one matters: an instance that read the old tokens just
    ///    before another committed new ones must not refresh again.
    /// 3. The holder refreshes and, in one batch guarded by its lease, writes
    ///    the new tokens (generation + 1) and deletes the lease.
    /// 4. A live lease means someone is refreshing: sleep a little and look
    ///    again, until the tokens move, the lease lapses (then try to take
    ///    it), or the wait runs out.
    pub fn session_after_expiry(&self, used: &Tokens) -> Result<Tokens, PluginError> {
        let store = self.store();
        let deadline = self.host.now_ms() + WAIT_MS;
        // Bounded by count as well as by the clock, in case the clock stalls.
        let max_rounds = (WAIT_MS / POLL_MS) * 2;
        for _ in 0..max_rounds {
            let Some((current, current_raw)) = store.get_with_raw::<Tokens>(keys::TOKENS)? else {
                // Deleted meanwhile: a refresh failed (re-authorization
                // needed) or the administrator disconnected.
                return Err(self.not_connected());
            };
            if !current.same_session(used) {
                return Ok(current);
            }
            let lease_raw = store.get_raw(keys::REFRESH_LEASE)?;
            let now = self.host.now_ms();
            let live = lease_raw
                .as_deref()
                .and_then(|raw| serde_json::from_slice::<Lease>(raw).ok())
                .is_some_and(|lease| lease.expires_at_ms > now);
            if !live {
                if let Some(b) = store.get::<Backoff>(keys::BACKOFF).unwrap_or(None)
                    && now < b.until_ms
                {
                    return Err(b.error(now));
                }
                let lease = Lease {
                    holder: oauth::random_token(self.host, 16),
                    expires_at_ms: now + LEASE_MS,
                    generation: current.generation,
                };
                let lease_bytes = encode(&lease)?;
                let take = Batch::new()
                    .expect_raw(keys::REFRESH_LEASE, lease_raw)
                    .expect_raw(keys::TOKENS, Some(current_raw.clone()))
                    .set(keys::REFRESH_LEASE, &lease)?;
                match store.commit(take) {
                    Ok(()) => return self.refresh(current, current_raw, lease_bytes),
                    // Someone took the lease or changed the tokens between
                    // our reads and our batch: look again.
                    Err(PluginError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            if now >= deadline {
                break;
            }
            self.host.sleep_ms(POLL_MS);
        }
        Err(PluginError::CrmUnavailable(
            "another request is still refreshing the Salesforce session; try again in a few seconds"
                .into(),
        ))
    }

    /// Refresh the session while holding the lease `lease_bytes`.
    fn refresh(
        &self,
        current: Tokens,
        current_raw: Vec<u8>,
        lease_bytes: Vec<u8>,
    ) -> Result<Tokens, PluginError> {
        let store = self.store();
        let release = || {
            let _ = store.commit(
                Batch::new()
                    .expect_raw(keys::REFRESH_LEASE, Some(lease_bytes.clone()))
                    .delete(keys::REFRESH_LEASE),
            );
        };
        let settings: Settings = match store.get(keys::SETTINGS) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                release();
                return Err(e);
            }
        };
        let (Some(client_id), Some(secret)) = (&settings.consumer_key, &settings.consumer_secret)
        else {
            release();
            return Err(PluginError::NotConfigured(
                "the Consumer Key or Secret is missing, so the Salesforce session cannot be refreshed: enter them and click Save".into(),
            ));
        };
        let Some(refresh_token) = current.refresh_token.as_deref() else {
            return Err(self.require_reauthorization(
                &current_raw,
                &lease_bytes,
                "the Salesforce session expired and there is no refresh token (the app's OAuth scopes lack \"refresh_token, offline_access\"): add that scope to the app, then authorize again".into(),
            ));
        };
        let oauth = OAuthClient::new(self.host, &current.login_url, client_id, secret);
        let answer = match oauth.refresh(refresh_token) {
            Ok(answer) => answer,
            Err(failure) if failure.oauth_error() == Some("invalid_grant") => {
                let said = match &failure {
                    TokenFailure::OAuth { description, .. } if !description.is_empty() => {
                        description.clone()
                    }
                    _ => "invalid_grant".into(),
                };
                return Err(self.require_reauthorization(
                    &current_raw,
                    &lease_bytes,
                    format!(
                        "Salesforce refused the stored refresh token ({said}): authorize again from the PBX portal (click Save)"
                    ),
                ));
            }
            Err(failure) => {
                release();
                if let TokenFailure::Server { status } = failure {
                    return Err(self.record_failure(false, status, &[]));
                }
                let error = failure.for_refresh(&current.login_url);
                self.host.log(
                    Level::Warn,
                    &format!("Salesforce session refresh failed: {error}"),
                );
                return Err(error);
            }
        };
        // The refresh answer is signed like the first one; when it carries a
        // signature, a mismatch means the secret changed or traffic was
        // altered.
        if answer.signature.is_some() && !oauth.signed(&answer) {
            release();
            let error = PluginError::NotConfigured(
                "Salesforce's refresh answer has a signature that does not match the Consumer Secret: check the secret, and that nothing between the PBX and Salesforce alters traffic".into(),
            );
            self.host.log(Level::Warn, &error.to_string());
            return Err(error);
        }
        let now = self.host.now_ms();
        let issued_at_ms = answer.issued_at_ms().unwrap_or(now);
        let next = Tokens {
            access_token: answer.access_token,
            // With rotation the old refresh token is dead: keep the new one.
            refresh_token: answer.refresh_token.or(current.refresh_token),
            instance_url: answer
                .instance_url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or(current.instance_url),
            id_url: answer.id.unwrap_or(current.id_url),
            issued_at_ms,
            scope: answer.scope.unwrap_or(current.scope),
            generation: current.generation + 1,
            login_url: current.login_url,
            client_id: current.client_id,
        };
        let commit = Batch::new()
            .expect_raw(keys::REFRESH_LEASE, Some(lease_bytes))
            .expect_raw(keys::TOKENS, Some(current_raw))
            .set(keys::TOKENS, &next)?
            .delete(keys::REFRESH_LEASE);
        match store.commit(commit) {
            Ok(()) => {
                self.host.log(
                    Level::Info,
                    &format!("Salesforce session refreshed (generation {})", next.generation),
                );
                Ok(next)
            }
            Err(PluginError::Conflict(_)) => Err(PluginError::NotConnected(
                "the Salesforce connection changed while its session was refreshed (disconnected or authorized again); try again".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Salesforce refused the refresh token: delete the dead tokens, record
    /// why, keep settings and everything else.
    fn require_reauthorization(
        &self,
        current_raw: &[u8],
        lease_bytes: &[u8],
        reason: String,
    ) -> PluginError {
        let store = self.store();
        let now = self.host.now_ms();
        let record = store
            .get::<ConnectionRecord>(keys::CONNECTION)
            .unwrap_or(None)
            .map(|r| ConnectionRecord {
                state: LinkState::ReauthorizationNeeded,
                changed_at_ms: now,
                reason: Some(reason.clone()),
                ..r
            })
            .unwrap_or(ConnectionRecord {
                state: LinkState::ReauthorizationNeeded,
                username: None,
                display_name: None,
                organization_id: None,
                user_id: None,
                connected_at_ms: None,
                changed_at_ms: now,
                reason: Some(reason.clone()),
                problem: None,
            });
        let batch = Batch::new()
            .expect_raw(keys::REFRESH_LEASE, Some(lease_bytes.to_vec()))
            .expect_raw(keys::TOKENS, Some(current_raw.to_vec()))
            .delete(keys::TOKENS)
            .delete(keys::REFRESH_LEASE)
            .set(keys::CONNECTION, &record);
        match batch.map(|b| store.commit(b)) {
            Ok(Ok(())) | Ok(Err(PluginError::Conflict(_))) => {}
            Ok(Err(e)) | Err(e) => self.host.log(
                Level::Error,
                &format!("could not record that re-authorization is needed: {e}"),
            ),
        }
        self.host.log(Level::Warn, &reason);
        PluginError::NotConnected(reason)
    }
}

/// The URL of `path` on `instance_url`.
fn api_url(instance_url: &str, path: &str) -> String {
    let base = instance_url.trim_end_matches('/');
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/services/data/{API_VERSION}/{path}")
    }
}

/// The query path for `soql`, percent-encoded (`%20` for spaces: a literal
/// `+` is already `%2B`, so every `+` the encoder wrote is a space).
fn query_path(soql: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", soql)
        .finish()
        .replace('+', "%20");
    format!("query?{q}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_shows_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00 UTC");
        assert_eq!(clock(1_700_000_000_000), "22:13:20 UTC");
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(Backoff::delay_ms).collect();
        assert_eq!(
            delays,
            [
                5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000
            ]
        );
        assert_eq!(Backoff::delay_ms(u32::MAX), 300_000);
    }

    #[test]
    fn paths_are_relative_to_the_api_version_unless_absolute() {
        assert_eq!(
            api_url("https://na1.salesforce.com/", "sobjects/Task/"),
            "https://na1.salesforce.com/services/data/v67.0/sobjects/Task/"
        );
        assert_eq!(
            api_url(
                "https://na1.salesforce.com",
                "/services/data/v67.0/query/01g-2000"
            ),
            "https://na1.salesforce.com/services/data/v67.0/query/01g-2000"
        );
        assert_eq!(
            query_path("SELECT Id FROM User WHERE Name = 'A+B'"),
            "query?q=SELECT%20Id%20FROM%20User%20WHERE%20Name%20%3D%20%27A%2BB%27"
        );
    }

    #[test]
    fn error_arrays_become_typed_errors() {
        let api = ApiError::parse(
            400,
            br#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#,
        );
        assert!(api.has_code("REQUIRED_FIELD_MISSING"));
        assert_eq!(api.code(), Some("REQUIRED_FIELD_MISSING"));
        assert_eq!(api.errors[0].fields, ["LastName"]);
        let text = api.to_string();
        assert!(
            text.contains("REQUIRED_FIELD_MISSING: Required fields are missing"),
            "{text}"
        );
        assert!(text.contains("(fields: LastName)"), "{text}");

        let html = ApiError::parse(404, b"<html>\nnot here</html>");
        assert_eq!(html.code(), None);
        assert!(html.to_string().contains("<html> not here</html>"));
        assert!(matches!(
            PluginError::from(SalesforceError::Api(html)),
            PluginError::NotFound(_)
        ));
    }
}
