//! The PBX's extensions: list, add or replace, remove.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::json;

use crate::directory::Extension;
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/extensions", get(list_extensions).post(put_extension))
        .route("/extensions/{number}", delete(remove_extension))
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
