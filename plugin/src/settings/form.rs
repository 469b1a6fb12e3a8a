//! The settings form the portal shows: the plugin's name and every field
//! with its label, help, kind, choices and default.

use super::call_settings::{PopupOn, Rule, TaskOwner, UnknownCaller};
use super::{
    CONSUMER_KEY, CONSUMER_SECRET, CallSettings, LOG_INBOUND_ANSWERED, LOG_INBOUND_MISSED,
    LOG_INTERNAL, LOG_OUTBOUND_ANSWERED, LOG_OUTBOUND_UNANSWERED, LOGIN_HOST, MY_DOMAIN_URL,
    POPUP_ON, TASK_OWNER, UNKNOWN_INBOUND, UNKNOWN_OUTBOUND,
};
use crate::bindings::exports::pbx::crm::integration::{
    Info, SettingChoice, SettingField, SettingKind,
};

/// The call settings' fields: key, label, help, choices and default.
type CallField = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

pub(super) fn call_fields() -> [CallField; 9] {
    let d = CallSettings::default();
    [
        (
            POPUP_ON,
            "Pop-up of the caller's record",
            "When the matched Salesforce record opens for the agent of the extension (only for extensions associated with a Salesforce user).",
            PopupOn::CHOICES,
            d.popup_on.as_str(),
        ),
        (
            LOG_INBOUND_ANSWERED,
            "Answered inbound calls",
            "Log answered inbound calls as Tasks.",
            Rule::CHOICES,
            d.log_inbound_answered.as_str(),
        ),
        (
            LOG_INBOUND_MISSED,
            "Missed inbound calls",
            "Log inbound calls nobody answered as Tasks.",
            Rule::CHOICES,
            d.log_inbound_missed.as_str(),
        ),
        (
            LOG_OUTBOUND_ANSWERED,
            "Answered outbound calls",
            "Log answered outbound calls as Tasks.",
            Rule::CHOICES,
            d.log_outbound_answered.as_str(),
        ),
        (
            LOG_OUTBOUND_UNANSWERED,
            "Unanswered outbound calls",
            "Log outbound calls nobody answered as Tasks.",
            Rule::CHOICES,
            d.log_outbound_unanswered.as_str(),
        ),
        (
            LOG_INTERNAL,
            "Internal calls",
            "Log calls between two extensions as Tasks.",
            Rule::CHOICES,
            d.log_internal.as_str(),
        ),
        (
            TASK_OWNER,
            "Owner of call Tasks",
            "Who a call's Task is assigned to.",
            TaskOwner::CHOICES,
            d.task_owner.as_str(),
        ),
        (
            UNKNOWN_INBOUND,
            "Unknown inbound callers",
            "What a logged inbound call from a number no Contact, Lead or Account has creates; the Task is logged against it.",
            UnknownCaller::CHOICES,
            d.unknown_inbound.as_str(),
        ),
        (
            UNKNOWN_OUTBOUND,
            "Unknown numbers called",
            "What a logged outbound call to a number no Contact, Lead or Account has creates; the Task is logged against it.",
            UnknownCaller::CHOICES,
            d.unknown_outbound.as_str(),
        ),
    ]
}

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
    let mut login = field(
        LOGIN_HOST,
        "Login host",
        SettingKind::Choice,
        true,
        "Where your users log in to Salesforce.",
    );
    login.choices = [
        ("production", "Production (login.salesforce.com)"),
        ("sandbox", "Sandbox (test.salesforce.com)"),
        ("my-domain", "My Domain"),
    ]
    .into_iter()
    .map(|(value, label)| SettingChoice {
        value: value.into(),
        label: label.into(),
    })
    .collect();
    login.default_value = Some("production".into());
    let calls = call_fields()
        .into_iter()
        .map(|(key, label, help, choices, default)| {
            let mut f = field(key, label, SettingKind::Choice, false, help);
            f.choices = choices
                .iter()
                .map(|(value, label)| SettingChoice {
                    value: (*value).into(),
                    label: (*label).into(),
                })
                .collect();
            f.default_value = Some(default.into());
            f
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
    Info {
        crm_name: "Salesforce".into(),
        settings,
    }
}
