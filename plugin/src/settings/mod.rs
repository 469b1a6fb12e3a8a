//! The administrator's Salesforce settings: Consumer Key, Consumer Secret and
//! the login host (Production, Sandbox or a My Domain URL), validated as the
//! portal saves them and shown back with the secret masked. The call
//! settings are in `call_settings`, the form the portal draws in `form`.

mod call_settings;
mod form;

pub use call_settings::{CallSettings, OpenCase, PopupOn, Rule, TaskOwner, UnknownCaller};
pub use form::describe;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::bindings::exports::pbx::crm::integration::{SettingInput, SettingValue};
use crate::error::PluginError;

/// Setting keys, as the portal and CLI send them.
pub const CONSUMER_KEY: &str = "consumer-key";
/// The Consumer Secret (write-only).
pub const CONSUMER_SECRET: &str = "consumer-secret";
/// Production, Sandbox or My Domain.
pub const LOGIN_HOST: &str = "login-host";
/// The My Domain URL, when the login host is "my-domain".
pub const MY_DOMAIN_URL: &str = "my-domain-url";
/// A login URL in one field (the CLI's `--login-url`): Production's or
/// Sandbox's address chooses those, any other is a My Domain URL.
pub const LOGIN_URL: &str = "login-url";

/// When the caller's record pops up for the agent (`PopupOn`).
pub const POPUP_ON: &str = "popup-on";
/// How answered inbound calls are logged (`Rule`).
pub const LOG_INBOUND_ANSWERED: &str = "log-inbound-answered";
/// Log missed inbound calls (`Rule`).
pub const LOG_INBOUND_MISSED: &str = "log-inbound-missed";
/// Log answered outbound calls (`Rule`).
pub const LOG_OUTBOUND_ANSWERED: &str = "log-outbound-answered";
/// Log unanswered outbound calls (`Rule`).
pub const LOG_OUTBOUND_UNANSWERED: &str = "log-outbound-unanswered";
/// Log internal calls (`Rule`).
pub const LOG_INTERNAL: &str = "log-internal";
/// Log calls that ended in a voicemail (`Rule`; the PBX's disposition
/// "voicemail").
pub const LOG_VOICEMAIL: &str = "log-voicemail";
/// Relate a call's Task to the caller's most recent open Case (`OpenCase`).
pub const LOG_TO_OPEN_CASE: &str = "log-to-open-case";
/// Who owns a call's Task (`TaskOwner`).
pub const TASK_OWNER: &str = "task-owner";
/// What an unknown inbound caller becomes (`UnknownCaller`).
pub const UNKNOWN_INBOUND: &str = "unknown-inbound";
/// What an unknown number called outbound becomes (`UnknownCaller`).
pub const UNKNOWN_OUTBOUND: &str = "unknown-outbound";
/// Which Salesforce users the sync lists (`UserTypes`).
pub const USER_TYPES: &str = "user-types";

const PRODUCTION: &str = "https://login.salesforce.com";
const SANDBOX: &str = "https://test.salesforce.com";

/// Where the administrator logs in to Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginHost {
    /// login.salesforce.com
    #[default]
    Production,
    /// test.salesforce.com
    Sandbox,
    /// The org's own My Domain URL.
    MyDomain,
}

impl LoginHost {
    fn as_str(self) -> &'static str {
        match self {
            LoginHost::Production => "production",
            LoginHost::Sandbox => "sandbox",
            LoginHost::MyDomain => "my-domain",
        }
    }

    fn parse(value: &str) -> Result<Self, PluginError> {
        match value.trim() {
            "production" => Ok(LoginHost::Production),
            "sandbox" => Ok(LoginHost::Sandbox),
            "my-domain" => Ok(LoginHost::MyDomain),
            other => Err(PluginError::InvalidInput(format!(
                "login host {other:?} is unknown; choose production, sandbox or my-domain"
            ))),
        }
    }
}

/// Which Salesforce users the sync lists (the users page, associations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserTypes {
    /// Only users who can have a phone: `UserType = 'Standard'`. Chatter
    /// Free, community (partner and customer portal), guest and automated
    /// users stay off the list.
    #[default]
    Standard,
    /// Every active user, whatever their type.
    All,
}

