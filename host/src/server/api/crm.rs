//! A CRM plugin's set-up: what it is and which settings it describes, its
//! settings, the Callback URL, authorizing, disconnecting, and its status
//! with the host's view of its call journal.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::runtime::wit::SettingInput;
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/crm/{plugin}/describe", get(describe))
        .route("/crm/{plugin}/status", get(status))
        .route("/crm/{plugin}/callback-url", get(callback_url))
        .route("/crm/{plugin}/settings", get(settings).put(save_settings))
        .route("/crm/{plugin}/authorize", post(authorize))
        .route("/crm/{plugin}/disconnect", post(disconnect))
}

async fn describe(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let info = st.runtime.plugin(&plugin).describe().await?;
    Ok(Json(json!(info)))
}

async fn status(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = st.runtime.plugin(&plugin).status().await?;
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

async fn authorize(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let callback_url = st.config.callback_url(&plugin);
    let authorization = st
        .runtime
        .plugin(&plugin)
        .begin_authorization(&callback_url)
        .await?;
    Ok(Json(json!(authorization)))
}

async fn disconnect(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = st.runtime.plugin(&plugin).disconnect().await?;
    Ok(Json(json!(status)))
}

async fn callback_url(State(st): St, Path(plugin): Path<String>) -> Json<serde_json::Value> {
    Json(json!({ "callback_url": st.config.callback_url(&plugin) }))
}

async fn settings(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let values = st.runtime.plugin(&plugin).settings().await?;
    Ok(Json(json!({ "settings": values })))
}

#[derive(Deserialize)]
struct SettingsBody {
    settings: Vec<SettingInput>,
}

async fn save_settings(
    State(st): St,
    Path(plugin): Path<String>,
    Json(body): Json<SettingsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = st
        .runtime
        .plugin(&plugin)
        .save_settings(&body.settings)
        .await?;
    Ok(Json(json!({ "status": status })))
}
