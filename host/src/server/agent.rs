//! The agent page: `/agent/{extension}` shows the pages plugins open for
//! that extension (open-browser with audience extension N), pushed over
//! server-sent events, with click-to-call from that extension and its
//! recent calls. It knows nothing about any CRM: it shows what a pop-up's
//! caption says, or its bare URL; when a plugin offers several records for
//! a call, the agent's pick goes back to that plugin (`choose_record`).
//!
//! Who may use it: the administrator (every extension), or an agent whose
//! session (`sessions`, cookie `pbx_agent`) is scoped to that extension,
//! obtained on the sign-in page with the extension's password or the CRM
//! account associated with it (`agent_sign_in`). Anyone else gets the
//! sign-in page (the page) or 401/403 (the stream, dialing, calls).
//!
//! No pop-up is lost or shown twice: the page is served with the id of the
//! newest request at that moment; its event stream first subscribes to the
//! live channel, then replays kept requests after that id (or after the
//! browser's `Last-Event-ID` on a reconnect), then streams live ones,
//! skipping ids it already sent. A listener that falls behind the channel
//! catches up from the kept requests.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, body::Bytes};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::agent_sign_in::{self, BINDING_COOKIE, Refusal, RuntimeSignIn};
use super::api::originate;
use super::auth::Caller;
use super::error::ApiError;
use super::pages::{FAVICON, escape, message_html, page};
use super::sessions::{AGENT_COOKIE, Holder, SignedInWith, cookie, set_cookie};
use super::state::AppState;
use crate::call_input::check_extension;
use crate::capabilities::browser::{BrowserRequest, Detail, Viewer};
use crate::dispositions::{self, Dispositions};
use crate::recent_calls::{CallRecord, SavedWork};
use crate::runtime::CallError;
use crate::runtime::wit::{AfterCallWork, RecordChoice};

const AGENT_HTML: &str = include_str!("assets/agent.html");

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/agent/sign-in", get(sign_in_page).post(password_sign_in))
        .route("/agent/sign-in/crm/{plugin}", post(crm_sign_in))
        .route("/agent/sign-out", post(sign_out))
        .route("/agent/{extension}", get(agent_page))
        .route("/agent/{extension}/sign-in", get(sign_in_for))
        .route("/agent/{extension}/events", get(events))
        .route("/agent/{extension}/dial", post(dial))
        .route("/agent/{extension}/calls", get(recent_calls))
        .route(
            "/agent/{extension}/calls/{call_id}/choice",
            post(choose_record),
        )
        .route("/agent/{extension}/calls/{call_id}/work", post(save_work))
}

/// The only places sign-in returns to: an agent page of this host, by its
/// checked extension number. Anything else (another site, `//host`, a
/// path with tricks) is dropped, so the sign-in is never an open redirect.
fn safe_next(next: Option<&str>) -> Option<String> {
    let extension = next?.strip_prefix("/agent/")?;
    let extension = check_extension("next", extension).ok()?;
    Some(format!("/agent/{extension}"))
}

/// Where a signed-in agent goes: the page asked for if it is theirs, else
/// their own page.
fn destination(holder: &Holder, next: Option<&str>) -> String {
    let own = format!("/agent/{}", holder.extension().unwrap_or_default());
    match safe_next(next) {
        Some(next) if next == own => next,
        _ => own,
    }
}

/// A small page of the agent area, styled by agent.css, no script.
fn agent_area_page(status: StatusCode, title: &str, body: &str) -> Response {
    page(
        status,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
{FAVICON}<link rel="stylesheet" href="/assets/agent.css"></head>
<body class="narrow"><h1 id="result">{t}</h1>{body}</body></html>"#,
            t = escape(title)
        ),
    )
}

/// A refused sign-in: what happened and what to do.
/// The store could not keep the session: nothing changed, try again.
fn store_page(e: &crate::store::KvError) -> Response {
    tracing::error!("agent session not changed: {e}");
    agent_area_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The PBX cannot reach its store right now, so nothing changed. Try again in a few seconds; if it persists, tell your administrator.",
    )
}

