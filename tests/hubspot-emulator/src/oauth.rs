//! HubSpot's OAuth 2.0: the install (consent) page, the token endpoint,
//! token information and refresh-token revocation.

use serde::Serialize;
use serde_json::json;

use crate::config::App;
use crate::error::HsError;
use crate::http::{Req, Resp, html_escape};
use crate::state::{AccessToken, AuthCode, RefreshToken, Shared, lock};

/// `POST /oauth/v1/token`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenResponse {
    pub token_type: String,
    pub refresh_token: String,
    pub access_token: String,
    pub expires_in: u64,
}

/// The parameters of an authorize request (query or form).
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    optional_scopes: Vec<String>,
    state: Option<String>,
}

fn split_scopes(s: Option<String>) -> Vec<String> {
    s.unwrap_or_default()
        .split([' ', '+', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn params(pairs: &[(String, String)]) -> AuthorizeParams {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    AuthorizeParams {
        client_id: get("client_id").unwrap_or_default(),
        redirect_uri: get("redirect_uri").unwrap_or_default(),
        scopes: split_scopes(get("scope")),
        optional_scopes: split_scopes(get("optional_scope")),
        state: get("state"),
    }
}

fn error_page(status: u16, message: &str) -> Resp {
    Resp::html(
        status,
        format!(
            "<!DOCTYPE html><html><head><title>HubSpot - Authorization error</title></head>\
             <body><h1>Authorization failed</h1><p id=\"error\">{}</p></body></html>",
            html_escape(message)
        ),
    )
}

/// Checks the app, the redirect URL and the scopes; answers the app and
/// the scopes to grant (required plus the optional ones the app allows).
fn check(shared: &Shared, p: &AuthorizeParams) -> Result<(App, Vec<String>), Resp> {
    let auth = lock(&shared.auth);
    let Some(app) = auth.apps.get(&p.client_id).cloned() else {
        return Err(error_page(
            400,
            &format!(
                "Authorization failed because the client_id {:?} is invalid. Check the app's client ID.",
                p.client_id
            ),
        ));
    };
    if !app.redirect_uris.contains(&p.redirect_uri) {
        return Err(error_page(
            400,
            "Authorization failed because the redirect URL doesn't match the one registered for the app.",
        ));
    }
    if p.scopes.is_empty() {
        return Err(error_page(
            400,
            "Authorization failed because no scope was requested.",
        ));
    }
    if let Some(bad) = p.scopes.iter().find(|s| !app.scopes.contains(s)) {
        return Err(error_page(
            400,
            &format!(
                "Authorization failed because there is a mismatch between the scopes in the install URL and the app's configured scopes ({bad})."
            ),
        ));
    }
    let mut granted = p.scopes.clone();
    for s in &p.optional_scopes {
        if (app.optional_scopes.contains(s) || app.scopes.contains(s)) && !granted.contains(s) {
            granted.push(s.clone());
        }
    }
    Ok((app, granted))
}

fn consent_page(app: &App, p: &AuthorizeParams, scopes: &[String], error: Option<&str>) -> String {
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            html_escape(value)
        )
    };
    let items: String = scopes
        .iter()
        .map(|s| format!("<li>{}</li>", html_escape(s)))
        .collect();
    let error = error
        .map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html><html><head><title>HubSpot - Connect app</title></head><body>\
         <h1>Connect app {client}</h1>{error}\
         <p>The app is requesting access to:</p><ul id=\"scopes\">{items}</ul>\
         <form id=\"authorize\" method=\"post\" action=\"/oauth/authorize\">\
         {h1}{h2}{h3}{h4}{h5}\
         <label>Email <input type=\"email\" name=\"email\" value=\"\"></label>\
         <label>Password <input type=\"password\" name=\"password\" value=\"\"></label>\
         <button type=\"submit\" name=\"action\" value=\"authorize\">Connect app</button>\
         </form></body></html>",
        client = html_escape(&app.client_id),
        h1 = hidden("client_id", &p.client_id),
        h2 = hidden("redirect_uri", &p.redirect_uri),
        h3 = hidden("scope", &p.scopes.join(" ")),
        h4 = hidden("optional_scope", &p.optional_scopes.join(" ")),
        h5 = hidden("state", p.state.as_deref().unwrap_or("")),
    )
}

/// `GET /oauth/authorize`: the install page with a login form.
pub fn authorize(shared: &Shared, req: &Req) -> Resp {
    let p = params(&req.query_pairs());
    match check(shared, &p) {
        Ok((app, scopes)) => Resp::html(200, consent_page(&app, &p, &scopes, None)),
        Err(r) => r,
    }
}

