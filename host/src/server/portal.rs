//! The portal: the PBX administrator's web page, and logging in to it with
//! the admin token (a session cookie follows).

use std::sync::Arc;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::auth::{SESSION_COOKIE, session_id};
use super::pages::{FAVICON, escape, message_html, page};
use super::sessions::set_cookie;
use super::state::AppState;

/// The portal's page; its style and script are files (`assets.rs`), as the
/// Content-Security-Policy allows nothing inline.
const PORTAL: &str = include_str!("assets/portal.html");

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(portal))
        // Each CRM's own page: the portal with that plugin chosen.
        .route("/crm/{plugin}", get(crm_page))
        .route("/login", get(login_page).post(login))
        // Logging out changes state: a POST, behind the cross-site check.
        .route("/logout", post(logout))
}

async fn portal(State(st): St, headers: HeaderMap) -> Response {
    match st.auth.allows(&headers) {
        Ok(true) => {}
        Ok(false) => return Redirect::to("/login").into_response(),
        Err(e) => return store_unreachable(&e),
    }
    page(StatusCode::OK, PORTAL.to_string())
}

/// `/crm/{plugin}`: the portal for one active CRM plugin, the
/// administrator's only (as `/`); a plugin that is not active is a 404
/// that says so and links to the portal.
async fn crm_page(State(st): St, Path(plugin): Path<String>, headers: HeaderMap) -> Response {
    let allowed = match st.auth.allows(&headers) {
        Ok(allowed) => allowed,
        Err(e) => return store_unreachable(&e),
    };
    if !allowed {
        // Back to this page after the login, when it can be one.
        let page = format!("/crm/{plugin}");
        let login = match return_to(Some(&page)) {
            "/" => "/login".to_string(),
            page => format!("/login?next={page}"),
        };
        return Redirect::to(&login).into_response();
    }
    if !st.runtime.plugin_ids().contains(&plugin) {
        return page(
            StatusCode::NOT_FOUND,
            format!(
                r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>PBX portal: no such CRM</title>
{FAVICON}<link rel="stylesheet" href="/assets/page.css"></head>
<body><h1>No such CRM</h1><p id="detail">No CRM plugin {} is active on this PBX.</p>
<p><a href="/">The portal</a> lists the active ones.</p></body></html>"#,
                escape(&format!("{plugin:?}"))
            ),
        );
    }
    page(StatusCode::OK, PORTAL.to_string())
}

/// Where a login returns to: a CRM's page (`/crm/{id}`, an id as
/// manifests have them), else the portal. Nothing else, so no link can
/// send the administrator elsewhere after logging in.
fn return_to(next: Option<&str>) -> &str {
    let is_crm_page = |next: &str| {
        next.strip_prefix("/crm/").is_some_and(|id| {
            !id.is_empty()
                && id.len() <= 64
                && !id.starts_with('-')
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
    };
    match next {
        Some(next) if is_crm_page(next) => next,
        _ => "/",
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    page(
        StatusCode::OK,
        login_html(None, return_to(q.next.as_deref())),
    )
}

/// The portal while the store is away: what is wrong (the store and the
/// reason, never a password) and that the host keeps trying, with a 503
/// and `Retry-After` as the API answers.
fn store_unreachable(e: &crate::store::KvError) -> Response {
    tracing::error!("portal page not served: {e}");
    let mut response = page(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>PBX portal: store unreachable</title>
{FAVICON}<link rel="stylesheet" href="/assets/page.css"></head>
<body><h1>The PBX cannot reach its store</h1>
<p id="store-error" role="alert">{}</p>
<p>Nothing was changed. The host reconnects by itself; reload this page in a few seconds. If this persists, check that the store (Redis) is running and reachable from this host.</p></body></html>"#,
            message_html(&e.to_string())
        ),
    );
    if let Ok(v) = "5".parse() {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn login_html(error: Option<&str>, next: &str) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", message_html(e)))
        .unwrap_or_default();
    let next = match next {
        "/" => String::new(),
        next => format!(
            "<input type=\"hidden\" name=\"next\" value=\"{}\">",
            escape(next)
        ),
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>PBX portal: log in</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
{FAVICON}<link rel="stylesheet" href="/assets/page.css">
</head><body><h1>PBX portal</h1>{error}
<form method="post" action="/login">{next}<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<p><small>It is in the host's data directory, in the file <code>admin-token</code>.</small></p>
<button id="login" type="submit">Log in</button></form></body></html>"#
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    /// Where to go after it (`return_to` checks it).
    next: Option<String>,
}

/// The login page saying the store cannot be reached (503).
fn login_store_unreachable(next: &str) -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        login_html(
            Some("The PBX cannot reach its store right now; try again in a few seconds."),
            next,
        ),
    )
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
    let next = return_to(form.next.as_deref());
    if let Some(wait) = st.auth.limiter.blocked(&keys) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            login_html(
                Some(&format!(
                    "Too many failed logins; try again in {wait} seconds."
                )),
                next,
            ),
        );
    }
    let matches = match st.auth.token_matches(form.token.trim()) {
        Ok(matches) => matches,
        Err(e) => {
            tracing::error!("portal login not checked: {e}");
            return login_store_unreachable(next);
        }
    };
    if !matches {
        st.auth.limiter.failed(&keys);
        tracing::warn!(client = %peer.ip(), "portal login refused: wrong admin token");
        return page(
            StatusCode::UNAUTHORIZED,
            login_html(
                Some(if st.tenant.is_some() {
                    "That is not the admin token; your PBX's operator gave it to you, and can issue a new one."
                } else {
                    "That is not the admin token; copy it from DATA_DIR/admin-token."
                }),
                next,
            ),
        );
    }
    let session = match st.auth.new_session() {
        Ok(session) => session,
        Err(e) => {
            tracing::error!("portal session not opened: {e}");
            return login_store_unreachable(next);
        }
    };
    let secure = st.config.secure_cookies();
    (
        [(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, &session, secure, "Strict", None),
        )],
        Redirect::to(next),
    )
        .into_response()
}