fn refusal_page(refusal: &Refusal) -> Response {
    let (title, message) = refusal.explain();
    let status = match refusal {
        Refusal::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
        Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::Failed(_) => StatusCode::BAD_GATEWAY,
        Refusal::Denied(_)
        | Refusal::Expired
        | Refusal::Inactive(_)
        | Refusal::NoExtension { .. } => StatusCode::FORBIDDEN,
    };
    agent_area_page(
        status,
        title,
        &format!(
            r#"<p id="detail">{}</p><p><a href="/agent/sign-in">Back to sign-in</a></p>"#,
            message_html(&message)
        ),
    )
}

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_page(State(st): St, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    sign_in_html(&st, StatusCode::OK, next.as_deref(), None).await
}

async fn sign_in_for(State(st): St, Path(extension): Path<String>) -> Response {
    let next = safe_next(Some(&format!("/agent/{extension}")));
    sign_in_html(&st, StatusCode::OK, next.as_deref(), None).await
}

/// The sign-in page: a "Sign in with <CRM>" button per active plugin that
/// can sign agents in (and a line for one that cannot), and the
/// extension-and-password form.
async fn sign_in_html(
    st: &AppState,
    status: StatusCode,
    next: Option<&str>,
    error: Option<&str>,
) -> Response {
    let crm = RuntimeSignIn(&st.runtime);
    let next_field = next
        .map(|n| format!(r#"<input type="hidden" name="next" value="{}">"#, escape(n)))
        .unwrap_or_default();
    let mut crms = String::new();
    for plugin in st.runtime.plugin_ids() {
        let name = st
            .runtime
            .plugin(&plugin)
            .describe()
            .await
            .map(|info| info.crm_name)
            .unwrap_or_else(|_| plugin.clone());
        if agent_sign_in::CrmSignIn::supports(&crm, &plugin) {
            crms.push_str(&format!(
                r#"<form method="post" action="/agent/sign-in/crm/{p}">{next_field}<button class="crm" type="submit" data-plugin="{p}">Sign in with {n}</button></form>"#,
                p = escape(&plugin),
                n = escape(&name)
            ));
        } else {
            crms.push_str(&format!(
                r#"<p class="unsupported" data-plugin="{p}">{n}: this plugin cannot sign agents in (it is built against pbx:crm 0.1.0 or 0.2.0, which have no agent sign-in). Use your extension's password, or ask your administrator for a newer plugin.</p>"#,
                p = escape(&plugin),
                n = escape(&name)
            ));
        }
    }
    let extension = next
        .and_then(|n| n.strip_prefix("/agent/"))
        .map(escape)
        .unwrap_or_default();
    let error = error
        .map(|e| {
            format!(
                r#"<p class="error" role="alert" id="error">{}</p>"#,
                message_html(e)
            )
        })
        .unwrap_or_default();
    agent_area_page(
        status,
        "Sign in to your pop-ups",
        &format!(
            r#"{error}<section id="crm-sign-in">{crms}</section>
<section><h2>With your extension's password</h2>
<form method="post" action="/agent/sign-in" id="password-sign-in">{next_field}
<label for="extension">Extension</label><input id="extension" name="extension" value="{extension}" inputmode="numeric" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="sign-in" type="submit">Sign in</button></form>
<p><small>Your administrator sets it with <code>pbx-host extension password set</code>.</small></p></section>"#
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct PasswordForm {
    extension: String,
    password: String,
    next: Option<String>,
}

/// An agent signs in with the extension's password. Failed attempts count
/// per extension and per client address; past the limit, refused until
/// the window passes.
async fn password_sign_in(
    State(st): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let Ok(extension) = check_extension("extension", form.extension.trim()) else {
        return sign_in_html(
            &st,
            StatusCode::BAD_REQUEST,
            next.as_deref(),
            Some("An extension is a number such as 1001."),
        )
        .await;
    };
    let keys = [format!("ext:{extension}"), format!("ip:{}", peer.ip())];
    let fleet_wait = st
        .auth
        .extension_failures
        .blocked(&extension)
        .unwrap_or_else(|e| {
            // This replica's own count still holds meanwhile.
            tracing::warn!(%extension, "failed sign-ins not read from the store: {e}");
            None
        });
    if let Some(wait) = st.auth.limiter.blocked(&keys).max(fleet_wait) {
        return sign_in_html(
            &st,
            StatusCode::TOO_MANY_REQUESTS,
            next.as_deref(),
            Some(&format!(
                "Too many failed sign-ins; try again in {wait} seconds."
            )),
        )
        .await;
    }
    let verified = {
        let Ok(_permit) = st.hashing.acquire().await else {
            return sign_in_html(
                &st,
                StatusCode::SERVICE_UNAVAILABLE,
                next.as_deref(),
                Some("The PBX is shutting down."),
            )
            .await;
        };
        let passwords = st.passwords.clone();
        let (ext, password) = (extension.clone(), form.password);
        tokio::task::spawn_blocking(move || passwords.verify(&ext, &password)).await
    };
    let exists = st
        .services
        .directory
        .get(&extension)
        .ok()
        .flatten()
        .is_some();
    match verified {
        Ok(Ok(true)) if exists => {}
        Ok(Ok(_)) => {
            st.auth.limiter.failed(&keys);
            if exists && let Err(e) = st.auth.extension_failures.failed(&extension) {
                tracing::warn!(%extension, "failed sign-in not counted in the store: {e}");
            }
            tracing::info!(%extension, client = %peer.ip(), "agent sign-in refused: wrong extension or password");
            return sign_in_html(
                &st,
                StatusCode::UNAUTHORIZED,
                next.as_deref(),
                Some("Wrong extension or password."),
            )
            .await;
        }
        Ok(Err(e)) => {
            tracing::error!(%extension, "agent sign-in: {e}");
            return sign_in_html(
                &st,
                StatusCode::INTERNAL_SERVER_ERROR,
                next.as_deref(),
                Some(&e.to_string()),
            )
            .await;
        }
        Err(_) => {
            return sign_in_html(
                &st,
                StatusCode::INTERNAL_SERVER_ERROR,
                next.as_deref(),
                Some("The password check failed; try again."),
            )
            .await;
        }
    }
    st.auth.limiter.succeeded(&keys[0]);
    if let Err(e) = st.auth.extension_failures.forget(&extension) {
        tracing::warn!(%extension, "failed sign-ins not forgotten in the store: {e}");
    }
    tracing::info!(%extension, "agent signed in with the extension password");
    signed_in(
        &st,
        &headers,
        Holder::Agent {
            extension,
            via: SignedInWith::Password,
        },
        next.as_deref(),
        false,
    )
}

/// Open the agent session (ending the one this browser had) and go on.
fn signed_in(
    st: &AppState,
    headers: &HeaderMap,
    holder: Holder,
    next: Option<&str>,
    clear_binding: bool,
) -> Response {
    if let Some(old) = cookie(headers, AGENT_COOKIE)
        && let Err(e) = st.auth.sessions.end(&old)
    {
        return store_page(&e);
    }
    let to = destination(&holder, next);
    let id = match st.auth.sessions.create(holder) {
        Ok(id) => id,
        Err(e) => return store_page(&e),
    };
    let secure = st.config.secure_cookies();
    let mut response = Redirect::to(&to).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = set_cookie(AGENT_COOKIE, &id, secure, "Lax", None).parse() {
        headers.append(header::SET_COOKIE, v);
    }
    if clear_binding && let Ok(v) = set_cookie(BINDING_COOKIE, "", secure, "Lax", Some(0)).parse() {
        headers.append(header::SET_COOKIE, v);
    }
    response
}

/// "Sign in with <CRM>": the plugin makes the CRM's sign-in URL; the host
/// keeps the state, bound to this browser by a cookie, and redirects.
async fn crm_sign_in(
    State(st): St,
    Path(plugin): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !st.runtime.plugin_ids().contains(&plugin) {
        return agent_area_page(
            StatusCode::NOT_FOUND,
            "No such CRM",
            r#"<p id="detail">No CRM plugin by that name is installed.</p><p><a href="/agent/sign-in">Back to sign-in</a></p>"#,
        );
    }
    let next = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "next")
        .and_then(|(_, v)| safe_next(Some(&v)));
    let binding = cookie(&headers, BINDING_COOKIE)
        .filter(|b| b.len() == 64 && b.bytes().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
    let callback_url = st.network.callback_url(&plugin);
    let begun = agent_sign_in::begin(
        &RuntimeSignIn(&st.runtime),
        &st.agent_sign_ins,
        &plugin,
        &callback_url,
        &binding,
        next,
    )
    .await;
    let url = match begun {
        Ok(url) => url,
        Err(refusal) => return refusal_page(&refusal),
    };
    if let Err(why) = super::api::check_authorization_url(&plugin, &url) {
        return refusal_page(&Refusal::Failed(why));
    }
    // Not a redirect: the page's `form-action 'self'` would stop the form's
    // redirect to the CRM. A refresh is a navigation of its own.
    let mut response = agent_area_page(
        StatusCode::OK,
        "Continuing to sign in",
        &format!(
            r#"<meta http-equiv="refresh" content="0;url={u}"><p id="detail">Continuing to your CRM's sign-in page. <a id="continue" href="{u}" rel="noopener noreferrer">Continue</a></p>"#,
            u = escape(&url)
        ),
    );
    if let Ok(v) = set_cookie(
        BINDING_COOKIE,
        &binding,
        st.config.secure_cookies(),
        "Lax",
        Some(agent_sign_in::PENDING_MS / 1000),
    )
    .parse()
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The OAuth callback of an agent's sign-in (`oauth` hands it here when
/// its `state` is a pending agent sign-in).
pub(super) async fn crm_callback(
    st: &AppState,
    plugin: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response {
    let binding = cookie(headers, BINDING_COOKIE);
    let done = agent_sign_in::complete(
        &RuntimeSignIn(&st.runtime),
        &st.agent_sign_ins,
        plugin,
        &st.network.callback_url(plugin),
        query,
        binding.as_deref(),
    )
    .await;
    match done {
        Ok(signed) => {
            let extension = signed.holder.extension().unwrap_or_default().to_string();
            if st
                .services
                .directory
                .get(&extension)
                .ok()
                .flatten()
                .is_none()
            {
                let user = match &signed.holder {
                    Holder::Agent {
                        via: SignedInWith::Crm { user, .. },
                        ..
                    } => user.clone(),
                    _ => String::new(),
                };
                return refusal_page(&Refusal::NoExtension { user });
            }
            tracing::info!(%plugin, %extension, "agent signed in with their CRM account");
            signed_in(st, headers, signed.holder, signed.next.as_deref(), true)
        }
        Err(refusal) => {
            tracing::info!(%plugin, "agent sign-in refused: {}", refusal.explain().0);
            refusal_page(&refusal)
        }
    }
}

async fn sign_out(State(st): St, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, AGENT_COOKIE)
        && let Err(e) = st.auth.sessions.end(&id)
    {
        return store_page(&e);
    }
    let mut response = Redirect::to("/agent/sign-in").into_response();
    if let Ok(v) = set_cookie(AGENT_COOKIE, "", st.config.secure_cookies(), "Lax", Some(0)).parse()
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The caller's right to `extension`'s routes: Ok, or the API refusal
/// (401 without a session, 403 for another extension's).
fn require(st: &AppState, headers: &HeaderMap, extension: &str) -> Result<Caller, ApiError> {
    let caller = st.auth.caller(headers)?;
    if caller.may_use(extension) {
        return Ok(caller);
    }
    match caller {
        Caller::Anonymous => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("sign in first at /agent/sign-in?next=/agent/{extension}"),
        )),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this session is for another extension; sign out and sign in for this one",
        )),
    }
}

async fn agent_page(State(st): St, Path(extension): Path<String>, headers: HeaderMap) -> Response {
    let caller = match st.auth.caller(&headers) {
        Ok(caller) => caller,
        Err(e) => return store_page(&e),
    };
    if !caller.may_use(&extension) {
        if let Caller::Agent(holder) = &caller {
            let own = holder.extension().unwrap_or_default();
            return agent_area_page(
                StatusCode::FORBIDDEN,
                "Another extension's page",
                &format!(
                    r#"<p id="detail">You are signed in for extension {o}. <a href="/agent/{o}">Your page</a>.</p>
<form method="post" action="/agent/sign-out"><button type="submit">Sign out</button></form>"#,
                    o = escape(own)
                ),
            );
        }
        let to = match safe_next(Some(&format!("/agent/{extension}"))) {
            Some(next) => format!("/agent/sign-in?next={next}"),
            None => "/agent/sign-in".to_string(),
        };
        return Redirect::to(&to).into_response();
    }
    let found = check_extension("extension", &extension)
        .ok()
        .and_then(|x| st.services.directory.get(&x).ok().flatten());
    let Some(found) = found else {
        return page(
            StatusCode::NOT_FOUND,
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No such extension</title>{FAVICON}<link rel=\"stylesheet\" href=\"/assets/agent.css\"></head><body class=\"narrow\"><h1>No extension {}</h1><p>The administrator lists the PBX's extensions in the portal, or with <code>pbx-host extension list</code>.</p></body></html>",
                escape(&extension)
            ),
        );
    };
    let (who, sign_out) = match &caller {
        Caller::Agent(Holder::Agent {
            via: SignedInWith::Password,
            ..
        }) => ("Signed in with the extension's password".to_string(), true),
        Caller::Agent(Holder::Agent {
            via: SignedInWith::Crm { user, .. },
            ..
        }) => (format!("Signed in as CRM user {user}"), true),
        _ => ("Administrator".to_string(), false),
    };
    let sign_out = if sign_out {
        r#"<form method="post" action="/agent/sign-out"><button id="sign-out" type="submit">Sign out</button></form>"#
    } else {
        ""
    };
    let notice = association_notice(&st, &found.number).await;
    let after = st.services.browser.latest_id();
    let body = AGENT_HTML
        .replace("{{EXTENSION}}", &escape(&found.number))
        .replace("{{NAME}}", &escape(&format!("({})", found.name)))
        .replace("{{WHO}}", &escape(&who))
        .replace("{{SIGN_OUT}}", sign_out)
        .replace("{{NOTICE}}", &notice)
        .replace("{{AFTER}}", &after.to_string());
    page(StatusCode::OK, body)
}

/// Why pop-ups come (the CRM user this extension is associated with) or
/// why they do not (no CRM, no association).
async fn association_notice(st: &AppState, extension: &str) -> String {
    let plugins = st.runtime.plugin_ids();
    if plugins.is_empty() {
        return r#"<p id="association" class="warning">No CRM is connected to this PBX, so no pop-ups come here.</p>"#.into();
    }
    let mut users = Vec::new();
    for plugin in &plugins {
        if let Ok(Some(user)) = st
            .runtime
            .plugin(plugin)
            .user_for_extension(extension)
            .await
        {
            users.push(user.name);
        }
    }
    if users.is_empty() {
        format!(
            r#"<p id="association" class="warning">No CRM user is associated with extension {e}, so calls to it pop nothing up. Ask your administrator to associate your CRM user with extension {e}.</p>"#,
            e = escape(extension)
        )
    } else {
        format!(
            r#"<p id="association">Pop-ups for CRM user {}.</p>"#,
            escape(&users.join(", "))
        )
    }
}

#[derive(Deserialize)]
struct DialBody {
    number: Option<String>,
}

/// Click-to-call from the page's extension, and from no other: the
/// extension comes from the path the session was checked against.
async fn dial(
    State(st): St,
    Path(extension): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&st, &headers, &extension)?;
    require_json(&headers, "the number", r#"{"number": "+14155550100"}"#)?;
    let body: DialBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!("the body must be JSON such as {{\"number\": \"+14155550100\"}} ({e})"),
        )
        .with_field("body")
    })?;
    let origination = originate(&st, &extension, body.number.as_deref(), None).await?;
    Ok((StatusCode::CREATED, Json(json!(origination))).into_response())
}

