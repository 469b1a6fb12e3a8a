//! The one REST client every Salesforce API call goes through.
//!
//! It sends to the stored `instance_url` with the stored access token, and
//! owns what every call needs:
//! - **Session expiry**: a 401 refreshes the session once and retries once
//!   (`session`: one instance refreshes under a lease, the others wait).
//! - **Limits and outages**: `403 REQUEST_LIMIT_EXCEEDED` and 5xx answers
//!   start a back-off (`backoff`); during it calls fail fast without sending
//!   anything.
//! - **Errors**: Salesforce's error array becomes a typed [`ApiError`]
//!   (`api_error`).
//! - **The org's API use**: every answer's `Sforce-Limit-Info` is read and
//!   the figure kept when it changed meaningfully (`limits`).
//!
//! The query texts it sends are built in `query`; typed record ids are
//! normalized to their 18-character form in `ids`; whether the org has
//! Person Accounts is remembered in `person_accounts`.

mod api_error;
mod backoff;
pub mod ids;
mod limits;
pub mod person_accounts;
pub mod query;
mod session;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use api_error::{ApiError, ApiErrorItem, SalesforceError};
pub use backoff::Backoff;
pub use limits::{ApiUsage, HIGH_PERCENT};
pub use session::{RefreshEnd, RefreshLease};

use crate::auth::{ConnectionRecord, LinkState, Tokens};
use crate::bindings::pbx::crm::http_fetch::{Header, Method, Request, Response};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::http;
use crate::store::{Store, encode, keys};
use query::query_path;

/// The REST API version the plugin speaks.
pub const API_VERSION: &str = "v67.0";
/// At most this many query pages are followed in one call.
const MAX_PAGES: usize = 500;

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
        // The back-off and the last API use in one host call.
        let kept = store
            .get_many_raw(&[keys::BACKOFF.to_string(), keys::API_USAGE.to_string()])
            .unwrap_or_default();
        let kept_as = |i: usize| kept.get(i).and_then(|raw| raw.as_deref());
        let backoff: Option<Backoff> = kept_as(0).and_then(|raw| serde_json::from_slice(raw).ok());
        let usage: Option<ApiUsage> = kept_as(1).and_then(|raw| serde_json::from_slice(raw).ok());
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
        self.note_usage(&response.headers, usage.as_ref());
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
    ) -> Result<Response, PluginError> {
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

#[cfg(test)]
mod tests;
