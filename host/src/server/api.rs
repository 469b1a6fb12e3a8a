//! The admin API (documented in docs/API.md). Every route needs the admin
//! token or a portal session.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, auth};
use crate::capabilities::directory::{DirectoryError, Extension};
use crate::capabilities::integration_export::SettingInput;
use crate::capabilities::pbx::crm::types::{Error as PluginError, ErrorKind};
use crate::runtime::inspect::SUPPORTED_APIS;
use crate::runtime::{Activate, CallError, InstallError, InstallOptions};

type St = State<Arc<AppState>>;

/// The largest component `POST /api/plugins` takes.
const MAX_COMPONENT_BYTES: usize = 64 << 20;

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/host", get(host_info))
        .route(
            "/plugins",
            get(list_plugins)
                .post(install_plugin)
                // Components with their dependencies run to megabytes.
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route("/plugins/{id}/activate", post(activate_plugin))
        .route("/plugins/{id}/rollback", post(rollback_plugin))
        .route("/plugins/{id}/grants", post(grant_plugin))
        .route(
            "/plugins/{id}/versions/{version}",
            delete(remove_plugin_version),
        )
        .route("/extensions", get(list_extensions).post(put_extension))
        .route("/extensions/{number}", delete(remove_extension))
        .route("/browser-requests", get(browser_requests))
        .route("/crm/{plugin}/describe", get(crm_describe))
        .route("/crm/{plugin}/status", get(crm_status))
        .route("/crm/{plugin}/callback-url", get(crm_callback_url))
        .route(
            "/crm/{plugin}/settings",
            get(crm_settings).put(crm_save_settings),
        )
        .route("/crm/{plugin}/authorize", post(crm_authorize))
        .route("/crm/{plugin}/disconnect", post(crm_disconnect))
        .merge(super::users::routes())
        .merge(super::calls::routes())
        .layer(middleware::from_fn_with_state(state, auth::require))
}

/// An API error: a status and a message that names the fix.
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind (`invalid-input`, `crm-unavailable`, ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Name the input field that is wrong.
    pub(super) fn with_field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "kind": self.kind});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let (status, kind) = match &e {
            CallError::NotInstalled(_) => (StatusCode::NOT_FOUND, "not-installed"),
            CallError::Deadline { .. } => (StatusCode::GATEWAY_TIMEOUT, "deadline"),
            CallError::MemoryLimit { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "memory-limit"),
            CallError::Trap { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "plugin-failed"),
        };
        ApiError::new(status, kind, e.to_string())
    }
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        let (status, kind) = match e.kind {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid-input"),
            ErrorKind::NotConfigured => (StatusCode::CONFLICT, "not-configured"),
            ErrorKind::NotConnected => (StatusCode::CONFLICT, "not-connected"),
            ErrorKind::AuthorizationFailed => (StatusCode::BAD_REQUEST, "authorization-failed"),
            ErrorKind::CrmUnavailable => (StatusCode::BAD_GATEWAY, "crm-unavailable"),
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, kind, e.message)
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Invalid(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", m)
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                other.to_string(),
            ),
        }
    }
}

/// Flatten a plugin call: the call itself failed, or the plugin said no.
pub(super) fn plugin_result<T>(
    r: Result<Result<T, PluginError>, CallError>,
) -> Result<T, ApiError> {
    Ok(r??)
}

async fn host_info(State(st): St) -> Json<serde_json::Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "public_url": st.config.public_url.as_str(),
        "supported_apis": SUPPORTED_APIS.iter().map(|v| format!("pbx:crm@{v}")).collect::<Vec<_>>(),
        "limits": {
            "deadline_ms": st.config.limits.deadline.as_millis() as u64,
            "memory_bytes": st.config.limits.memory,
        },
        "runtime": st.runtime.stats(),
    }))
}

async fn list_plugins(State(st): St) -> Result<Json<serde_json::Value>, ApiError> {
    let runtime = st.runtime.clone();
    let listing = off_worker(move || runtime.listing()).await?;
    Ok(Json(json!({ "plugins": listing })))
}

/// `POST /api/plugins?activate=...&sha256=...` query.
#[derive(Debug, Default, Deserialize)]
struct InstallQuery {
    /// `if-none-active` (default), `yes`/`true` or `no`/`false`.
    activate: Option<String>,
    /// The SHA-256 the file must have.
    sha256: Option<String>,
}

async fn install_plugin(
    State(st): St,
    Query(query): Query<InstallQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let activate = match query.activate.as_deref() {
        None | Some("if-none-active") => Activate::IfNoneActive,
        Some("yes" | "true") => Activate::Yes,
        Some("no" | "false") => Activate::No,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-input",
                format!("activate={other:?}: use yes, no or if-none-active"),
            )
            .with_field("activate"));
        }
    };
    let options = InstallOptions {
        sha256: query.sha256,
        activate,
    };
    let runtime = st.runtime.clone();
    // Compiling takes a while: keep it off the async workers.
    let report = off_worker(move || runtime.install_with(&body, &options)).await?;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

#[derive(Debug, Deserialize)]
struct ActivateBody {
    version: String,
}

async fn activate_plugin(
    State(st): St,
    Path(id): Path<String>,
    Json(body): Json<ActivateBody>,
) -> Result<Json<crate::runtime::Activation>, ApiError> {
    let runtime = st.runtime.clone();
    Ok(Json(
        off_worker(move || runtime.activate(&id, &body.version)).await?,
    ))
}

