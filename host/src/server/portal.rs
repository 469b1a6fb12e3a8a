//! The portal: the PBX administrator's web page, and logging in to it with
//! the admin token (a session cookie follows).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::auth::{SESSION_COOKIE, session_id};
use super::pages::{escape, page};
use super::state::AppState;

/// The portal: one page, its style and script inlined once (one request,
/// no asset routes to guard).
static PORTAL: LazyLock<String> = LazyLock::new(|| {
    include_str!("assets/portal.html")
        .replace("/*{{PORTAL_CSS}}*/", include_str!("assets/portal.css"))
        .replace("//{{PORTAL_JS}}", include_str!("assets/portal.js"))
});

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(portal))
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout))
}

async fn portal(State(st): St, headers: HeaderMap) -> Response {
    if !st.auth.allows(&headers) {
        return Redirect::to("/login").into_response();
    }
    page(StatusCode::OK, PORTAL.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portal_page_inlines_its_style_and_script() {
        assert!(!PORTAL.contains("{{PORTAL_"), "every placeholder is filled");
        assert!(PORTAL.contains("async function loadCrm()"));
        assert!(PORTAL.contains(".state-connected"));
    }
}
