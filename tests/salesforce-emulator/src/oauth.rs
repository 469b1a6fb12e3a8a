//! OAuth 2.0 web-server flow as Salesforce runs it: authorize (login and
//! consent pages), token (authorization_code and refresh_token grants),
//! revoke, identity URL, userinfo and OpenID discovery.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{ConnectedApp, RefreshTokenPolicy};
use crate::http::{Req, Resp, html_escape};
use crate::state::{AuthCode, AuthState, PendingAuth, RefreshGrant, Session, Shared, lock, read};
use crate::store::Org;
use crate::time;

/// Random URL-safe text of `n` bytes of entropy.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `base64(HMAC-SHA256(secret, id + issued_at))`.
pub fn signature(secret: &str, id: &str, issued_at: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `base64url(SHA-256(verifier))` without padding.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body>\
         <h1>{t}</h1>{body}</body></html>",
        t = html_escape(title)
    )
}

/// The error page Salesforce shows (instead of redirecting) when the
/// client id or the redirect URI cannot be trusted.
fn error_page(error: &str, description: &str) -> Resp {
    Resp::html(
        400,
        page(
            "OAuth Error",
            &format!(
                "<p>We can't authorize you because of an OAuth error. For more information, contact your Salesforce administrator.</p>\
                 <p>OAUTH_EC_APP_NOT_FOUND</p><p id=\"error\">error={}</p><p id=\"error_description\">error_description={}</p>",
                html_escape(error),
                html_escape(description)
            ),
        ),
    )
}

fn add_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", ser.finish())
}

fn redirect_error(redirect_uri: &str, error: &str, description: &str, state: Option<&str>) -> Resp {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    Resp::redirect(&add_query(redirect_uri, &pairs))
}

/// The login form; `start_url` is where to go after logging in.
pub fn login_page(start_url: &str, error: Option<&str>) -> Resp {
    let err = error
        .map(|e| {
            format!(
                "<div id=\"error\" class=\"loginError\">{}</div>",
                html_escape(e)
            )
        })
        .unwrap_or_default();
    Resp::html(
        200,
        page(
            "Login | Salesforce",
            &format!(
                "{err}<form id=\"login_form\" name=\"login\" method=\"POST\" action=\"/login\">\
                 <label for=\"username\">Username</label><input type=\"email\" id=\"username\" name=\"username\">\
                 <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\">\
                 <input type=\"hidden\" name=\"startURL\" value=\"{}\">\
                 <input type=\"submit\" id=\"Login\" name=\"Login\" value=\"Log In\"></form>",
                html_escape(start_url)
            ),
        ),
    )
}

fn browser_user(shared: &Shared, req: &Req) -> Option<(String, String)> {
    let sid = req.cookie("sid")?;
    let auth = lock(&shared.auth);
    auth.browser_sessions
        .get(&sid)
        .map(|u| (sid.clone(), u.clone()))
}

/// The user the browser is logged in as (its `sid` cookie), if any.
pub fn browser_user_id(shared: &Shared, req: &Req) -> Option<String> {
    browser_user(shared, req).map(|(_, user)| user)
}