/// `POST /oauth/authorize`: logs in and installs; redirects to the app
/// with `code` and `state`.
pub fn authorize_submit(shared: &Shared, req: &Req) -> Resp {
    let form = req.form();
    let p = params(&form);
    let (app, scopes) = match check(shared, &p) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (email, password) = (field("email"), field("password"));
    let now = shared.now_ms();
    let lifetime = shared.settings().code_lifetime_ms;
    let mut auth = lock(&shared.auth);
    let Some(user_id) = auth
        .accounts
        .iter()
        .find(|a| a.user.email.eq_ignore_ascii_case(&email) && a.user.password == password)
        .map(|a| a.user_id)
    else {
        drop(auth);
        return Resp::html(
            401,
            consent_page(
                &app,
                &p,
                &scopes,
                Some("The email address or password is incorrect."),
            ),
        );
    };
    let code = Shared::token("code-");
    auth.codes.insert(
        code.clone(),
        AuthCode {
            client_id: app.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            user_id,
            scopes,
            expires_ms: now + lifetime,
        },
    );
    let Ok(mut target) = url::Url::parse(&p.redirect_uri) else {
        return error_page(400, "The redirect URL is not a valid URL.");
    };
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = &p.state {
        target.query_pairs_mut().append_pair("state", s);
    }
    Resp::redirect(target.as_str())
}

/// Issues an access token and a refresh token.
pub fn issue(shared: &Shared, client_id: &str, user_id: u64, scopes: &[String]) -> TokenResponse {
    let now = shared.now_ms();
    let lifetime = shared.settings().access_token_lifetime_ms;
    let access = Shared::token("CN");
    let refresh = Shared::token("rt-");
    let mut auth = lock(&shared.auth);
    auth.access.insert(
        access.clone(),
        AccessToken {
            client_id: client_id.to_string(),
            user_id,
            scopes: scopes.to_vec(),
            expires_ms: now + lifetime,
        },
    );
    auth.refresh.insert(
        refresh.clone(),
        RefreshToken {
            client_id: client_id.to_string(),
            user_id,
            scopes: scopes.to_vec(),
        },
    );
    TokenResponse {
        token_type: "bearer".into(),
        refresh_token: refresh,
        access_token: access,
        expires_in: u64::try_from(lifetime / 1000).unwrap_or(0),
    }
}

/// `POST /oauth/v1/token` (form-encoded).
pub fn token(shared: &Shared, req: &Req) -> Resp {
    match token_inner(shared, req) {
        Ok(t) => Resp::json(200, &t),
        Err(e) => {
            lock(&shared.auth).stats.failed_token_requests += 1;
            e.into()
        }
    }
}

fn token_inner(shared: &Shared, req: &Req) -> Result<TokenResponse, HsError> {
    let grant = req.form_param("grant_type").unwrap_or_default();
    let client_id = req.form_param("client_id").unwrap_or_default();
    let secret = req.form_param("client_secret").unwrap_or_default();
    if grant != "authorization_code" && grant != "refresh_token" {
        return Err(HsError::oauth(
            "BAD_GRANT_TYPE",
            "grant_type must be authorization_code or refresh_token",
        ));
    }
    let app = lock(&shared.auth)
        .apps
        .get(&client_id)
        .cloned()
        .ok_or_else(|| HsError::oauth("BAD_CLIENT_ID", "missing or invalid client_id"))?;
    if app.client_secret != secret {
        return Err(HsError::oauth(
            "BAD_CLIENT_SECRET",
            "missing or invalid client secret",
        ));
    }
    if grant == "authorization_code" {
        let code = req.form_param("code").unwrap_or_default();
        let redirect_uri = req.form_param("redirect_uri").unwrap_or_default();
        let now = shared.now_ms();
        let mut auth = lock(&shared.auth);
        let bad_code = || HsError::oauth("BAD_AUTH_CODE", "missing or unknown auth code");
        let c = auth.codes.get(&code).cloned().ok_or_else(bad_code)?;
        if c.client_id != client_id {
            return Err(bad_code());
        }
        if c.redirect_uri != redirect_uri {
            return Err(HsError::oauth(
                "BAD_REDIRECT_URI",
                "redirect_uri does not match the one used to get the authorization code",
            ));
        }
        // Single use, even when it turns out to have expired.
        auth.codes.remove(&code);
        if now > c.expires_ms {
            return Err(bad_code());
        }
        auth.stats.authorization_code_grants += 1;
        drop(auth);
        Ok(issue(shared, &client_id, c.user_id, &c.scopes))
    } else {
        let rt = req.form_param("refresh_token").unwrap_or_default();
        let bad = || HsError::oauth("BAD_REFRESH_TOKEN", "missing or invalid refresh token");
        let mut auth = lock(&shared.auth);
        let r = auth.refresh.get(&rt).cloned().ok_or_else(bad)?;
        if r.client_id != client_id {
            return Err(bad());
        }
        auth.stats.refresh_grants += 1;
        let now = shared.now_ms();
        let lifetime = shared.settings().access_token_lifetime_ms;
        let access = Shared::token("CN");
        auth.access.insert(
            access.clone(),
            AccessToken {
                client_id,
                user_id: r.user_id,
                scopes: r.scopes,
                expires_ms: now + lifetime,
            },
        );
        // HubSpot keeps the refresh token: it is answered again.
        Ok(TokenResponse {
            token_type: "bearer".into(),
            refresh_token: rt,
            access_token: access,
            expires_in: u64::try_from(lifetime / 1000).unwrap_or(0),
        })
    }
}

