//! `GET /api/host` (version, limits, runtime counters) and
//! `GET /api/browser-requests` (pages plugins asked to open).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::runtime::wit;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/host", get(host_info))
        .route("/browser-requests", get(browser_requests))
}

async fn host_info(State(st): St) -> Json<serde_json::Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "public_url": st.network.homepage_url(),
        "supported_apis": wit::supported().map(|v| format!("pbx:crm@{v}")).collect::<Vec<_>>(),
        "limits": {
            "deadline_ms": st.config.limits.deadline.as_millis() as u64,
            "memory_bytes": st.config.limits.memory,
        },
        "runtime": st.runtime.stats(),
    }))
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn browser_requests(State(st): St, Query(q): Query<After>) -> Json<serde_json::Value> {
    Json(json!({ "requests": st.services.browser.since(q.after) }))
}
