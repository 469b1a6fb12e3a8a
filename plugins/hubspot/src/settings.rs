//! The settings form and the stored settings: the app's client id and
//! secret, where HubSpot is (the API and the install page; tests point both
//! at the emulator), and the call settings.
//!
//! The client secret is write-only: `values` reports only that it is set,
//! and no message or log line ever contains it.

use serde::{Deserialize, Serialize};

use crate::bindings::exports::pbx::crm::integration::{
    Info, SettingChoice, SettingField, SettingInput, SettingKind, SettingValue,
};
use crate::error::PluginError;

pub const CLIENT_ID: &str = "client-id";
pub const CLIENT_SECRET: &str = "client-secret";
pub const API_BASE: &str = "api-base-url";
pub const APP_BASE: &str = "app-base-url";
pub const POPUP: &str = "popup";
pub const LOG_CALLS: &str = "log-calls";
pub const UNKNOWN_CALLERS: &str = "unknown-callers";

pub const DEFAULT_API_BASE: &str = "https://api.hubapi.com";
pub const DEFAULT_APP_BASE: &str = "https://app.hubspot.com";

/// When the caller's record opens for the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Popup {
    #[default]
    Ringing,
    Answered,
    Never,
}

/// Which calls are logged as Call engagements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogCalls {
    /// Answered and missed calls (a missed one as NO_ANSWER).
    #[default]
    All,
    /// Answered calls only.
    Answered,
    /// None.
    None,
}

/// What a logged call from or to a number no contact or company has does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownCallers {
    /// Log the call without a contact.
    #[default]
    LogOnly,
    /// Create a contact with the number and log the call on it.
    CreateContact,
}

/// The stored settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub api_base: Option<String>,
    pub app_base: Option<String>,
    pub popup: Popup,
    pub log_calls: LogCalls,
    pub unknown_callers: UnknownCallers,
}

fn choice(value: &str, label: &str) -> SettingChoice {
    SettingChoice {
        value: value.into(),
        label: label.into(),
    }
}

fn field(key: &str, label: &str, kind: SettingKind, required: bool, help: &str) -> SettingField {
    SettingField {
        key: key.into(),
        label: label.into(),
        kind,
        required,
        help: help.into(),
        choices: Vec::new(),
        default_value: None,
    }
}

/// The plugin's name and settings form.
pub fn describe() -> Info {
    let mut api = field(
        API_BASE,
        "HubSpot API URL",
        SettingKind::Url,
        false,
        "Where HubSpot's API is; leave the default unless you test against an emulator.",
    );
    api.default_value = Some(DEFAULT_API_BASE.into());
    let mut app = field(
        APP_BASE,
        "HubSpot app URL",
        SettingKind::Url,
        false,
        "Where the install page and the records are shown; leave the default unless you test against an emulator.",
    );
    app.default_value = Some(DEFAULT_APP_BASE.into());
    let mut popup = field(
        POPUP,
        "Pop-up of the caller's record",
        SettingKind::Choice,
        false,
        "When the caller's HubSpot record opens for the agent of the extension.",
    );
    popup.choices = vec![
        choice("ringing", "When the extension rings"),
        choice("answered", "When the call is answered"),
        choice("never", "Never"),
    ];
    popup.default_value = Some("ringing".into());
    let mut log = field(
        LOG_CALLS,
        "Calls logged in HubSpot",
        SettingKind::Choice,
        false,
        "Which ended calls become Call engagements (missed ones with status No answer).",
    );
    log.choices = vec![
        choice("all", "Answered and missed calls"),
        choice("answered", "Answered calls only"),
        choice("none", "None"),
    ];
    log.default_value = Some("all".into());
    let mut unknown = field(
        UNKNOWN_CALLERS,
        "Unknown numbers",
        SettingKind::Choice,
        false,
        "What a logged call with a number no HubSpot contact or company has does.",
    );
    unknown.choices = vec![
        choice("log-only", "Log the call without a contact"),
        choice("create-contact", "Create a contact with the number"),
    ];
    unknown.default_value = Some("log-only".into());
    Info {
        crm_name: "HubSpot".into(),
        settings: vec![
            field(
                CLIENT_ID,
                "Client ID",
                SettingKind::Text,
                true,
                "The Client ID of your HubSpot app (app settings, Auth tab).",
            ),
            field(
                CLIENT_SECRET,
                "Client secret",
                SettingKind::Secret,
                true,
                "The Client secret of the same app. Stored sealed and never shown again.",
            ),
            api,
            app,
            popup,
            log,
            unknown,
        ],
    }
}