fn token_not_found() -> HsError {
    HsError::new(404, "OBJECT_NOT_FOUND", "token not found")
}

/// `GET /oauth/v1/access-tokens/{token}`.
pub fn access_token_info(shared: &Shared, token: &str) -> Resp {
    let now = shared.now_ms();
    let auth = lock(&shared.auth);
    let Some(t) = auth.access.get(token) else {
        return token_not_found().into();
    };
    if now >= t.expires_ms {
        return expired(now - t.expires_ms).into();
    }
    let app_id = auth.apps.get(&t.client_id).map_or(0, |a| a.app_id);
    let user = auth.email_of(t.user_id);
    Resp::json(
        200,
        &json!({
            "token": token,
            "user": user,
            "hub_domain": shared.hub_domain,
            "scopes": t.scopes,
            "hub_id": shared.hub_id,
            "app_id": app_id,
            "expires_in": (t.expires_ms - now) / 1000,
            "user_id": t.user_id,
            "token_type": "access",
        }),
    )
}

/// `GET /oauth/v1/refresh-tokens/{token}`.
pub fn refresh_token_info(shared: &Shared, token: &str) -> Resp {
    let auth = lock(&shared.auth);
    let Some(t) = auth.refresh.get(token) else {
        return token_not_found().into();
    };
    let user = auth.email_of(t.user_id);
    Resp::json(
        200,
        &json!({
            "token": token,
            "user": user,
            "hub_domain": shared.hub_domain,
            "scopes": t.scopes,
            "hub_id": shared.hub_id,
            "client_id": t.client_id,
            "user_id": t.user_id,
            "token_type": "refresh",
        }),
    )
}

/// `DELETE /oauth/v1/refresh-tokens/{token}`: 204; the access tokens
/// issued from it stay valid until they expire.
pub fn revoke_refresh_token(shared: &Shared, token: &str) -> Resp {
    let mut auth = lock(&shared.auth);
    if auth.refresh.remove(token).is_none() {
        return token_not_found().into();
    }
    auth.stats.revocations += 1;
    Resp::empty(204)
}

/// 401 for a token that expired `ago_ms` ago.
pub fn expired(ago_ms: i64) -> HsError {
    HsError::new(
        401,
        "EXPIRED_AUTHENTICATION",
        format!(
            "The OAuth token used to make this call expired {} minute(s) ago.",
            ago_ms / 60_000
        ),
    )
}

/// 401 for a missing or unknown token.
pub fn no_credentials() -> HsError {
    HsError::new(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    )
}

/// The token's grant if it is live: (user id, scopes).
pub fn authenticate(shared: &Shared, req: &Req) -> Result<(u64, Vec<String>), HsError> {
    let token = req.bearer().ok_or_else(no_credentials)?;
    let now = shared.now_ms();
    let auth = lock(&shared.auth);
    let t = auth.access.get(&token).ok_or_else(no_credentials)?;
    if now >= t.expires_ms {
        return Err(expired(now - t.expires_ms));
    }
    Ok((t.user_id, t.scopes.clone()))
}

/// 403 unless `granted` has one of `required`.
pub fn require_scope(granted: &[String], required: &[&str]) -> Result<(), HsError> {
    if required.iter().any(|r| granted.iter().any(|g| g == r)) {
        return Ok(());
    }
    Err(HsError::new(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
    )
    .with(
        "errors",
        json!([{
            "message": "One or more of the following scopes are required.",
            "context": {"requiredGranularScopes": required},
        }]),
    )
    .with("links", json!({"scopes": "https://developers.hubspot.com/scopes"})))
}