impl UserTypes {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            UserTypes::Standard => "standard",
            UserTypes::All => "all",
        }
    }

    fn parse(value: &str) -> Result<Self, PluginError> {
        match value.trim() {
            "standard" => Ok(UserTypes::Standard),
            "all" => Ok(UserTypes::All),
            other => Err(PluginError::InvalidInput(format!(
                "{USER_TYPES} {other:?} is unknown; choose standard (users who can have a phone) or all (every active user). Nothing was saved"
            ))),
        }
    }

    /// Whether a user of Salesforce's `UserType` `kind` belongs on the list.
    pub fn includes(self, kind: Option<&str>) -> bool {
        match self {
            UserTypes::All => true,
            UserTypes::Standard => kind == Some("Standard"),
        }
    }
}

/// The stored settings. The secret is stored like everything else in the
/// host's kv-store, which encrypts it at rest; it never leaves the plugin.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The connected app's Consumer Key.
    pub consumer_key: Option<String>,
    /// The connected app's Consumer Secret.
    pub consumer_secret: Option<String>,
    /// Which login host.
    #[serde(default)]
    pub login_host: LoginHost,
    /// The My Domain origin, e.g. `https://acme.my.salesforce.com`.
    pub my_domain_url: Option<String>,
    /// The call settings (defaults until saved).
    #[serde(default)]
    pub calls: CallSettings,
    /// Which users the sync lists.
    #[serde(default)]
    pub user_types: UserTypes,
}

impl std::fmt::Debug for Settings {
    // Hand-written so the secret can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("consumer_key", &self.consumer_key)
            .field(
                "consumer_secret",
                &self.consumer_secret.as_ref().map(|_| "***"),
            )
            .field("login_host", &self.login_host)
            .field("my_domain_url", &self.my_domain_url)
            .field("calls", &self.calls)
            .field("user_types", &self.user_types)
            .finish()
    }
}

impl Settings {
    /// Whether everything needed to authorize is present.
    pub fn is_complete(&self) -> bool {
        self.consumer_key.is_some() && self.consumer_secret.is_some() && self.login_url().is_ok()
    }

    /// The app's Consumer Key and Secret, or the NotConfigured error naming
    /// what to enter.
    pub fn credentials(&self) -> Result<(&str, &str), PluginError> {
        if let (Some(key), Some(secret)) = (&self.consumer_key, &self.consumer_secret) {
            return Ok((key, secret));
        }
        let mut missing = Vec::new();
        if self.consumer_key.is_none() {
            missing.push("the Consumer Key");
        }
        if self.consumer_secret.is_none() {
            missing.push("the Consumer Secret");
        }
        Err(PluginError::NotConfigured(format!(
            "enter {} of your Salesforce app in the PBX portal and click Save",
            missing.join(" and ")
        )))
    }

    /// The login host's origin.
    pub fn login_url(&self) -> Result<String, PluginError> {
        match self.login_host {
            LoginHost::Production => Ok(PRODUCTION.to_string()),
            LoginHost::Sandbox => Ok(SANDBOX.to_string()),
            LoginHost::MyDomain => self.my_domain_url.clone().ok_or_else(|| {
                PluginError::NotConfigured(
                    "the login host is My Domain but no My Domain URL is set; enter it, e.g. https://yourcompany.my.salesforce.com"
                        .into(),
                )
            }),
        }
    }