/// `GET /services/oauth2/authorize`.
pub fn authorize(shared: &Shared, req: &Req) -> Resp {
    let q = req.query_pairs();
    let client_id = param(&q, "client_id").unwrap_or_default();
    let app = lock(&shared.auth).apps.get(&client_id).cloned();
    let Some(app) = app else {
        return error_page("invalid_client_id", "client identifier invalid");
    };
    let redirect_uri = param(&q, "redirect_uri").unwrap_or_default();
    if !app.callback_urls.contains(&redirect_uri) {
        return error_page(
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        );
    }
    let state = param(&q, "state");
    let st = state.as_deref();
    if param(&q, "response_type").as_deref() != Some("code") {
        return redirect_error(
            &redirect_uri,
            "unsupported_response_type",
            "response type not supported",
            st,
        );
    }
    let challenge = param(&q, "code_challenge");
    if let Some(c) = &challenge {
        let method_ok = param(&q, "code_challenge_method").is_none_or(|m| m == "S256");
        if !method_ok || !valid_challenge(c) {
            return redirect_error(
                &redirect_uri,
                "invalid_request",
                "invalid code challenge",
                st,
            );
        }
    } else if app.pkce_required {
        return redirect_error(
            &redirect_uri,
            "invalid_request",
            "missing required code challenge",
            st,
        );
    }
    let scopes: Vec<String> = match param(&q, "scope") {
        Some(s) => {
            let wanted: Vec<String> = s
                .split([' ', '+'])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(bad) = wanted.iter().find(|w| !app.scopes.contains(w)) {
                let _ = bad;
                return redirect_error(
                    &redirect_uri,
                    "invalid_scope",
                    "the requested scope is not allowed",
                    st,
                );
            }
            wanted
        }
        None => app.scopes.clone(),
    };
    let prompt_login = param(&q, "prompt").is_some_and(|p| p.split(' ').any(|p| p == "login"));
    // After the login the flow continues here without `prompt`: with it,
    // the fresh session would be ended again and the login page would loop.
    let start_url = {
        let rest: Vec<(String, String)> =
            q.iter().filter(|(k, _)| k != "prompt").cloned().collect();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&rest)
            .finish();
        format!("{}?{query}", req.path)
    };
    let Some((sid, user_id)) = browser_user(shared, req).filter(|_| !prompt_login) else {
        if prompt_login && let Some(sid) = req.cookie("sid") {
            lock(&shared.auth).browser_sessions.remove(&sid);
        }
        return login_page(&start_url, None);
    };
    let pending_id = random_token(24);
    lock(&shared.auth).pending.insert(
        pending_id.clone(),
        PendingAuth {
            app: app.consumer_key.clone(),
            redirect_uri,
            state,
            scopes: scopes.clone(),
            code_challenge: challenge,
            user_id: user_id.clone(),
            browser_session: sid,
            created: Instant::now(),
        },
    );
    let username = {
        let org = read(&shared.org);
        let i = org.users.schema.field_index("Username").unwrap_or(0);
        org.users
            .get(&user_id)
            .and_then(|r| r.get(i).as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let scope_list: String = scopes
        .iter()
        .map(|s| format!("<li>{}</li>", html_escape(s)))
        .collect();
    Resp::html(
        200,
        page(
            "Allow Access?",
            &format!(
                "<p id=\"app\">{app} is asking to:</p><ul id=\"scopes\">{scope_list}</ul>\
                 <p>You are logged in as <span id=\"user\">{user}</span>.</p>\
                 <form id=\"consent_form\" method=\"POST\" action=\"/services/oauth2/authorize/consent\">\
                 <input type=\"hidden\" name=\"pending\" value=\"{pending}\">\
                 <button type=\"submit\" id=\"deny\" name=\"action\" value=\"deny\">Deny</button>\
                 <button type=\"submit\" id=\"allow\" name=\"action\" value=\"allow\">Allow</button></form>",
                app = html_escape(&app.name),
                user = html_escape(&username),
                pending = pending_id,
            ),
        ),
    )
}

/// `POST /login` (the login form).
pub fn login(shared: &Shared, req: &Req) -> Resp {
    let form = req.form();
    let start = param(&form, "startURL")
        .filter(|s| s.starts_with('/') && !s.starts_with("//"))
        .unwrap_or("/".into());
    let username = param(&form, "username").unwrap_or_default();
    let password = param(&form, "password").unwrap_or_default();
    let user = {
        let org = read(&shared.org);
        let active = org.users.schema.field_index("IsActive").unwrap_or(0);
        org.user_by_username(&username)
            .filter(|r| r.get(active).as_bool() == Some(true))
            .map(|r| r.id().to_string())
    };
    let mut auth = lock(&shared.auth);
    let ok = user
        .as_ref()
        .is_some_and(|u| auth.passwords.get(u).is_some_and(|p| *p == password));
    match user.filter(|_| ok) {
        Some(user_id) => {
            let sid = random_token(24);
            auth.browser_sessions.insert(sid.clone(), user_id);
            let secure = if shared.tls { "; Secure" } else { "" };
            Resp::redirect(&start).with_header(
                "set-cookie",
                &format!("sid={sid}; Path=/; HttpOnly; SameSite=Lax{secure}"),
            )
        }
        None => login_page(
            &start,
            Some(
                "Please check your username and password. If you still can't log in, contact your Salesforce administrator.",
            ),
        ),
    }
}

/// `GET /`: the login page (or who is logged in).
pub fn home(shared: &Shared, req: &Req) -> Resp {
    match browser_user(shared, req) {
        Some((_, user)) => Resp::html(
            200,
            page(
                "Home",
                &format!("<p id=\"user\">Logged in: {}</p>", html_escape(&user)),
            ),
        ),
        None => login_page("/", None),
    }
}

/// `POST /services/oauth2/authorize/consent` (Allow or Deny).
pub fn consent(shared: &Shared, req: &Req) -> Resp {
    let form = req.form();
    let pending_id = param(&form, "pending").unwrap_or_default();
    let action = param(&form, "action").unwrap_or_default();
    let sid = req.cookie("sid");
    let mut auth = lock(&shared.auth);
    let Some(p) = auth.pending.remove(&pending_id) else {
        return error_page(
            "invalid_request",
            "the authorization request is unknown or was already answered",
        );
    };
    if sid.as_deref() != Some(p.browser_session.as_str())
        || p.created.elapsed() > Duration::from_secs(30 * 60)
    {
        return error_page(
            "invalid_request",
            "the authorization request does not belong to this browser session",
        );
    }
    let st = p.state.as_deref();
    if action != "allow" {
        auth.stats.bump(&p.app, |s| s.consents_denied += 1);
        return redirect_error(
            &p.redirect_uri,
            "access_denied",
            "end-user denied authorization",
            st,
        );
    }
    auth.stats.bump(&p.app, |s| s.consents_allowed += 1);
    let lifetime = auth
        .apps
        .get(&p.app)
        .and_then(|a| a.code_lifetime_secs)
        .map(Duration::from_secs)
        .unwrap_or_else(|| read(&shared.settings).code_lifetime);
    let code = format!("aPrx{}", random_token(48));
    auth.codes.insert(
        code.clone(),
        AuthCode {
            app: p.app.clone(),
            user_id: p.user_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scopes: p.scopes.clone(),
            code_challenge: p.code_challenge.clone(),
            expires: Instant::now() + lifetime,
        },
    );
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = st {
        pairs.push(("state", s));
    }
    Resp::redirect(&add_query(&p.redirect_uri, &pairs))
}

/// The identity URL of a user.
pub fn identity_url(shared: &Shared, org_id: &str, user_id: &str) -> String {
    format!("{}/id/{org_id}/{user_id}", shared.base_url)
}

/// Tokens as the token endpoint answers them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refresh_token: Option<String>,
    pub signature: String,
    pub scope: String,
    pub instance_url: String,
    pub id: String,
    pub token_type: String,
    pub issued_at: String,
    /// With the `openid` scope: an OpenID Connect id_token (RS256).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_token: Option<String>,
}