/// The extension's recent calls, and the dispositions the agent picks from
/// for their after-call work.
async fn recent_calls(
    State(st): St,
    Path(extension): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&st, &headers, &extension)?;
    let dispositions = Dispositions::new(&st.store)
        .list()
        .map_err(|e| ApiError::store(e.to_string()))?;
    Ok(Json(json!({
        "calls": st.recent_calls.list(&extension),
        "dispositions": dispositions,
    })))
}

/// Refuse a body that is not JSON (415), showing `example`.
fn require_json(headers: &HeaderMap, what: &str, example: &str) -> Result<(), ApiError> {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json_body {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid-input",
            format!("send {what} as JSON, Content-Type: application/json, e.g. {example}"),
        ))
    }
}

/// The longest notes an agent saves for a call, in characters.
pub const MAX_NOTES: usize = 4000;

const WORK_EXAMPLE: &str = r#"{"notes": "Wants a quote", "disposition": "Left message"}"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkBody {
    notes: Option<String>,
    disposition: Option<String>,
}

/// After-call work checked against the rules and the administrator's
/// list: (notes, disposition in the list's spelling), or the refusal.
fn check_work(body: WorkBody, dispositions: &[String]) -> Result<AfterCall, ApiError> {
    let bad = |field: &str, message: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", message).with_field(field)
    };
    let notes = body.notes.filter(|n| !n.trim().is_empty());
    if let Some(notes) = &notes {
        let count = notes.chars().count();
        if count > MAX_NOTES {
            return Err(bad(
                "notes",
                format!("the notes have {count} characters; shorten them to at most {MAX_NOTES}"),
            ));
        }
        if notes
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(bad(
                "notes",
                "the notes contain control characters; keep to text, lines and tabs".into(),
            ));
        }
    }
    let disposition = match body.disposition.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => match dispositions::find(dispositions, name) {
            Some(found) => Some(found.to_string()),
            None if dispositions.is_empty() => {
                return Err(bad(
                    "disposition",
                    "the administrator has defined no dispositions yet (Call dispositions in the portal); save the notes without one".into(),
                ));
            }
            None => {
                return Err(bad(
                    "disposition",
                    format!(
                        "{:?} is not one of the dispositions; pick one of: {}",
                        name.chars().take(100).collect::<String>(),
                        dispositions.join(", ")
                    ),
                ));
            }
        },
    };
    if notes.is_none() && disposition.is_none() {
        return Err(bad(
            "notes",
            format!("write notes or pick a disposition, e.g. {WORK_EXAMPLE}"),
        ));
    }
    Ok(AfterCall { notes, disposition })
}