async fn rollback_plugin(
    State(st): St,
    Path(id): Path<String>,
) -> Result<Json<crate::runtime::Activation>, ApiError> {
    let runtime = st.runtime.clone();
    Ok(Json(off_worker(move || runtime.rollback(&id)).await?))
}

/// `{pattern}` grants a host; `{kv_max_keys, kv_max_mib}` a kv-store quota.
#[derive(Debug, Deserialize)]
struct GrantBody {
    pattern: Option<String>,
    kv_max_keys: Option<u64>,
    kv_max_mib: Option<u64>,
}

async fn grant_plugin(
    State(st): St,
    Path(id): Path<String>,
    Json(body): Json<GrantBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let runtime = st.runtime.clone();
    let answer = off_worker(move || {
        let kv = match (body.kv_max_keys, body.kv_max_mib) {
            (None, None) => None,
            (Some(max_keys), Some(max_mib)) => Some(runtime.grant_kv(
                &id,
                crate::runtime::manifest::KvRequest { max_keys, max_mib },
            )?),
            _ => {
                return Err(InstallError::BadGrant(
                    "a kv-store grant needs both kv_max_keys and kv_max_mib".into(),
                ));
            }
        };
        let granted = match &body.pattern {
            Some(pattern) => runtime.grant(&id, pattern)?,
            None if kv.is_some() => Vec::new(),
            None => {
                return Err(InstallError::BadGrant(
                    "give a host pattern (scheme://host[:port]) or a kv-store quota".into(),
                ));
            }
        };
        Ok(json!({
            "granted": granted,
            "kv_max_keys": kv.map(|q| q.max_keys),
            "kv_max_bytes": kv.map(|q| q.max_bytes),
        }))
    })
    .await?;
    Ok(Json(answer))
}

async fn remove_plugin_version(
    State(st): St,
    Path((id, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let runtime = st.runtime.clone();
    off_worker(move || runtime.remove(&id, &version)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs an install-type operation (compiling, file and store I/O) on the
/// blocking pool.
async fn off_worker<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, InstallError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> Self {
        let (status, kind) = match &e {
            InstallError::Refused(_)
            | InstallError::HashMismatch { .. }
            | InstallError::Signature(_) => (StatusCode::BAD_REQUEST, "refused"),
            InstallError::BadGrant(_) => (StatusCode::BAD_REQUEST, "invalid-input"),
            InstallError::NotInstalled(_) | InstallError::UnknownVersion { .. } => {
                (StatusCode::NOT_FOUND, "not-found")
            }
            InstallError::VersionClash { .. }
            | InstallError::NeedsGrants { .. }
            | InstallError::ActiveVersion { .. }
            | InstallError::NoPrevious(_)
            | InstallError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            InstallError::Migration { .. } | InstallError::Load(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "load-failed")
            }
            InstallError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, kind, e.to_string())
    }
}

async fn list_extensions(State(st): St) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!({ "extensions": st.services.directory.list()? })))
}

async fn put_extension(State(st): St, Json(ext): Json<Extension>) -> Result<Response, ApiError> {
    let saved = st.services.directory.put(ext)?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

async fn remove_extension(
    State(st): St,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    if st.services.directory.remove(&number)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("extension {number} does not exist; `pbx-host extension list` shows them"),
        ))
    }
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn browser_requests(State(st): St, Query(q): Query<After>) -> Json<serde_json::Value> {
    Json(json!({ "requests": st.services.browser.since(q.after) }))
}

async fn crm_describe(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let info = st
        .runtime
        .call(&plugin, |p, s| Box::pin(p.describe(s)))
        .await?;
    Ok(Json(json!(info)))
}

async fn crm_status(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = st
        .runtime
        .call(&plugin, |p, s| Box::pin(p.get_status(s)))
        .await?;
    let mut body = json!(status);
    let last = st
        .authorizations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&plugin)
        .cloned();
    body["last_authorization"] = json!(last);
    let pending = st.journal.pending(&plugin);
    body["pending_call_logs"] = json!(pending.count);
    body["queued_call_events"] = json!(st.journal.queued(&plugin));
    if let Some(error) = pending.error {
        body["call_journal_problem"] = json!(error);
    }
    Ok(Json(body))
}

async fn crm_authorize(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let callback_url = st.config.callback_url(&plugin);
    let authorization = plugin_result(
        st.runtime
            .call(&plugin, move |p, s| {
                Box::pin(async move { p.begin_authorization(s, &callback_url).await })
            })
            .await,
    )?;
    Ok(Json(json!(authorization)))
}

async fn crm_disconnect(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = plugin_result(
        st.runtime
            .call(&plugin, |p, s| Box::pin(p.disconnect(s)))
            .await,
    )?;
    Ok(Json(json!(status)))
}

async fn crm_callback_url(State(st): St, Path(plugin): Path<String>) -> Json<serde_json::Value> {
    Json(json!({ "callback_url": st.config.callback_url(&plugin) }))
}

async fn crm_settings(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let values = plugin_result(
        st.runtime
            .call(&plugin, |p, s| Box::pin(p.get_settings(s)))
            .await,
    )?;
    Ok(Json(json!({ "settings": values })))
}

#[derive(Deserialize)]
struct SettingsBody {
    settings: Vec<SettingInput>,
}

async fn crm_save_settings(
    State(st): St,
    Path(plugin): Path<String>,
    Json(body): Json<SettingsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = plugin_result(
        st.runtime
            .call(&plugin, move |p, s| {
                Box::pin(async move { p.save_settings(s, &body.settings).await })
            })
            .await,
    )?;
    Ok(Json(json!({ "status": status })))
}
