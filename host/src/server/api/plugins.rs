//! Plugin versions: install (verified, stored, compiled), list, activate,
//! roll back, grant hosts or kv-store space, remove. The heavy ones run on
//! the blocking pool, off the async workers. Every route is the
//! administrator's (the admin API's token or session). Re-pinning a plugin
//! id to another vendor key (`?repin=yes`) and downgrading
//! (`?allow_downgrade=yes`, `"allow_downgrade": true`) are explicit.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::runtime::manifest::KvRequest;
use crate::runtime::{Activate, Activation, InstallError, InstallOptions};
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

/// The largest component `POST /api/plugins` takes.
const MAX_COMPONENT_BYTES: usize = 64 << 20;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
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
    /// `yes`: accept another vendor key than the one the plugin id is
    /// pinned to, and pin it to that key.
    repin: Option<String>,
    /// `yes`: allow activating a version older than the newest activated.
    allow_downgrade: Option<String>,
}

/// A yes/no query value; anything else is refused, naming `field`.
pub(super) fn yes_no(value: Option<&str>, field: &'static str) -> Result<bool, ApiError> {
    match value {
        None | Some("no" | "false") => Ok(false),
        Some("yes" | "true") => Ok(true),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!("{field}={other:?}: use yes or no"),
        )
        .with_field(field)),
    }
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
        repin: yes_no(query.repin.as_deref(), "repin")?,
        allow_downgrade: yes_no(query.allow_downgrade.as_deref(), "allow_downgrade")?,
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
    /// Allow a version older than the newest activated one.
    #[serde(default)]
    allow_downgrade: bool,
}

async fn activate_plugin(
    State(st): St,
    Path(id): Path<String>,
    Json(body): Json<ActivateBody>,
) -> Result<Json<Activation>, ApiError> {
    let runtime = st.runtime.clone();
    Ok(Json(
        off_worker(move || runtime.activate_with(&id, &body.version, body.allow_downgrade)).await?,
    ))
}

async fn rollback_plugin(
    State(st): St,
    Path(id): Path<String>,
) -> Result<Json<Activation>, ApiError> {
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
            (Some(max_keys), Some(max_mib)) => {
                Some(runtime.grant_kv(&id, KvRequest { max_keys, max_mib })?)
            }
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
