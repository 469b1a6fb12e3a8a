//! Who is signed in, and signing them out: the portal's and agents'
//! browser sessions (`server::sessions`). Listings give a non-secret
//! handle per session, never its id.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::call_input::check_extension;
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sessions", get(list))
        .route("/sessions/{handle}", delete(end))
        .route("/extensions/{number}/sign-out", post(sign_out_extension))
}

/// `GET /api/sessions`: every live session, oldest first.
async fn list(State(st): St) -> Result<Json<Value>, ApiError> {
    let policy = st.auth.sessions.policy();
    Ok(Json(json!({
        "sessions": st.auth.sessions.list()?,
        "idle_secs": policy.idle.as_secs(),
        "max_secs": policy.max_age.as_secs(),
    })))
}

/// `DELETE /api/sessions/{handle}`: end one session.
async fn end(State(st): St, Path(handle): Path<String>) -> Result<StatusCode, ApiError> {
    if st.auth.sessions.end_handle(&handle)? {
        tracing::info!(%handle, "session ended by the administrator");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no live session has handle {handle:?}; `pbx-host agent list` shows them"),
        ))
    }
}

/// `POST /api/extensions/{number}/sign-out`: end every agent session of
/// the extension; how many.
async fn sign_out_extension(
    State(st): St,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let number = check_extension("number", &number)?;
    let ended = st.auth.sessions.end_extension(&number)?;
    tracing::info!(extension = %number, ended, "agent sessions ended by the administrator");
    Ok(Json(json!({ "extension": number, "ended": ended })))
}