    /// The settings after applying `inputs`, validated. A value given as
    /// `None` (and an empty secret) keeps the stored one; an empty required
    /// setting is refused.
    pub fn apply(&self, inputs: &[SettingInput]) -> Result<Settings, PluginError> {
        let mut next = self.clone();
        for input in inputs {
            let value = input.value.as_deref().map(str::trim);
            match input.key.as_str() {
                // `None` keeps the stored value (as the contract says). An
                // empty key is refused: it would silently unconfigure the
                // integration and drop its tokens.
                CONSUMER_KEY if value.is_none() => {}
                CONSUMER_KEY => {
                    next.consumer_key = Some(required(
                        value,
                        "the Consumer Key",
                        "copy it from your Salesforce app's \"Consumer Key and Secret\" page; to stop using Salesforce, click Disconnect",
                    )?)
                }
                CONSUMER_SECRET => {
                    // Write-only: absent or empty keeps the stored secret.
                    if let Some(secret) = nonempty(value) {
                        next.consumer_secret = Some(secret);
                    }
                }
                LOGIN_HOST if value.is_none() => {}
                LOGIN_HOST => {
                    let host = required(
                        value,
                        "the login host",
                        "choose production, sandbox or my-domain",
                    )?;
                    next.login_host = LoginHost::parse(&host)?;
                }
                MY_DOMAIN_URL => {
                    next.my_domain_url = nonempty(value)
                        .map(|v| normalize_my_domain(&v))
                        .transpose()?
                }
                LOGIN_URL => {
                    let origin = value
                        .filter(|v| !v.is_empty())
                        .map(normalize_my_domain)
                        .transpose()?;
                    match origin.as_deref() {
                        None | Some(PRODUCTION) => next.login_host = LoginHost::Production,
                        Some(SANDBOX) => next.login_host = LoginHost::Sandbox,
                        Some(_) => {
                            next.login_host = LoginHost::MyDomain;
                            next.my_domain_url = origin;
                        }
                    }
                }
                USER_TYPES if value.is_none_or(str::is_empty) => {}
                USER_TYPES => next.user_types = UserTypes::parse(value.unwrap_or_default())?,
                other if next.calls.set(other, value)? => {}
                other => {
                    let calls: Vec<&str> = next.calls.values().iter().map(|f| f.0).collect();
                    return Err(PluginError::InvalidInput(format!(
                        "unknown setting {other:?}; the Salesforce plugin takes {CONSUMER_KEY}, {CONSUMER_SECRET}, {LOGIN_HOST}, {MY_DOMAIN_URL}, {LOGIN_URL}, {}, {USER_TYPES}",
                        calls.join(", ")
                    )));
                }
            }
        }
        if let Some(key) = &next.consumer_key
            && (key.len() > 255 || key.chars().any(char::is_whitespace))
        {
            return Err(PluginError::InvalidInput(
                "the Consumer Key must be one word without spaces; copy it again from the app's \"Consumer Key and Secret\" page in Salesforce"
                    .into(),
            ));
        }
        if next.login_host == LoginHost::MyDomain && next.my_domain_url.is_none() {
            return Err(PluginError::InvalidInput(
                "choose Production or Sandbox, or enter the My Domain URL, e.g. https://yourcompany.my.salesforce.com"
                    .into(),
            ));
        }
        Ok(next)
    }

    /// The settings as the portal shows them: the secret masked.
    pub fn values(&self) -> Vec<SettingValue> {
        let mut values = vec![
            shown(CONSUMER_KEY, self.consumer_key.clone()),
            SettingValue {
                key: CONSUMER_SECRET.into(),
                value: None,
                is_set: self.consumer_secret.is_some(),
            },
            shown(LOGIN_HOST, Some(self.login_host.as_str().to_string())),
            shown(MY_DOMAIN_URL, self.my_domain_url.clone()),
        ];
        values.extend(
            self.calls
                .values()
                .into_iter()
                .map(|(key, value)| shown(key, Some(value.into()))),
        );
        values.push(shown(USER_TYPES, Some(self.user_types.as_str().into())));
        values
    }
}

fn shown(key: &str, value: Option<String>) -> SettingValue {
    SettingValue {
        key: key.into(),
        is_set: value.is_some(),
        value,
    }
}

/// A required setting's value: an empty one is refused, naming the setting
/// (`what`) and the `fix`, so a save never stores less than it had.
fn required(value: Option<&str>, what: &str, fix: &str) -> Result<String, PluginError> {
    nonempty(value).ok_or_else(|| {
        PluginError::InvalidInput(format!(
            "{what} is required and cannot be emptied; {fix}. Nothing was saved"
        ))
    })
}

fn nonempty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_string)
}

