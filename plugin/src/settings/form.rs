//! The settings form the portal shows: the plugin's name and every field
//! with its label, help, kind, choices and default (the connection, the call
//! settings, and which Salesforce users are listed).

use super::{CONSUMER_KEY, CONSUMER_SECRET, CallSettings, LOGIN_HOST, MY_DOMAIN_URL, USER_TYPES};
use crate::bindings::exports::pbx::crm::integration::{
    Info, SettingChoice, SettingField, SettingKind,
};

/// The call settings' labels and help, in the order of
/// [`CallSettings::fields`], which gives each its key, choices and default.
const CALL_TEXT: [(&str, &str); 11] = [
    (
        "Pop-up of the caller's record",
        "When the matched Salesforce record opens for the agent of the extension (only for extensions associated with a Salesforce user).",
    ),
    (
        "Answered inbound calls",
        "How answered inbound calls are logged: a completed Task, an open Task to follow up, or none.",
    ),
    (
        "Missed inbound calls",
        "How inbound calls nobody answered are logged.",
    ),
    (
        "Answered outbound calls",
        "How answered outbound calls are logged.",
    ),
    (
        "Unanswered outbound calls",
        "How outbound calls nobody answered are logged.",
    ),
    (
        "Internal calls",
        "How calls between two extensions are logged.",
    ),
    (
        "Voicemails",
        "How calls that ended in a voicemail are logged, whatever their direction (the PBX's disposition \"voicemail\").",
    ),
    ("Owner of call Tasks", "Who a call's Task is assigned to."),
    (
        "Unknown inbound callers",
        "What a logged inbound call from a number no Contact, Lead or Account has creates; the Task is logged against it.",
    ),
    (
        "Unknown numbers called",
        "What a logged outbound call to a number no Contact, Lead or Account has creates; the Task is logged against it.",
    ),
    (
        "Log to the caller's open Case",
        "Relate a call's Task (Related To) to the caller's most recent open Case instead of their Account, when they have one.",
    ),
];

/// Where users log in to Salesforce: the login host's values and labels.
const LOGIN_HOSTS: &[(&str, &str)] = &[
    ("production", "Production (login.salesforce.com)"),
    ("sandbox", "Sandbox (test.salesforce.com)"),
    ("my-domain", "My Domain"),
];

/// Which users the sync lists: the values and labels.
const USER_TYPE_CHOICES: &[(&str, &str)] = &[
    ("standard", "Users who can have a phone (Standard users)"),
    (
        "all",
        "Every active user (also Chatter, community and automated users)",
    ),
];

/// The plugin's name and settings form.
pub fn describe() -> Info {
    let field = |key: &str, label: &str, kind, required, help: &str| SettingField {
        key: key.into(),
        label: label.into(),
        kind,
        required,
        help: help.into(),
        choices: Vec::new(),
        default_value: None,
    };
    // A choice among `choices`, `default` chosen until the administrator
    // picks another.
    let choice = |key, label, required, help, choices: &[(&str, &str)], default: &str| {
        let choices = choices
            .iter()
            .map(|(value, label)| SettingChoice {
                value: (*value).into(),
                label: (*label).into(),
            })
            .collect();
        SettingField {
            choices,
            default_value: Some(default.into()),
            ..field(key, label, SettingKind::Choice, required, help)
        }
    };
    let login = choice(
        LOGIN_HOST,
        "Login host",
        true,
        "Where your users log in to Salesforce.",
        LOGIN_HOSTS,
        "production",
    );
    let calls = CallSettings::default()
        .fields()
        .into_iter()
        .zip(CALL_TEXT)
        .map(|((key, default, choices), (label, help))| {
            choice(key, label, false, help, choices, default)
        });
    let mut settings = vec![
        field(
            CONSUMER_KEY,
            "Consumer Key",
            SettingKind::Text,
            true,
            "From your Connected App or External Client App: Manage Consumer Details.",
        ),
        field(
            CONSUMER_SECRET,
            "Consumer Secret",
            SettingKind::Secret,
            true,
            "Shown next to the Consumer Key; stored encrypted and never shown again.",
        ),
        login,
        field(
            MY_DOMAIN_URL,
            "My Domain URL",
            SettingKind::Url,
            false,
            "Only for My Domain, e.g. https://yourcompany.my.salesforce.com or https://yourcompany--uat.sandbox.my.salesforce.com.",
        ),
    ];
    settings.extend(calls);
    settings.push(choice(
        USER_TYPES,
        "Salesforce users listed",
        false,
        "Which users the users page lists for associations. Changing it makes the next refresh re-read every user.",
        USER_TYPE_CHOICES,
        "standard",
    ));
    Info {
        crm_name: "Salesforce".into(),
        settings,
    }
}