/// Checked after-call work.
struct AfterCall {
    notes: Option<String>,
    disposition: Option<String>,
}

/// The agent's after-call work for a call of this extension: notes (at
/// most [`MAX_NOTES`] characters) and a disposition from the
/// administrator's list, added by each plugin to the call's one Task (an
/// update, never a second Task). Everything is checked before any plugin
/// is called, so a refused request changes nothing.
async fn save_work(
    State(st): St,
    Path((extension, call_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&st, &headers, &extension)?;
    require_json(&headers, "the work", WORK_EXAMPLE)?;
    let body: WorkBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!("the body must be JSON such as {WORK_EXAMPLE} ({e})"),
        )
        .with_field("body")
    })?;
    let known = st
        .recent_calls
        .list(&extension)
        .into_iter()
        .any(|c| c.call_id == call_id);
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "call {call_id:?} is not among extension {extension}'s recent calls; add the work to one the page lists, or in the CRM"
            ),
        ));
    }
    let list = Dispositions::new(&st.store)
        .list()
        .map_err(|e| ApiError::store(e.to_string()))?;
    let work = check_work(body, &list)?;
    let plugins = st.runtime.plugin_ids();
    if plugins.is_empty() {
        return Err(ApiError::no_plugin());
    }
    let request = AfterCallWork {
        call_id: call_id.clone(),
        extension: extension.clone(),
        notes: work.notes.clone(),
        disposition: work.disposition.clone(),
    };
    let mut answers = Vec::new();
    let mut first_error = None;
    for plugin in plugins {
        match st
            .runtime
            .plugin(&plugin)
            .save_after_call_work(&request)
            .await
        {
            Ok(outcome) => {
                answers.push(json!({"plugin": plugin, "ok": true, "outcome": outcome}));
            }
            // A plugin too old for after-call work has no say in it.
            Err(CallError::Unsupported { .. }) => {}
            Err(e) => {
                tracing::warn!(%plugin, %extension, %call_id, "after-call work refused: {e}");
                let e = ApiError::from(e);
                answers.push(
                    json!({"plugin": plugin, "ok": false, "kind": e.kind(), "error": e.message()}),
                );
                first_error.get_or_insert(e);
            }
        }
    }
    if !answers.iter().any(|a| a["ok"] == true) {
        return Err(first_error.unwrap_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported",
                "no installed CRM plugin takes after-call work (it needs pbx:crm 0.5.0); ask your administrator for a newer plugin",
            )
        }));
    }
    let saved_at_ms = crate::now_ms();
    st.recent_calls.note_work(
        &extension,
        &call_id,
        SavedWork {
            notes: work.notes.clone(),
            disposition: work.disposition.clone(),
            saved_at_ms,
        },
    );
    st.recent_calls.keep(&extension).await;
    tracing::info!(%extension, %call_id, "after-call work saved");
    Ok(Json(json!({
        "call_id": call_id,
        "notes": work.notes,
        "disposition": work.disposition,
        "saved_at_ms": saved_at_ms,
        "plugins": answers,
    }))
    .into_response())
}

