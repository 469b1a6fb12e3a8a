//! The PBX's extensions: list, add or replace, remove; and their
//! passwords (agents without a CRM account sign in with them). Removing an
//! extension ends its agents' sessions and drops its password.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::call_input::check_extension;
use crate::directory::Extension;
use crate::directory::passwords::PasswordError;
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/extensions", get(list_extensions).post(put_extension))
        .route("/extensions/{number}", delete(remove_extension))
        .route(
            "/extensions/{number}/password",
            put(set_password).delete(clear_password),
        )
}

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Invalid(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", m).with_field("password")
            }
            other => ApiError::store(other.to_string()),
        }
    }
}

/// The extension `number`, which must exist.
fn existing(st: &AppState, number: &str) -> Result<String, ApiError> {
    let number = check_extension("number", number)?;
    if st.services.directory.get(&number)?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("extension {number} does not exist; `pbx-host extension list` shows them"),
        ));
    }
    Ok(number)
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

/// `PUT /api/extensions/{number}/password {"password": "..."}`: set or
/// replace it (Argon2id); the extension's password sessions end, so a
/// changed password locks out whoever used the old one.
async fn set_password(
    State(st): St,
    Path(number): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let number = existing(&st, &number)?;
    // Not Json<..>: its rejection would echo the body, the password.
    let body: PasswordBody = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "the body must be JSON such as {\"password\": \"...\"}",
        )
        .with_field("body")
    })?;
    let _permit = st.hashing.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the host is shutting down",
        )
    })?;
    let passwords = st.passwords.clone();
    let ext = number.clone();
    tokio::task::spawn_blocking(move || passwords.set(&ext, &body.password))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "hashing the password failed; try again",
            )
        })??;
    st.auth.sessions.end_agents_where(|ext, via| {
        ext == number && *via == crate::server::sessions::SignedInWith::Password
    })?;
    tracing::info!(extension = %number, "extension password set");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/extensions/{number}/password`: password sign-in ends for
/// the extension, and so do its password sessions.
async fn clear_password(State(st): St, Path(number): Path<String>) -> Result<StatusCode, ApiError> {
    let number = check_extension("number", &number)?;
    if !st.passwords.clear(&number)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("extension {number} has no password"),
        ));
    }
    st.auth.sessions.end_agents_where(|ext, via| {
        ext == number && *via == crate::server::sessions::SignedInWith::Password
    })?;
    tracing::info!(extension = %number, "extension password cleared");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_extensions(State(st): St) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!({ "extensions": st.services.directory.list()? })))
}

/// `POST /api/extensions?replace=yes` query.
#[derive(Debug, Default, Deserialize)]
struct AddQuery {
    /// `yes`: replace an extension with the same number (the administrator
    /// confirmed it); otherwise an existing number is refused (409).
    replace: Option<String>,
}

async fn put_extension(
    State(st): St,
    Query(query): Query<AddQuery>,
    Json(ext): Json<Extension>,
) -> Result<Response, ApiError> {
    let replace = super::plugins::yes_no(query.replace.as_deref(), "replace")?;
    let saved = st.services.directory.add(ext, replace)?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

async fn remove_extension(
    State(st): St,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    if st.services.directory.remove(&number)? {
        // Whoever was signed in for it is signed out, and cannot sign in again.
        let ended = st.auth.sessions.end_extension(&number)?;
        st.passwords.clear(&number)?;
        st.auth.extension_failures.forget(&number)?;
        st.recent_calls.forget(&number).await;
        tracing::info!(extension = %number, ended, "extension removed; its agent sessions ended");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("extension {number} does not exist; `pbx-host extension list` shows them"),
        ))
    }
}
