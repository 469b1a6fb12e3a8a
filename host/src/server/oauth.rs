//! The OAuth callback, the one route anyone may call: the CRM redirects
//! the administrator's browser here after consent. The whole query goes to
//! the plugin, which checks `state` (single-use, held only by whoever began
//! the authorization) and does the rest.
//!
//! As anyone may call it, it keeps only what a real authorization causes:
//! a plugin that is not installed is a 404 and nothing is kept; a callback
//! the plugin finds no pending authorization for (it answers `not-found`:
//! no state, an unknown or used one, an `error=` without a valid state) is
//! refused and leaves the outcome the portal shows alone; and the outcomes
//! kept are bounded (`state::AuthorizationOutcomes`).
//!
//! The CRM sends agents signing in (`agent`, `agent_sign_in`) to the same
//! callback: a callback whose `state` is a pending agent sign-in goes
//! there, in its own early branch.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use super::agent_sign_in::state_of;
use super::pages::{FAVICON, escape, message_html, page};
use super::state::{AppState, AuthorizationOutcome};
use crate::now_ms;
use crate::runtime::CallError;
use crate::runtime::wit::ErrorKind;

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
    if !st.runtime.plugin_ids().contains(&plugin) {
        return not_installed(&plugin);
    }
    let query = query.unwrap_or_default();
    // An agent's sign-in: its state is one the host keeps.
    if state_of(&query).is_some_and(|state| st.agent_sign_ins.contains(&state)) {
        return super::agent::crm_callback(&st, &plugin, &query, &headers).await;
    }
    let callback_url = st.network.callback_url(&plugin);
    let result = st
        .runtime
        .plugin(&plugin)
        .complete_authorization(&callback_url, &query)
        .await;
    // Removed between the check above and the call: still nothing kept.
    if matches!(result, Err(CallError::NotInstalled(_))) {
        return not_installed(&plugin);
    }
    // No pending authorization matched: not an outcome of one.
    let unmatched = matches!(
        &result,
        Err(CallError::Refused { error, .. }) if error.kind == ErrorKind::NotFound
    );
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
    if !unmatched {
        // The page says the outcome either way; the portal's poll would
        // miss it.
        if let Err(e) = st.authorizations.record(
            &plugin,
            AuthorizationOutcome {
                at_ms: now_ms(),
                ok: status == StatusCode::OK,
                message,
            },
        ) {
            tracing::error!(%plugin, "the authorization's outcome was not kept for the portal: {e}");
        }
    }
    result_page(status, title, &detail)
}

fn not_installed(plugin: &str) -> Response {
    result_page(
        StatusCode::NOT_FOUND,
        "Authorization failed",
        &format!(
            "No plugin {plugin:?} is installed on this PBX: check the Callback URL entered in the CRM (the portal shows it)."
        ),
    )
}

fn result_page(status: StatusCode, title: &str, detail: &str) -> Response {
    page(
        status,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t}</title>
{FAVICON}<link rel="stylesheet" href="/assets/page.css"></head>
<body class="wide"><h1 id="result">{t}</h1><p id="detail">{d}</p></body></html>"#,
            t = escape(title),
            d = message_html(detail)
        ),
    )
}