/// What to mint tokens for.
pub struct Grant<'a> {
    pub org_id: &'a str,
    pub app: &'a ConnectedApp,
    pub user_id: &'a str,
    pub scopes: &'a [String],
    /// Issue a new refresh token.
    pub new_refresh: bool,
    /// The refresh token the new session belongs to (when refreshing
    /// without rotation).
    pub existing_refresh: Option<String>,
}

/// Mints an access token, and a refresh token when asked.
pub fn mint(shared: &Shared, auth: &mut AuthState, g: Grant<'_>) -> TokenResponse {
    let Grant {
        org_id,
        app,
        user_id,
        scopes,
        new_refresh,
        existing_refresh,
    } = g;
    let access = format!("{}!{}", &org_id[..15.min(org_id.len())], random_token(60));
    let refresh = if new_refresh {
        let t = format!("5Aep861{}", random_token(60));
        auth.refresh.insert(
            t.clone(),
            RefreshGrant {
                app: app.consumer_key.clone(),
                user_id: user_id.to_string(),
                scopes: scopes.to_vec(),
                issued: Instant::now(),
                last_used: Instant::now(),
            },
        );
        Some(t)
    } else {
        None
    };
    auth.sessions.insert(
        access.clone(),
        Session {
            user_id: user_id.to_string(),
            app: Some(app.consumer_key.clone()),
            scopes: scopes.to_vec(),
            last_used: Instant::now(),
            refresh_token: refresh.clone().or(existing_refresh),
        },
    );
    let id = identity_url(shared, org_id, user_id);
    let issued_at = time::now_ms().to_string();
    let signed_with = if crate::state::take_one(&shared.faults.tamper_signatures) {
        "tampered"
    } else {
        app.consumer_secret.as_str()
    };
    let id_token = if scopes.iter().any(|s| s == "openid") {
        let profile = {
            let org = read(&shared.org);
            let field = |name: &str| {
                org.users
                    .schema
                    .field_index(name)
                    .and_then(|i| org.users.get(user_id).map(|r| r.get(i).clone()))
                    .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null)
            };
            json!({
                "email": field("Email"),
                "name": field("Name"),
                "preferred_username": field("Username"),
            })
        };
        crate::id_token::issue(&crate::id_token::Claims {
            issuer: &shared.base_url,
            subject: &id,
            audience: &app.consumer_key,
            access_token: &access,
            issued_at: u64::try_from(time::now_ms() / 1000).unwrap_or(0),
            profile,
        })
    } else {
        None
    };
    TokenResponse {
        id_token,
        signature: signature(signed_with, &id, &issued_at),
        access_token: access,
        refresh_token: refresh,
        scope: scopes.join(" "),
        instance_url: shared.base_url.clone(),
        id,
        token_type: "Bearer".into(),
        issued_at,
    }
}

