//! The CLI's side of the admin API: it finds the running host through the
//! files `serve` keeps in the data directory (and, for a host serving
//! HTTPS, the certificate it trusts: `pinned_tls`).

use std::path::Path;

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::server::{ADMIN_CERT_FILE, ADMIN_TOKEN_FILE, ADMIN_URL_FILE, OPERATOR_TOKEN_FILE};
use crate::tenants::{DEFAULT_TENANT, check_name};

/// A client of one running host's admin API.
pub struct AdminClient {
    base: String,
    /// Where the API is under `base`: `/api` for the host's own PBX,
    /// `/operator/tenants/NAME/api` for a tenant, `/operator` for the
    /// operator API.
    api: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// Find the host serving `data_dir`.
    pub fn from_data_dir(data_dir: &Path) -> anyhow::Result<Self> {
        Self::in_data_dir(data_dir, ADMIN_TOKEN_FILE)
    }

    /// The operator API (`/operator`) of the host serving `data_dir`, with
    /// its operator token.
    pub fn operator(data_dir: &Path) -> anyhow::Result<Self> {
        let mut client = Self::in_data_dir(data_dir, OPERATOR_TOKEN_FILE)?;
        client.api = "/operator".into();
        Ok(client)
    }

    /// The admin API of tenant `name` (`default`: the host's own PBX) of
    /// the host serving `data_dir`, as its operator.
    pub fn for_tenant(data_dir: &Path, name: &str) -> anyhow::Result<Self> {
        let mut client = Self::operator(data_dir)?;
        // The name becomes a path segment: only what a tenant name may be.
        if name != DEFAULT_TENANT {
            check_name(name)?;
        }
        client.api = format!("/operator/tenants/{name}/api");
        Ok(client)
    }

    fn in_data_dir(data_dir: &Path, token_file: &str) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = data_dir.join(name);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .with_context(|| {
                    format!(
                        "cannot read {}: is `pbx-host serve --data-dir {}` running?",
                        path.display(),
                        data_dir.display()
                    )
                })
        };
        let base = read(ADMIN_URL_FILE)?;
        let token = read(token_file)?;
        if base.starts_with("https://") {
            let http = super::pinned_tls::client(&data_dir.join(ADMIN_CERT_FILE))?;
            return Ok(Self::with_http(base, token, http));
        }
        Self::new(base, token)
    }

    /// A client of `base` with `token`, over `http`.
    pub fn with_http(base: String, token: String, http: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            api: "/api".into(),
            token,
            http,
        }
    }

    /// A client of `base` with `token`.
    ///
    /// It talks to the host directly: no proxy from `http_proxy`,
    /// `HTTPS_PROXY`, `ALL_PROXY` or the system, as a proxy would receive the
    /// administrator's bearer token; and it follows no redirect, as the admin
    /// API never answers one and the token must go nowhere else.
    pub fn new(base: String, token: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot set up the HTTP client for the admin API")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            api: "/api".into(),
            token,
            http,
        })
    }

    /// `GET {api}{path}` (`/api` unless for a tenant or the operator).
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }

    /// `POST {api}{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, Some(Body::Json(body))).await
    }

    /// `PUT {api}{path}` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::PUT, path, Some(Body::Json(body))).await
    }

    /// `DELETE {api}{path}`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, None).await
    }

    /// `POST {api}{path}` with raw bytes.
    pub async fn post_bytes(&self, path: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
        self.send(Method::POST, path, Some(Body::Bytes(bytes)))
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body<'_>>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}{path}", self.base, self.api);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        request = match body {
            Some(Body::Json(v)) => request.json(v),
            Some(Body::Bytes(b)) => request
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(b),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the host at {}: is it running?", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::NO_CONTENT || text.is_empty() {
            if status.is_success() {
                return Ok(Value::Null);
            }
            bail!("the host answered {status}");
        }
        let value: Value = serde_json::from_str(&text).with_context(|| {
            format!("the host answered {status} with something that is not JSON")
        })?;
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            bail!("{message}");
        }
        Ok(value)
    }
}

enum Body<'a> {
    Json(&'a Value),
    Bytes(Vec<u8>),
}