/// Longest record id the pick accepts (CRM ids are far shorter).
const MAX_RECORD_ID: usize = 255;

#[derive(Deserialize)]
struct ChoiceBody {
    record_id: Option<String>,
}

/// The agent's pick among the records a plugin offered for a call of this
/// extension: only a record of an offer kept for this extension and call,
/// sent to the plugin that offered it; the answer is the record to open.
async fn choose_record(
    State(st): St,
    Path((extension, call_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&st, &headers, &extension)?;
    require_json(&headers, "the pick", r#"{"record_id": "003..."}"#)?;
    let body: ChoiceBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!("the body must be JSON such as {{\"record_id\": \"003...\"}} ({e})"),
        )
        .with_field("body")
    })?;
    let record_id = body.record_id.unwrap_or_default();
    if record_id.is_empty() || record_id.len() > MAX_RECORD_ID {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!(
                "record_id must be one of the offered records' ids (1 to {MAX_RECORD_ID} bytes)"
            ),
        )
        .with_field("record_id"));
    }
    let viewer = Viewer::Extension(extension.clone());
    let offer = st.services.browser.since(0).into_iter().rev().find(|r| {
        r.viewer == viewer
            && !r.offered.is_empty()
            && r.caption.as_ref().and_then(|c| c.call_id.as_deref()) == Some(call_id.as_str())
    });
    let Some(offer) = offer else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "no records were offered to extension {extension} for call {call_id:?} (or the offer is too old); pick from a pop-up's list"
            ),
        ));
    };
    let Some(url) = offer
        .offered
        .iter()
        .find(|r| r.id == record_id)
        .map(|r| r.url.clone())
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!(
                "record {record_id:?} was not offered for call {call_id:?}; pick one of the list"
            ),
        )
        .with_field("record_id"));
    };
    let Some(call) = st
        .recent_calls
        .list(&extension)
        .into_iter()
        .find(|c| c.call_id == call_id)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "call {call_id:?} is no longer among extension {extension}'s recent calls; open the record from Salesforce instead"
            ),
        ));
    };
    let record = st
        .runtime
        .plugin(&offer.plugin_id)
        .choose_record(&RecordChoice {
            call_id: call_id.clone(),
            extension: extension.clone(),
            number: call.number,
            default_region: st.config.default_region.clone(),
            record_id,
        })
        .await?;
    tracing::info!(plugin = %offer.plugin_id, %extension, %call_id, "the agent picked an offered record");
    let mut details = vec![
        Detail {
            label: "Name".into(),
            value: record.name.clone(),
        },
        Detail {
            label: "Record type".into(),
            value: record.object_type.clone(),
        },
    ];
    if let Some(account) = &record.account {
        details.push(Detail {
            label: "Account".into(),
            value: account.clone(),
        });
    }
    if let Some(caption) = &offer.caption {
        st.recent_calls.note_record(
            &extension,
            &call_id,
            CallRecord {
                title: caption.title.clone(),
                url: url.clone(),
                details,
            },
        );
        st.recent_calls.keep(&extension).await;
    }
    Ok(Json(json!({
        "object_type": record.object_type,
        "id": record.id,
        "name": record.name,
        // The page checked when it was offered, not a new one.
        "url": url,
        "account": record.account,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
}

async fn events(
    State(st): St,
    Path(extension): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let caller = match require(&st, &headers, &extension) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    // An agent's stream ends with the session (signed out, expired, or
    // ended by the administrator), at the next event.
    let session = match caller {
        Caller::Agent(_) => cookie(&headers, AGENT_COOKIE),
        _ => None,
    };
    // A reconnecting EventSource says where it stopped.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = resume.map_or(q.after, |r| r.max(q.after));
    // Subscribe before reading the kept requests: nothing falls between.
    let live = st.services.browser.subscribe();
    let backlog: VecDeque<BrowserRequest> = st.services.browser.since(after).into();
    let feed = Feed {
        viewer: Viewer::Extension(extension),
        live,
        backlog,
        last: after,
        stop: st.stopping.subscribe(),
        state: st.clone(),
        session,
    };
    Sse::new(stream(feed))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct Feed {
    viewer: Viewer,
    live: broadcast::Receiver<BrowserRequest>,
    backlog: VecDeque<BrowserRequest>,
    last: u64,
    stop: watch::Receiver<bool>,
    state: Arc<AppState>,
    session: Option<String>,
}

fn stream(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(request) = feed.backlog.pop_front() {
                if request.id <= feed.last || request.viewer != feed.viewer {
                    continue;
                }
                if let Some(id) = &feed.session
                    && !feed.state.auth.sessions.alive(id)
                {
                    return None;
                }
                feed.last = request.id;
                let event = Event::default()
                    .event("popup")
                    .id(request.id.to_string())
                    .json_data(&request)
                    .unwrap_or_else(|_| Event::default().comment("unserializable"));
                return Some((Ok(event), feed));
            }
            if *feed.stop.borrow() {
                return None;
            }
            let Feed {
                live,
                stop,
                state,
                backlog,
                last,
                ..
            } = &mut feed;
            tokio::select! {
                _ = stop.changed() => return None,
                received = live.recv() => match received {
                    Ok(request) => backlog.push_back(request),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        backlog.extend(state.services.browser.since(*last));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(notes: Option<&str>, disposition: Option<&str>) -> WorkBody {
        WorkBody {
            notes: notes.map(str::to_string),
            disposition: disposition.map(str::to_string),
        }
    }

    fn list() -> Vec<String> {
        vec!["Left message".into(), "Sale".into()]
    }

    fn refusal(result: Result<AfterCall, ApiError>) -> String {
        match result {
            Ok(_) => panic!("accepted"),
            Err(e) => e.message().to_string(),
        }
    }

    #[test]
    fn work_is_checked_against_the_list_and_the_bounds() {
        let ok = check_work(body(Some("Wants a quote"), Some(" sale ")), &list())
            .unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(ok.notes.as_deref(), Some("Wants a quote"));
        assert_eq!(
            ok.disposition.as_deref(),
            Some("Sale"),
            "the list's spelling"
        );
        let only_notes = check_work(body(Some("x"), Some("")), &list())
            .unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(only_notes.disposition, None, "empty: none picked");

        let unknown = refusal(check_work(body(None, Some("Sold")), &list()));
        assert!(
            unknown.contains("pick one of: Left message, Sale"),
            "{unknown}"
        );
        let no_list = refusal(check_work(body(Some("x"), Some("Sale")), &[]));
        assert!(no_list.contains("no dispositions"), "{no_list}");
        let nothing = refusal(check_work(body(Some("  "), None), &list()));
        assert!(
            nothing.contains("write notes or pick a disposition"),
            "{nothing}"
        );

        let longest = "é".repeat(MAX_NOTES);
        assert!(check_work(body(Some(&longest), None), &list()).is_ok());
        let long = refusal(check_work(
            body(Some(&"é".repeat(MAX_NOTES + 1)), None),
            &list(),
        ));
        assert!(long.contains("at most 4000"), "{long}");
        assert!(check_work(body(Some("line\nline\ttab\r\n"), None), &list()).is_ok());
        let control = refusal(check_work(body(Some("bell\u{7}"), None), &list()));
        assert!(control.contains("control characters"), "{control}");
    }
}
