//! A CRM plugin's set-up: what it is and which settings it describes, its
//! settings, the Callback URL, authorizing, disconnecting, and its status
//! with the host's view of its call journal.
//!
//! The authorization page a plugin names is opened by the portal and the
//! CLI, so it is checked here first (`check_authorization_url`): only a web
//! page (`https`, or `http` on loopback for tests) gets out.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::runtime::wit::{Info, SettingInput, SettingKind};
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/crm/{plugin}/describe", get(describe))
        .route("/crm/{plugin}/status", get(status))
        .route("/crm/{plugin}/callback-url", get(callback_url))
        .route("/crm/{plugin}/settings", get(settings).put(save_settings))
        .route("/crm/{plugin}/authorize", post(authorize))
        .route("/crm/{plugin}/disconnect", post(disconnect))
}

async fn describe(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let info = st.runtime.plugin(&plugin).describe().await?;
    Ok(Json(json!(info)))
}

async fn status(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = st.runtime.plugin(&plugin).status().await?;
    let mut body = json!(status);
    let last = st.authorizations.get(&plugin, crate::now_ms())?;
    body["last_authorization"] = json!(last);
    let pending = st.journal.pending(&plugin);
    body["pending_call_logs"] = json!(pending.count);
    body["queued_call_events"] = json!(st.journal.queued(&plugin));
    if let Some(error) = pending.error {
        body["call_journal_problem"] = json!(error);
    }
    Ok(Json(body))
}

async fn authorize(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let callback_url = st.network.callback_url(&plugin);
    let authorization = st
        .runtime
        .plugin(&plugin)
        .begin_authorization(&callback_url)
        .await?;
    check_authorization_url(&plugin, &authorization.url)
        .map_err(|m| ApiError::new(StatusCode::BAD_GATEWAY, "plugin-bad-answer", m))?;
    Ok(Json(json!(authorization)))
}

/// Whether `url`, the authorization page plugin `plugin` named, may be
/// opened: an `https` URL, or `http` to a loopback host (tests, a CRM on
/// this machine). Else a message naming the plugin and the fix.
pub fn check_authorization_url(plugin: &str, url: &str) -> Result<(), String> {
    let refuse = |why: &str| {
        Err(format!(
            "plugin {plugin} gave an authorization page that {why}, so it was not opened: update or remove the plugin, and tell its vendor"
        ))
    };
    let Ok(parsed) = url::Url::parse(url) else {
        return refuse("is not a URL");
    };
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        "http" => refuse("is plain http to a host other than this machine (https is needed)"),
        _ => refuse(&format!(
            "is a {}: URL, not an https page",
            parsed.scheme().chars().take(20).collect::<String>()
        )),
    }
}

async fn disconnect(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = st.runtime.plugin(&plugin).disconnect().await?;
    Ok(Json(json!(status)))
}

async fn callback_url(State(st): St, Path(plugin): Path<String>) -> Json<serde_json::Value> {
    Json(json!({ "callback_url": st.network.callback_url(&plugin) }))
}

async fn settings(
    State(st): St,
    Path(plugin): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let values = st.runtime.plugin(&plugin).settings().await?;
    Ok(Json(json!({ "settings": values })))
}

#[derive(Deserialize)]
struct SettingsBody {
    settings: Vec<SettingInput>,
}

async fn save_settings(
    State(st): St,
    Path(plugin): Path<String>,
    Json(body): Json<SettingsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The form is asked for only when something was emptied: a save
    // costs one plugin call, as before.
    let emptied = body
        .settings
        .iter()
        .any(|i| i.value.as_deref().is_some_and(|v| v.trim().is_empty()));
    if emptied {
        let info = st.runtime.plugin(&plugin).describe().await?;
        refuse_emptied_required(&info, &body.settings)?;
    }
    let status = st
        .runtime
        .plugin(&plugin)
        .save_settings(&body.settings)
        .await?;
    Ok(Json(json!({ "status": status })))
}

/// An empty value for a setting the plugin's form marks required is
/// refused before the plugin sees it, naming the setting (`field`): a save
/// must never store less than the integration needs. Secrets are exempt:
/// an empty secret keeps the stored one (the form never shows it back).
/// The plugin checks its own settings too; this gives every plugin's
/// refusal the same shape.
fn refuse_emptied_required(info: &Info, inputs: &[SettingInput]) -> Result<(), ApiError> {
    for input in inputs {
        let Some(value) = input.value.as_deref() else {
            continue;
        };
        let Some(field) = info.settings.iter().find(|f| f.key == input.key) else {
            continue;
        };
        if field.required && !matches!(field.kind, SettingKind::Secret) && value.trim().is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-input",
                format!(
                    "{} ({}) is required and cannot be emptied; enter it, or leave it out to keep the stored one (to stop using {}, disconnect). Nothing was saved",
                    field.label, field.key, info.crm_name
                ),
            )
            .with_field(field.key.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_required_setting_is_refused_naming_it() {
        use crate::runtime::wit::SettingField;
        let field = |key: &str, kind, required| SettingField {
            key: key.into(),
            label: format!("The {key}"),
            kind,
            required,
            help: String::new(),
            choices: Vec::new(),
            default_value: None,
        };
        let info = Info {
            crm_name: "Acme CRM".into(),
            settings: vec![
                field("account", SettingKind::Text, true),
                field("token", SettingKind::Secret, true),
                field("region", SettingKind::Text, false),
            ],
        };
        let input = |key: &str, value: Option<&str>| SettingInput {
            key: key.into(),
            value: value.map(Into::into),
        };
        let refused = refuse_emptied_required(
            &info,
            &[input("region", Some("")), input("account", Some(" "))],
        );
        let Err(e) = refused else {
            panic!("an emptied required setting passed");
        };
        assert_eq!(e.kind(), "invalid-input");
        assert!(
            e.message().contains("The account (account) is required"),
            "{}",
            e.message()
        );
        for fine in [
            vec![input("account", None)],
            vec![input("token", Some(""))],
            vec![input("region", Some(""))],
            vec![input("unknown", Some(""))],
            vec![input("account", Some("acme"))],
        ] {
            assert!(refuse_emptied_required(&info, &fine).is_ok());
        }
    }

    #[test]
    fn only_web_pages_pass_as_authorization_urls() {
        for ok in [
            "https://login.salesforce.com/services/oauth2/authorize?x=1",
            "http://127.0.0.1:8443/authorize",
            "http://localhost/authorize",
            "http://[::1]:80/authorize",
        ] {
            assert_eq!(check_authorization_url("probe", ok), Ok(()), "{ok}");
        }
        for bad in [
            "javascript:alert(document.cookie)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "http://evil.example/authorize",
            "http://127.0.0.1.evil.example/",
            "file:///etc/passwd",
            "vbscript:x",
            "not a url",
        ] {
            let refused = check_authorization_url("probe", bad);
            assert!(
                refused.as_ref().is_err_and(|m| m.contains("plugin probe")),
                "{bad}: {refused:?}"
            );
        }
    }
}
