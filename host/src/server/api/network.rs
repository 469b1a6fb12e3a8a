//! `GET /api/network` and `PUT /api/network`: the PBX's Homepage URL, from
//! which the Callback URLs are composed, with what a CRM will object to.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::network::{NetworkError, NetworkView};
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/network", get(show).put(set))
}

async fn show(State(st): St) -> Json<NetworkView> {
    Json(st.network.view())
}

/// `homepage_url`: the new Homepage URL, or null to go back to
/// `--public-url`. Only this key: a misspelt one is refused, not ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    homepage_url: Option<String>,
}

async fn set(State(st): St, Json(body): Json<SetBody>) -> Result<Json<NetworkView>, ApiError> {
    // A tenant is routed by its public URL: its Homepage URL is that one,
    // which only the operator who hosts it sets.
    if let Some(tenant) = &st.tenant {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "this PBX ({tenant}) is hosted: its Homepage URL is the public URL its operator gave it; ask the operator to change it"
            ),
        )
        .with_field("homepage_url"));
    }
    let view = st
        .network
        .set(body.homepage_url.as_deref())
        .await
        .map_err(|e| match e {
            NetworkError::Invalid { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", e.to_string())
                    .with_field("homepage_url")
            }
            NetworkError::Store(_) => ApiError::store(e.to_string()),
        })?;
    tracing::info!(homepage_url = %view.homepage_url, source = ?view.source, "Homepage URL set");
    Ok(Json(view))
}
