//! The portal: the PBX administrator's web page, and logging in to it with
//! the admin token (a session cookie follows).

use std::sync::{Arc, LazyLock};

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::auth::{SESSION_COOKIE, session_id};
use super::pages::{escape, page};
use super::sessions::set_cookie;
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

/// Failed admin logins are counted per client address; past the limit every
/// attempt from it is refused, right or wrong, until the window passes. Not
/// for the admin login as a whole: the token is 256 random bits, so a
/// global count would only let anyone lock the administrator out.
async fn login(
    State(st): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let keys = [format!("admin-ip:{}", peer.ip())];
    if let Some(wait) = st.auth.limiter.blocked(&keys) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            login_html(Some(&format!(
                "Too many failed logins; try again in {wait} seconds."
            ))),
        );
    }
    if !st.auth.token_matches(form.token.trim()) {
        st.auth.limiter.failed(&keys);
        tracing::warn!(client = %peer.ip(), "portal login refused: wrong admin token");
        return page(
            StatusCode::UNAUTHORIZED,
            login_html(Some(
                "That is not the admin token; copy it from DATA_DIR/admin-token.",
            )),
        );
    }
    let session = st.auth.new_session();
    let secure = st.config.secure_cookies();
    (
        [(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, &session, secure, "Strict", None),
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
            set_cookie(
                SESSION_COOKIE,
                "",
                st.config.secure_cookies(),
                "Strict",
                Some(0),
            ),
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
