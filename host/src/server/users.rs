//! CRM users and their associations with extensions: the sync job (the
//! plugin syncs in steps; the host loops and keeps the progress), the list,
//! the automatic proposal and Save.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::api::{ApiError, plugin_result};
use crate::capabilities::integration_export::Association;

type St = State<Arc<AppState>>;

/// The progress of a plugin's user sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncJob {
    /// Whether it is running now.
    pub running: bool,
    /// Users read so far.
    pub fetched: u32,
    /// Users in the CRM.
    pub total: u32,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Whether it ended well.
    pub ok: Option<bool>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Sync jobs by plugin id.
#[derive(Default)]
pub struct SyncJobs(Mutex<HashMap<String, SyncJob>>);

impl SyncJobs {
    fn get(&self, plugin: &str) -> SyncJob {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, plugin: &str, f: impl FnOnce(&mut SyncJob)) {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(jobs.entry(plugin.to_string()).or_default());
    }

    /// Mark a sync started unless one runs; false if one runs.
    fn start(&self, plugin: &str) -> bool {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let job = jobs.entry(plugin.to_string()).or_default();
        if job.running {
            return false;
        }
        *job = SyncJob {
            running: true,
            started_at_ms: now_ms(),
            ..SyncJob::default()
        };
        true
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/crm/{plugin}/users", get(list_users))
        .route(
            "/crm/{plugin}/users/sync",
            get(sync_progress).post(start_sync),
        )
        .route("/crm/{plugin}/associations", get(list_users).put(save))
        .route("/crm/{plugin}/associations/proposal", get(proposal))
        .route(
            "/crm/{plugin}/associations/extension/{extension}",
            get(by_extension),
        )
        .route("/crm/{plugin}/associations/user/{user}", get(by_user))
}

async fn start_sync(State(st): St, Path(plugin): Path<String>) -> Result<Response, ApiError> {
    // Fail early for an unknown plugin rather than in the background.
    st.runtime
        .plugins()
        .iter()
        .find(|p| p.manifest.id == plugin)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-installed",
                format!("no plugin {plugin:?} is installed"),
            )
        })?;
    if !st.syncs.start(&plugin) {
        return Ok((StatusCode::ACCEPTED, Json(st.syncs.get(&plugin))).into_response());
    }
    let state = st.clone();
    let id = plugin.clone();
    tokio::spawn(async move { run_sync(state, id).await });
    Ok((StatusCode::ACCEPTED, Json(st.syncs.get(&plugin))).into_response())
}

/// Loop the plugin's sync steps until it says the sync is complete.
async fn run_sync(st: Arc<AppState>, plugin: String) {
    let mut cursor: Option<String> = None;
    loop {
        let step_cursor = cursor.clone();
        let (step, timing) = st
            .runtime
            .call_timed(&plugin, move |p, s| {
                Box::pin(async move { p.sync_users(s, step_cursor.as_deref()).await })
            })
            .await;
        // Where a step's time goes (Salesforce or the host and plugin), for
        // tuning the step size: RUST_LOG=pbx_host::server::users=debug.
        tracing::debug!(
            %plugin,
            total_ms = timing.total.as_secs_f64() * 1e3,
            http_ms = timing.http.as_secs_f64() * 1e3,
            fetches = timing.http_fetches,
            "user sync step"
        );
        match plugin_result(step) {
            Ok(progress) => {
                st.syncs.update(&plugin, |job| {
                    job.fetched = progress.fetched;
                    job.total = progress.total;
                });
                cursor = progress.cursor;
                if cursor.is_none() {
                    st.syncs.update(&plugin, |job| {
                        job.running = false;
                        job.ok = Some(true);
                        job.finished_at_ms = Some(now_ms());
                    });
                    tracing::info!(%plugin, users = progress.fetched, "user sync complete");
                    return;
                }
            }
            Err(e) => {
                let message = e.message().to_string();
                tracing::warn!(%plugin, "user sync failed: {message}");
                st.syncs.update(&plugin, |job| {
                    job.running = false;
                    job.ok = Some(false);
                    job.error = Some(message);
                    job.finished_at_ms = Some(now_ms());
                });
                return;
            }
        }
    }
}

async fn sync_progress(State(st): St, Path(plugin): Path<String>) -> Json<SyncJob> {
    Json(st.syncs.get(&plugin))
}

async fn list_users(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = plugin_result(
        st.runtime
            .call(&plugin, |p, s| Box::pin(p.list_users(s)))
            .await,
    )?;
    let extensions = st.services.directory.list()?;
    Ok(Json(json!({
        "entries": list.entries,
        "version": list.version,
        "synced_at_ms": list.synced_at_ms,
        "extensions": extensions,
        "sync": st.syncs.get(&plugin),
    })))
}

async fn proposal(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let proposal = plugin_result(
        st.runtime
            .call(&plugin, |p, s| Box::pin(p.propose_associations(s)))
            .await,
    )?;
    Ok(Json(json!(proposal)))
}

#[derive(Deserialize)]
struct SaveBody {
    version: u64,
    associations: Vec<Association>,
}

async fn save(
    State(st): St,
    Path(plugin): Path<String>,
    Json(body): Json<SaveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let version = plugin_result(
        st.runtime
            .call(&plugin, move |p, s| {
                Box::pin(async move {
                    p.save_associations(s, body.version, &body.associations)
                        .await
                })
            })
            .await,
    )?;
    Ok(Json(json!({ "version": version })))
}

async fn by_extension(
    State(st): St,
    Path((plugin, extension)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = plugin_result(
        st.runtime
            .call(&plugin, move |p, s| {
                Box::pin(async move { p.user_for_extension(s, &extension).await })
            })
            .await,
    )?;
    Ok(Json(json!({ "user": user })))
}

async fn by_user(
    State(st): St,
    Path((plugin, user)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let extension = plugin_result(
        st.runtime
            .call(&plugin, move |p, s| {
                Box::pin(async move { p.extension_for_user(s, &user).await })
            })
            .await,
    )?;
    Ok(Json(json!({ "extension": extension })))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
