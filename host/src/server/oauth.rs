//! The OAuth callback, the one route anyone may call: the CRM redirects
//! the administrator's browser here after consent. The whole query goes to
//! the plugin, which checks `state` (single-use, held only by whoever began
//! the authorization) and does the rest. The CRM sends agents signing in
//! (`agent`, `agent_sign_in`) to the same callback: a callback whose
//! `state` is a pending agent sign-in goes there, in its own early branch.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use super::agent_sign_in::state_of;
use super::pages::{escape, page};
use super::state::{AppState, AuthorizationOutcome};
use crate::now_ms;
use crate::runtime::CallError;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/crm/{plugin}/oauth/callback", get(oauth_callback))
}

async fn oauth_callback(
    State(st): St,
    Path(plugin): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    // An agent's sign-in: its state is one the host keeps.
    if state_of(&query).is_some_and(|state| st.agent_sign_ins.contains(&state)) {
        return super::agent::crm_callback(&st, &plugin, &query, &headers).await;
    }
    let callback_url = st.config.callback_url(&plugin);
    let result = st
        .runtime
        .plugin(&plugin)
        .complete_authorization(&callback_url, &query)
        .await;
    let (status, title, message) = match &result {
        Ok(status) => (
            StatusCode::OK,
            "Authorization succeeded!",
            format!(
                "{}{}",
                status.message,
                status
                    .account
                    .as_ref()
                    .map(|a| format!(" as {a}"))
                    .unwrap_or_default()
            ),
        ),
        Err(e @ CallError::Refused { .. }) => (
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            e.to_string(),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Authorization failed",
            e.to_string(),
        ),
    };
    let detail = match result {
        Ok(_) => format!("{message}. You can close this page and return to the PBX portal."),
        Err(_) => message.clone(),
    };
    st.authorizations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            plugin,
            AuthorizationOutcome {
                at_ms: now_ms(),
                ok: status == StatusCode::OK,
                message,
            },
        );
    page(
        status,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}</style></head>
<body><h1 id="result">{t}</h1><p id="detail">{d}</p></body></html>"#,
            t = escape(title),
            d = escape(&detail)
        ),
    )
}