async fn logout(State(st): St, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers)
        && let Err(e) = st.auth.end_session(&id)
    {
        tracing::error!("portal session not ended: {e}");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            login_html(
                Some(
                    "The PBX cannot reach its store right now, so you are still signed in; try signing out again in a few seconds.",
                ),
                "/",
            ),
        );
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

    /// The Content-Security-Policy blocks inline script and style: the
    /// pages must have none (no <script> or <style> element with content,
    /// no style= attribute, no on...= handler).
    fn assert_nothing_inline(name: &str, html: &str) {
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<style"), "{name} has a <style> element");
        for (at, _) in lower.match_indices("<script") {
            let tag_end = lower[at..].find('>').map_or(lower.len(), |e| at + e);
            assert!(
                lower[at..tag_end].contains(" src="),
                "{name} has an inline script"
            );
            assert!(
                lower[tag_end..].starts_with("></script>"),
                "{name}: a script with a src has no body"
            );
        }
        assert!(!lower.contains(" style="), "{name} has a style attribute");
        for word in lower.split(|c: char| c.is_whitespace() || c == '<') {
            let Some((attr, _)) = word.split_once('=') else {
                continue;
            };
            let handler = attr.len() > 2
                && attr.starts_with("on")
                && attr.chars().all(|c| c.is_ascii_alphabetic());
            assert!(!handler, "{name} has an {attr}= handler");
        }
    }

    #[test]
    fn the_pages_have_no_inline_script_or_style() {
        assert_nothing_inline("portal.html", PORTAL);
        assert_nothing_inline("login", &login_html(Some("<b>wrong</b>"), "/crm/hubspot"));
        assert_nothing_inline("agent.html", include_str!("assets/agent.html"));
        assert!(PORTAL.contains(r#"<script src="/assets/portal.js" defer></script>"#));
        assert!(PORTAL.contains(r#"href="/assets/portal.css""#));
    }

    /// Backticks are how the terminal quotes a command; a page shows none,
    /// and every page links the icon.
    #[test]
    fn the_pages_show_no_backtick_and_link_the_icon() {
        let agent = include_str!("assets/agent.html");
        let login = login_html(Some("run `pbx-host status`"), "/");
        for (name, html) in [
            ("portal.html", PORTAL),
            ("agent.html", agent),
            ("login", &login),
        ] {
            assert!(!html.contains('`'), "{name} shows a backtick");
            assert!(html.contains("/assets/favicon.svg"), "{name} has no icon");
            assert!(html.contains("<title>"), "{name} has no title");
        }
    }

    #[test]
    fn a_login_returns_only_to_a_crm_page_or_the_portal() {
        for page in ["/crm/salesforce", "/crm/hubspot", "/crm/acme-2"] {
            assert_eq!(return_to(Some(page)), page);
        }
        for other in [
            None,
            Some(""),
            Some("/"),
            Some("/crm/"),
            Some("/crm/-x"),
            Some("/crm/Hub"),
            Some("/crm/hubspot/oauth/callback"),
            Some("/crm/a?b"),
            Some("//evil.example/crm/x"),
            Some("https://evil.example/crm/x"),
            Some("/api/plugins"),
        ] {
            assert_eq!(return_to(other), "/", "{other:?}");
        }
        assert_eq!(return_to(Some(&format!("/crm/{}", "a".repeat(65)))), "/");
    }
}
