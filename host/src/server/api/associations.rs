//! CRM users and their associations with extensions: the sync job, the
//! users page (with the PBX's extensions), the automatic proposal, Save,
//! and the lookups both ways.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::runtime::wit::Association;
use crate::server::error::ApiError;
use crate::server::sessions::SignedInWith;
use crate::server::state::AppState;
use crate::user_sync::SyncJob;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/crm/{plugin}/users", get(list_users))
        .route(
            "/crm/{plugin}/users/sync",
            get(sync_progress).post(start_sync),
        )
        .route(
            "/crm/{plugin}/users/sync/result",
            get(sync_result).delete(dismiss_sync_result),
        )
        .route("/crm/{plugin}/associations", get(list_users).put(save))
        .route("/crm/{plugin}/associations/proposal", get(proposal))
        .route(
            "/crm/{plugin}/associations/extension/{extension}",
            get(by_extension),
        )
        .route("/crm/{plugin}/associations/user/{user}", get(by_user))
}

/// `POST /crm/{plugin}/users/sync`'s optional body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartSync {
    /// Keep how it ends for the portal's result pop-up.
    #[serde(default)]
    show_result: bool,
}

async fn start_sync(
    State(st): St,
    Path(plugin): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // No body (the CLI's bare POST) is the default: no pop-up.
    let start: StartSync = if body.iter().all(u8::is_ascii_whitespace) {
        StartSync::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-input",
                format!("the body must be {{}} or {{\"show_result\": true}}: {e}"),
            )
        })?
    };
    // Fail early for an unknown plugin rather than in the background.
    if !st.runtime.plugin_ids().contains(&plugin) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-installed",
            format!("no plugin {plugin:?} is installed"),
        ));
    }
    let job = st
        .syncs
        .start(st.runtime.clone(), &plugin, start.show_result);
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

/// `{result}`: how the last sync started with `show_result` ended, until
/// dismissed; null otherwise.
async fn sync_result(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let result = st.syncs.result(&plugin).map_err(store_error)?;
    Ok(Json(json!({ "result": result })))
}

async fn dismiss_sync_result(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.syncs.dismiss(&plugin).await.map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn store_error(e: crate::store::KvError) -> ApiError {
    ApiError::store(format!("the sync result cannot be read or written: {e}"))
}

async fn sync_progress(State(st): St, Path(plugin): Path<String>) -> Json<SyncJob> {
    Json(st.syncs.get(&plugin))
}

async fn list_users(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = st.runtime.plugin(&plugin).list_users().await?;
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
    let proposal = st.runtime.plugin(&plugin).propose_associations().await?;
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
    let version = st
        .runtime
        .plugin(&plugin)
        .save_associations(body.version, &body.associations)
        .await?;
    // A CRM user no longer associated with the extension they signed in
    // for is signed out.
    let ended = st
        .auth
        .sessions
        .end_agents_where(|extension, via| match via {
            SignedInWith::Crm { plugin: p, user } if *p == plugin => !body
                .associations
                .iter()
                .any(|a| a.user_id == *user && a.extension == extension),
            _ => false,
        });
    // The associations are saved either way; a session left open is said.
    let ended = match ended {
        Ok(ended) => ended,
        Err(e) => {
            tracing::error!(%plugin, "associations saved, but the sessions of users no longer associated could not be ended: {e}");
            return Ok(Json(json!({
                "version": version,
                "sessions_ended": 0,
                "sessions_error": format!("{e}; save the associations again to sign those users out"),
            })));
        }
    };
    if ended > 0 {
        tracing::info!(%plugin, ended, "associations saved; sessions of users no longer associated ended");
    }
    Ok(Json(json!({ "version": version, "sessions_ended": ended })))
}

async fn by_extension(
    State(st): St,
    Path((plugin, extension)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = st
        .runtime
        .plugin(&plugin)
        .user_for_extension(&extension)
        .await?;
    Ok(Json(json!({ "user": user })))
}

async fn by_user(
    State(st): St,
    Path((plugin, user)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let extension = st.runtime.plugin(&plugin).extension_for_user(&user).await?;
    Ok(Json(json!({ "extension": extension })))
}