fn wants_refresh(scopes: &[String]) -> bool {
    scopes
        .iter()
        .any(|s| s == "refresh_token" || s == "offline_access")
}

/// Client credentials from the form, or from HTTP Basic auth.
fn client_credentials(req: &Req, form: &[(String, String)]) -> (Option<String>, Option<String>) {
    let mut id = param(form, "client_id");
    let mut secret = param(form, "client_secret");
    if let Some(h) = req.header("authorization")
        && let Some(b64) = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
        && let Ok(raw) = STANDARD.decode(b64.trim())
        && let Ok(text) = String::from_utf8(raw)
        && let Some((u, p)) = text.split_once(':')
    {
        let dec = |s: &str| percent_decode(s);
        id = id.or(Some(dec(u)));
        secret = secret.or(Some(dec(p)));
    }
    (id, secret)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `POST /services/oauth2/token`.
pub fn token(shared: &Shared, req: &Req) -> Resp {
    let form = req.form();
    let grant = param(&form, "grant_type").unwrap_or_default();
    let (client_id, secret) = client_credentials(req, &form);
    let client_id = client_id.unwrap_or_default();
    let (org_id, active_idx) = {
        let org = read(&shared.org);
        (
            org.org_id.clone(),
            org.users.schema.field_index("IsActive").unwrap_or(0),
        )
    };
    let user_active = |user_id: &str| {
        let org = read(&shared.org);
        org.users
            .get(user_id)
            .is_some_and(|r| r.get(active_idx).as_bool() == Some(true))
    };
    let mut auth = lock(&shared.auth);
    let fail = |auth: &mut AuthState, app: &str, status: u16, e: &str, d: &str| {
        auth.stats.bump(app, |s| s.failed_token_requests += 1);
        Resp::oauth_error(status, e, d)
    };
    if grant != "authorization_code" && grant != "refresh_token" {
        return fail(
            &mut auth,
            &client_id,
            400,
            "unsupported_grant_type",
            "grant type not supported",
        );
    }
    let Some(app) = auth.apps.get(&client_id).cloned() else {
        return fail(
            &mut auth,
            "(unknown)",
            400,
            "invalid_client_id",
            "client identifier invalid",
        );
    };
    let secret_ok = |required: bool| match &secret {
        Some(s) => constant_eq(s, &app.consumer_secret),
        None => !required,
    };
    if grant == "authorization_code" {
        let code_text = param(&form, "code").unwrap_or_default();
        let Some(code) = auth
            .codes
            .get(&code_text)
            .cloned()
            .filter(|c| c.app == app.consumer_key)
        else {
            return fail(
                &mut auth,
                &client_id,
                400,
                "invalid_grant",
                "invalid authorization code",
            );
        };
        if Instant::now() > code.expires {
            auth.codes.remove(&code_text);
            return fail(
                &mut auth,
                &client_id,
                400,
                "invalid_grant",
                "expired authorization code",
            );
        }
        if !secret_ok(app.require_secret && code.code_challenge.is_none()) {
            return fail(
                &mut auth,
                &client_id,
                400,
                "invalid_client",
                "invalid client credentials",
            );
        }
        if param(&form, "redirect_uri").as_deref() != Some(code.redirect_uri.as_str()) {
            return fail(
                &mut auth,
                &client_id,
                400,
                "redirect_uri_mismatch",
                "redirect_uri must match configuration",
            );
        }
        if let Some(challenge) = &code.code_challenge {
            let ok = param(&form, "code_verifier")
                .is_some_and(|v| constant_eq(&pkce_challenge(&v), challenge));
            if !ok {
                return fail(
                    &mut auth,
                    &client_id,
                    400,
                    "invalid_grant",
                    "invalid code verifier",
                );
            }
        }
        if !user_active(&code.user_id) {
            return fail(&mut auth, &client_id, 400, "invalid_grant", "inactive user");
        }
        auth.codes.remove(&code_text);
        let tr = mint(
            shared,
            &mut auth,
            Grant {
                org_id: &org_id,
                app: &app,
                user_id: &code.user_id,
                scopes: &code.scopes,
                new_refresh: wants_refresh(&code.scopes),
                existing_refresh: None,
            },
        );
        auth.stats
            .bump(&client_id, |s| s.authorization_code_grants += 1);
        return Resp::json(200, &tr).with_header(
            "cache-control",
            "no-cache,must-revalidate,max-age=0,no-store,private",
        );
    }
    // refresh_token grant
    if !secret_ok(app.require_secret_for_refresh) {
        return fail(
            &mut auth,
            &client_id,
            400,
            "invalid_client",
            "invalid client credentials",
        );
    }
    let rt = param(&form, "refresh_token").unwrap_or_default();
    let Some(grant) = auth
        .refresh
        .get(&rt)
        .cloned()
        .filter(|g| g.app == app.consumer_key)
    else {
        return fail(
            &mut auth,
            &client_id,
            400,
            "invalid_grant",
            "expired access/refresh token",
        );
    };
    let expired = match app.refresh_token_policy {
        RefreshTokenPolicy::UntilRevoked => false,
        RefreshTokenPolicy::ImmediatelyExpire => true,
        RefreshTokenPolicy::ExpireAfter { secs } => {
            grant.issued.elapsed() > Duration::from_secs(secs)
        }
        RefreshTokenPolicy::ExpireIfUnused { secs } => {
            grant.last_used.elapsed() > Duration::from_secs(secs)
        }
    };
    if expired {
        auth.refresh.remove(&rt);
        return fail(
            &mut auth,
            &client_id,
            400,
            "invalid_grant",
            "expired access/refresh token",
        );
    }
    if !user_active(&grant.user_id) {
        return fail(&mut auth, &client_id, 400, "invalid_grant", "inactive user");
    }
    let rotate = app.rotate_refresh_tokens;
    if rotate {
        auth.refresh.remove(&rt);
    } else if let Some(g) = auth.refresh.get_mut(&rt) {
        g.last_used = Instant::now();
    }
    let tr = mint(
        shared,
        &mut auth,
        Grant {
            org_id: &org_id,
            app: &app,
            user_id: &grant.user_id,
            scopes: &grant.scopes,
            new_refresh: rotate,
            existing_refresh: (!rotate).then_some(rt),
        },
    );
    auth.stats.bump(&client_id, |s| s.refresh_grants += 1);
    Resp::json(200, &tr).with_header(
        "cache-control",
        "no-cache,must-revalidate,max-age=0,no-store,private",
    )
}

/// `POST /services/oauth2/revoke` (also `GET ?token=`).
pub fn revoke(shared: &Shared, req: &Req) -> Resp {
    let token = param(&req.form(), "token")
        .or_else(|| req.query_param("token"))
        .unwrap_or_default();
    let mut auth = lock(&shared.auth);
    if let Some(grant) = auth.refresh.remove(&token) {
        auth.sessions
            .retain(|_, s| s.refresh_token.as_deref() != Some(token.as_str()));
        auth.stats.bump(&grant.app, |s| s.revocations += 1);
        return Resp::empty(200);
    }
    if let Some(s) = auth.sessions.remove(&token) {
        let app = s.app.unwrap_or_else(|| "(none)".into());
        auth.stats.bump(&app, |s| s.revocations += 1);
        return Resp::empty(200);
    }
    Resp::oauth_error(400, "invalid_token", "invalid token")
}

/// Looks up a live session and touches it (inactivity timeout).
pub fn session(shared: &Shared, token: &str) -> Option<Session> {
    let timeout = read(&shared.settings).session_timeout;
    let mut auth = lock(&shared.auth);
    let s = auth.sessions.get_mut(token)?;
    if s.last_used.elapsed() > timeout {
        auth.sessions.remove(token);
        return None;
    }
    s.last_used = Instant::now();
    Some(s.clone())
}

fn token_from(req: &Req) -> Option<String> {
    req.token(crate::http::AUTH_SCHEMES)
        .or_else(|| req.query_param("oauth_token"))
        .or_else(|| req.query_param("access_token"))
}

fn user_fields(org: &Org, user_id: &str) -> Option<serde_json::Map<String, Value>> {
    let rec = org.users.get(user_id)?;
    let mut m = serde_json::Map::new();
    for (i, f) in org.users.schema.fields.iter().enumerate() {
        m.insert(f.name.to_string(), rec.get(i).clone());
    }
    Some(m)
}

fn urls(shared: &Shared, org_id: &str, user_id: &str) -> Value {
    let b = &shared.base_url;
    json!({
        "enterprise": format!("{b}/services/Soap/c/{{version}}/{org_id}"),
        "metadata": format!("{b}/services/Soap/m/{{version}}/{org_id}"),
        "partner": format!("{b}/services/Soap/u/{{version}}/{org_id}"),
        "rest": format!("{b}/services/data/v{{version}}/"),
        "sobjects": format!("{b}/services/data/v{{version}}/sobjects/"),
        "search": format!("{b}/services/data/v{{version}}/search/"),
        "query": format!("{b}/services/data/v{{version}}/query/"),
        "recent": format!("{b}/services/data/v{{version}}/recent/"),
        "tooling_rest": format!("{b}/services/data/v{{version}}/tooling/"),
        "profile": format!("{b}/{user_id}"),
        "users": format!("{b}/services/data/v{{version}}/chatter/users"),
        "custom_domain": b,
    })
}

/// `GET /id/{orgId}/{userId}`.
pub fn identity(shared: &Shared, req: &Req, org_id: &str, user_id: &str) -> Resp {
    let Some(s) = token_from(req).and_then(|t| session(shared, &t)) else {
        return Resp::text(403, "Bad_OAuth_Token");
    };
    let org = read(&shared.org);
    let (Some(org_norm), Some(user_norm)) = (
        crate::ids::normalize(org_id),
        crate::ids::normalize(user_id),
    ) else {
        return Resp::text(404, "Bad_Id");
    };
    if org_norm != org.org_id {
        return Resp::text(403, "Bad_Id");
    }
    let Some(u) = user_fields(&org, &user_norm) else {
        return Resp::text(404, "Bad_Id");
    };
    let g = |k: &str| u.get(k).cloned().unwrap_or(Value::Null);
    Resp::json(
        200,
        &json!({
            "id": identity_url(shared, &org.org_id, &user_norm),
            "asserted_user": s.user_id == user_norm,
            "user_id": user_norm,
            "organization_id": org.org_id,
            "username": g("Username"),
            "nick_name": g("Alias"),
            "display_name": g("Name"),
            "email": g("Email"),
            "email_verified": true,
            "first_name": g("FirstName"),
            "last_name": g("LastName"),
            "timezone": g("TimeZoneSidKey"),
            "photos": {"picture": format!("{}/profilephoto/005/F", shared.base_url), "thumbnail": format!("{}/profilephoto/005/T", shared.base_url)},
            "mobile_phone": g("MobilePhone"),
            "mobile_phone_verified": false,
            "status": {"created_date": null, "body": null},
            "urls": urls(shared, &org.org_id, &user_norm),
            "active": g("IsActive"),
            "user_type": "STANDARD",
            "language": g("LanguageLocaleKey"),
            "locale": "en_US",
            "utcOffset": 0,
            "last_modified_date": g("LastModifiedDate"),
            "is_app_installed": true,
        }),
    )
}

/// `GET /services/oauth2/userinfo`.
pub fn userinfo(shared: &Shared, req: &Req) -> Resp {
    let Some(s) = token_from(req).and_then(|t| session(shared, &t)) else {
        return Resp::text(403, "Bad_OAuth_Token");
    };
    let org = read(&shared.org);
    let Some(u) = user_fields(&org, &s.user_id) else {
        return Resp::text(403, "Bad_OAuth_Token");
    };
    let g = |k: &str| u.get(k).cloned().unwrap_or(Value::Null);
    Resp::json(
        200,
        &json!({
            "sub": identity_url(shared, &org.org_id, &s.user_id),
            "user_id": s.user_id,
            "organization_id": org.org_id,
            "preferred_username": g("Username"),
            "nickname": g("Alias"),
            "name": g("Name"),
            "email": g("Email"),
            "email_verified": true,
            "given_name": g("FirstName"),
            "family_name": g("LastName"),
            "zoneinfo": g("TimeZoneSidKey"),
            "phone_number": g("Phone"),
            "phone_number_verified": false,
            "urls": urls(shared, &org.org_id, &s.user_id),
            "active": g("IsActive"),
            "user_type": "STANDARD",
            "language": g("LanguageLocaleKey"),
            "locale": "en_US",
            "utcOffset": 0,
            "updated_at": g("LastModifiedDate"),
        }),
    )
}

/// `GET /.well-known/openid-configuration`.
pub fn openid_configuration(shared: &Shared) -> Resp {
    let b = &shared.base_url;
    Resp::json(
        200,
        &json!({
            "issuer": b,
            "authorization_endpoint": format!("{b}/services/oauth2/authorize"),
            "token_endpoint": format!("{b}/services/oauth2/token"),
            "revocation_endpoint": format!("{b}/services/oauth2/revoke"),
            "userinfo_endpoint": format!("{b}/services/oauth2/userinfo"),
            "jwks_uri": format!("{b}/id/keys"),
            "scopes_supported": crate::config::DEFAULT_SCOPES,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "display_values_supported": ["page", "popup", "touch"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["active", "address", "email", "email_verified", "family_name", "given_name", "is_app_installed", "language", "locale", "name", "nickname", "organization_id", "phone_number", "phone_number_verified", "photos", "picture", "preferred_username", "profile", "sub", "updated_at", "urls", "user_id", "user_type", "zoneinfo"],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_challenge(&pkce_challenge("x")));
        assert!(!valid_challenge("short"));
    }

    #[test]
    fn signature_is_hmac_of_id_and_issued_at() {
        // Independently computed: HMAC-SHA256("secret", "https://x/id/1/2" + "1700000000000").
        let sig = signature("secret", "https://x/id/1/2", "1700000000000");
        assert_eq!(sig, "SmA7b6zBSccdJvhcLLFNSWkSUgmCt1ddR8hsVjNSYkY=");
        assert_ne!(sig, signature("other", "https://x/id/1/2", "1700000000000"));
        assert_ne!(
            sig,
            signature("secret", "https://x/id/1/2", "1700000000001")
        );
    }

    #[test]
    fn redirect_query_is_appended() {
        assert_eq!(
            add_query("https://a/cb", &[("code", "x y")]),
            "https://a/cb?code=x+y"
        );
        assert_eq!(
            add_query("https://a/cb?t=1", &[("state", "s")]),
            "https://a/cb?t=1&state=s"
        );
    }
}
