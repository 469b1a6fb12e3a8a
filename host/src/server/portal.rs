//! The portal (the PBX administrator's web pages) and the public OAuth
//! callback, the only route that needs no login.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::AppState;
use super::auth::{SESSION_COOKIE, session_id};
use crate::capabilities::pbx::crm::types::Error as PluginError;

const PORTAL_HTML: &str = include_str!("portal.html");

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(portal))
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout))
        .route("/crm/{plugin}/oauth/callback", get(oauth_callback))
}

/// Security headers for every page: no framing, no sniffing, no referrer
/// (a callback URL carries a code).
fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn portal(State(st): St, headers: HeaderMap) -> Response {
    if !st.auth.allows(&headers) {
        return Redirect::to("/login").into_response();
    }
    page(StatusCode::OK, PORTAL_HTML.to_string())
}

async fn login_page() -> Response {
    page(StatusCode::OK, login_html(None))
}

fn login_html(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>PBX portal: log in</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input{{width:100%;padding:.5rem;font-family:monospace}}button{{margin-top:1rem;padding:.5rem 1.5rem}}.error{{color:#b00020}}</style>
</head><body><h1>PBX portal</h1>{error}
<form method="post" action="/login"><label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<p><small>It is in the host's data directory, in the file <code>admin-token</code>.</small></p>
<button id="login" type="submit">Log in</button></form></body></html>"#
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(st): St, Form(form): Form<LoginForm>) -> Response {
    if !st.auth.token_matches(form.token.trim()) {
        return page(
            StatusCode::UNAUTHORIZED,
            login_html(Some(
                "That is not the admin token; copy it from DATA_DIR/admin-token.",
            )),
        );
    }
    let session = st.auth.new_session();
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

async fn logout(State(st): St, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        st.auth.end_session(&id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

/// The CRM redirects the administrator's browser here after consent. The
/// whole query goes to the plugin, which checks `state` and does the rest.
async fn oauth_callback(
    State(st): St,
    Path(plugin): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let callback_url = st.config.callback_url(&plugin);
    let query = query.unwrap_or_default();
    let result = st
        .runtime
        .call(&plugin, move |p, s| {
            Box::pin(async move { p.complete_authorization(s, &callback_url, &query).await })
        })
        .await;
    let outcome = match &result {
        Ok(Ok(status)) => (
            true,
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
        Ok(Err(PluginError { message, .. })) => (false, message.clone()),
        Err(e) => (false, e.to_string()),
    };
    st.authorizations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            plugin.clone(),
            super::AuthorizationOutcome {
                at_ms: now_ms(),
                ok: outcome.0,
                message: outcome.1,
            },
        );
    let (status, title, detail) = match result {
        Ok(Ok(status)) => (
            StatusCode::OK,
            "Authorization succeeded!".to_string(),
            format!(
                "{}{}. You can close this page and return to the PBX portal.",
                status.message,
                status
                    .account
                    .map(|a| format!(" as {a}"))
                    .unwrap_or_default()
            ),
        ),
        Ok(Err(PluginError { message, .. })) => (
            StatusCode::BAD_REQUEST,
            "Authorization failed".to_string(),
            message,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Authorization failed".to_string(),
            e.to_string(),
        ),
    };
    page(
        status,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}</style></head>
<body><h1 id="result">{t}</h1><p id="detail">{d}</p></body></html>"#,
            t = escape(&title),
            d = escape(&detail)
        ),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// HTML-escape text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