/// Accept what administrators paste (a bare host name, a Lightning URL with a
/// path) and reduce it to the https origin Salesforce logs in on.
pub fn normalize_my_domain(input: &str) -> Result<String, PluginError> {
    let fix = "enter your My Domain URL, e.g. https://yourcompany.my.salesforce.com (Salesforce Setup > My Domain)";
    let with_scheme = if input.contains("://") {
        input.to_string()
    } else {
        format!("https://{input}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| PluginError::InvalidInput(format!("{input:?} is not a URL ({e}); {fix}")))?;
    if url.scheme() != "https" {
        return Err(PluginError::InvalidInput(format!(
            "{input:?} does not use https; Salesforce logs in over https only, so {fix}"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(PluginError::InvalidInput(format!(
            "{input:?} contains a user name or password; {fix}"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| PluginError::InvalidInput(format!("{input:?} has no host name; {fix}")))?
        .to_ascii_lowercase();
    // A Lightning address (acme.lightning.force.com) is not a login host: its
    // My Domain is acme.my.salesforce.com.
    let host = match host.strip_suffix(".lightning.force.com") {
        Some(name) => format!("{name}.my.salesforce.com"),
        None => host,
    };
    Ok(match url.port() {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::input;

    #[test]
    fn my_domain_urls_are_reduced_to_the_login_origin() {
        let cases = [
            ("acme.my.salesforce.com", "https://acme.my.salesforce.com"),
            (
                "https://ACME.my.salesforce.com/",
                "https://acme.my.salesforce.com",
            ),
            (
                "https://acme--uat.sandbox.my.salesforce.com/home",
                "https://acme--uat.sandbox.my.salesforce.com",
            ),
            (
                "https://acme.lightning.force.com/lightning/page/home",
                "https://acme.my.salesforce.com",
            ),
            ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
        ];
        for (given, want) in cases {
            assert_eq!(
                normalize_my_domain(given).ok().as_deref(),
                Some(want),
                "{given}"
            );
        }
    }

    #[test]
    fn bad_my_domain_urls_name_the_fix() {
        for bad in [
            "http://acme.my.salesforce.com",
            "https://user:pw@acme.my.salesforce.com",
            "https://",
        ] {
            let err = normalize_my_domain(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("e.g. https://yourcompany.my.salesforce.com"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn an_absent_secret_keeps_the_stored_one() {
        let stored = Settings::default()
            .apply(&[input(CONSUMER_KEY, "key"), input(CONSUMER_SECRET, "s3cret")])
            .ok()
            .unwrap_or_default();
        let next = stored
            .apply(&[
                input(CONSUMER_KEY, "key2"),
                SettingInput {
                    key: CONSUMER_SECRET.into(),
                    value: None,
                },
            ])
            .ok()
            .unwrap_or_default();
        assert_eq!(next.consumer_key.as_deref(), Some("key2"));
        assert_eq!(next.consumer_secret.as_deref(), Some("s3cret"));
    }

    #[test]
    fn the_secret_is_masked_everywhere() {
        let settings = Settings {
            consumer_secret: Some("s3cret".into()),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
        let secret = settings
            .values()
            .into_iter()
            .find(|v| v.key == CONSUMER_SECRET);
        assert!(matches!(
            secret,
            Some(SettingValue {
                value: None,
                is_set: true,
                ..
            })
        ));
    }

    #[test]
    fn a_login_url_chooses_the_login_host() {
        let cases = [
            ("https://login.salesforce.com", LoginHost::Production, None),
            ("https://test.salesforce.com/", LoginHost::Sandbox, None),
            (
                "acme.my.salesforce.com",
                LoginHost::MyDomain,
                Some("https://acme.my.salesforce.com"),
            ),
        ];
        for (given, host, domain) in cases {
            let s = Settings::default().apply(&[input(LOGIN_URL, given)]);
            let s = s.ok().unwrap_or_default();
            assert_eq!(s.login_host, host, "{given}");
            assert_eq!(s.my_domain_url.as_deref(), domain, "{given}");
        }
        assert!(
            Settings::default()
                .apply(&[input(LOGIN_URL, "http://x")])
                .is_err()
        );
    }

    #[test]
    fn unknown_settings_and_login_hosts_are_refused() {
        assert!(
            Settings::default()
                .apply(&[input("colour", "red")])
                .is_err()
        );
        assert!(
            Settings::default()
                .apply(&[input(LOGIN_HOST, "staging")])
                .is_err()
        );
        assert!(
            Settings::default()
                .apply(&[input(LOGIN_HOST, "my-domain")])
                .is_err()
        );
        assert!(
            Settings::default()
                .apply(&[input(CONSUMER_KEY, "two words")])
                .is_err()
        );
    }
}