/// A base URL as stored: `https://host[:port][/path]`, no query, no
/// trailing slash.
fn base_url(key: &str, raw: &str) -> Result<String, PluginError> {
    let bad = |why: &str| {
        PluginError::InvalidInput(format!(
            "{key}: {why}; enter an https:// URL such as {DEFAULT_API_BASE}"
        ))
    };
    let parsed = url::Url::parse(raw.trim()).map_err(|_| bad("is not a URL"))?;
    if parsed.scheme() != "https" {
        return Err(bad("must start with https://"));
    }
    if parsed.host_str().is_none() {
        return Err(bad("has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(bad("must not have a query, fragment or user name"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// A plain token (client id, secret): no white space, bounded.
fn token(key: &str, raw: &str, max: usize) -> Result<String, PluginError> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_whitespace) {
        return Err(PluginError::InvalidInput(format!(
            "{key} must have 1 to {max} characters without spaces; copy it from your HubSpot app's Auth tab"
        )));
    }
    Ok(t.to_string())
}

fn pick<T: for<'de> Deserialize<'de>>(key: &str, raw: &str) -> Result<T, PluginError> {
    serde_json::from_value(serde_json::Value::String(raw.trim().to_string())).map_err(|_| {
        let allowed: Vec<String> = describe()
            .settings
            .into_iter()
            .find(|f| f.key == key)
            .map(|f| f.choices.into_iter().map(|c| c.value).collect())
            .unwrap_or_default();
        PluginError::InvalidInput(format!("{key} must be one of: {}", allowed.join(", ")))
    })
}

fn as_value<T: Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
}

impl Settings {
    /// The API base URL in use.
    pub fn api_base(&self) -> &str {
        self.api_base.as_deref().unwrap_or(DEFAULT_API_BASE)
    }

    /// The app (install page, records) base URL in use.
    pub fn app_base(&self) -> &str {
        self.app_base.as_deref().unwrap_or(DEFAULT_APP_BASE)
    }

    /// The client id and secret, or what is missing.
    pub fn credentials(&self) -> Result<(&str, &str), PluginError> {
        match (self.client_id.as_deref(), self.client_secret.as_deref()) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(PluginError::NotConfigured(
                "enter the HubSpot app's Client ID and Client secret in the settings first".into(),
            )),
        }
    }

    /// Whether the required settings are there.
    pub fn configured(&self) -> bool {
        self.credentials().is_ok()
    }

    /// The settings as the portal shows them; the secret only as "set".
    pub fn values(&self) -> Vec<SettingValue> {
        let v = |key: &str, value: Option<String>| SettingValue {
            key: key.into(),
            is_set: value.is_some(),
            value,
        };
        vec![
            v(CLIENT_ID, self.client_id.clone()),
            SettingValue {
                key: CLIENT_SECRET.into(),
                value: None,
                is_set: self.client_secret.is_some(),
            },
            v(API_BASE, self.api_base.clone()),
            v(APP_BASE, self.app_base.clone()),
            v(POPUP, as_value(&self.popup)),
            v(LOG_CALLS, as_value(&self.log_calls)),
            v(UNKNOWN_CALLERS, as_value(&self.unknown_callers)),
        ]
    }

    /// These settings with `inputs` applied, all validated; `None` keeps a
    /// stored value, an empty text clears an optional one.
    pub fn apply(mut self, inputs: &[SettingInput]) -> Result<Self, PluginError> {
        for input in inputs {
            let Some(raw) = input.value.as_deref() else {
                continue;
            };
            let empty = raw.trim().is_empty();
            match input.key.as_str() {
                CLIENT_ID => self.client_id = Some(token(CLIENT_ID, raw, 100)?),
                CLIENT_SECRET => self.client_secret = Some(token(CLIENT_SECRET, raw, 200)?),
                API_BASE if empty => self.api_base = None,
                API_BASE => self.api_base = Some(base_url(API_BASE, raw)?),
                APP_BASE if empty => self.app_base = None,
                APP_BASE => self.app_base = Some(base_url(APP_BASE, raw)?),
                POPUP => self.popup = pick(POPUP, raw)?,
                LOG_CALLS => self.log_calls = pick(LOG_CALLS, raw)?,
                UNKNOWN_CALLERS => self.unknown_callers = pick(UNKNOWN_CALLERS, raw)?,
                other => {
                    return Err(PluginError::InvalidInput(format!(
                        "unknown setting {:?}",
                        crate::cut(other, 40)
                    )));
                }
            }
        }
        Ok(self)
    }

    /// Whether a change from `self` to `next` makes the stored tokens
    /// belong to another app or HubSpot (they must be dropped).
    pub fn changes_connection(&self, next: &Settings) -> bool {
        self.client_id != next.client_id || self.api_base() != next.api_base()
    }
}
