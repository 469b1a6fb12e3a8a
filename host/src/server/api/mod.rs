//! The admin API (documented in docs/API.md): who may call it, and its
//! routes, one file per area. Every route needs the administrator: the
//! admin token as a bearer token (the CLI, scripts) or a portal session.

mod associations;
mod calls;
mod crm;
mod extensions;
mod host;
mod network;
mod plugins;
mod sessions;

pub use crm::check_authorization_url;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use super::state::AppState;

pub(super) use calls::originate;

/// Every admin route, behind the administrator check.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .merge(host::routes())
        .merge(network::routes())
        .merge(plugins::routes())
        .merge(extensions::routes())
        .merge(crm::routes())
        .merge(associations::routes())
        .merge(calls::routes())
        .merge(sessions::routes())
        .layer(middleware::from_fn_with_state(state, require_admin))
}

/// Middleware: 401 unless the request carries the admin token or a portal
/// session.
async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // The operator acting inside this PBX (checked by the operator API).
    if request
        .extensions()
        .get::<super::operator::OperatorActing>()
        .is_some()
    {
        return next.run(request).await;
    }
    let allowed = match state.auth.allows(request.headers()) {
        Ok(allowed) => allowed,
        Err(e) => return crate::server::ApiError::from(e).into_response(),
    };
    if allowed {
        next.run(request).await
    } else {
        let whence = if state.tenant.is_some() {
            "your PBX's operator gave it to you"
        } else {
            "it is in DATA_DIR/admin-token"
        };
        (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "error": format!("authentication required: send the admin token as `Authorization: Bearer TOKEN` ({whence}) or log in to the portal"),
                "kind": "unauthorized",
            })),
        )
            .into_response()
    }
}
