//! The call settings: when the caller's record pops up, which calls the
//! journal logs, who owns their Tasks and what unknown callers become. Each
//! is a choice among fixed values, stored as its kebab-case name.

use serde::{Deserialize, Serialize};

use super::{
    LOG_INBOUND_ANSWERED, LOG_INBOUND_MISSED, LOG_INTERNAL, LOG_OUTBOUND_ANSWERED,
    LOG_OUTBOUND_UNANSWERED, LOG_TO_OPEN_CASE, LOG_VOICEMAIL, POPUP_ON, TASK_OWNER,
    UNKNOWN_INBOUND, UNKNOWN_OUTBOUND,
};
use crate::error::PluginError;

/// A choice setting's values, for parsing what the portal sends.
pub trait Choice: Copy {
    /// Every value with its label, in display order.
    const CHOICES: &'static [(&'static str, &'static str)];
    /// The stored value.
    fn as_str(self) -> &'static str;
    /// The variant stored as `value`.
    fn parse(value: &str) -> Option<Self>;
}

/// A call setting as the form lists it: key, stored value and choices.
pub type CallField = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Defines the choice settings' enums, one table for all of them: each is
/// stored as its kebab-case value, with a label per value for the portal;
/// `#[default]` marks the value a setting takes when none is chosen.
macro_rules! choices {
    ($(
        $(#[$doc:meta])*
        $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal : $label:literal),+ $(,)?
        }
    )+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        impl Choice for $name {
            const CHOICES: &'static [(&'static str, &'static str)] = $name::CHOICES;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn parse(value: &str) -> Option<Self> {
                $name::parse(value)
            }
        }

        impl $name {
            /// Every value with its label, in display order.
            pub const CHOICES: &'static [(&'static str, &'static str)] = &[$(($value, $label)),+];

            /// The stored value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }

            /// The variant stored as `value`.
            pub fn parse(value: &str) -> Option<Self> {
                match value.trim() { $($value => Some($name::$variant),)+ _ => None }
            }
        }
    )+};
}

choices! {
    /// When a call pops the caller's record up for the agent.
    PopupOn {
        /// When the extension rings.
        #[default] Ringing = "ringing": "When the extension rings",
        /// When the call is answered.
        Answered = "answered": "When the call is answered",
        /// When the call ends.
        Ended = "ended": "When the call ends",
        /// Never.
        Never = "never": "Never",
    }

    /// Whether and how a kind of call is logged as a Task. Settings stored
    /// before 0.5.0 say "log", read as `Completed`.
    Rule {
        /// Log it as a completed Task.
        #[default] #[serde(alias = "log")] Completed = "completed": "Log as a completed Task",
        /// Log it as an open Task (a follow-up for its owner).
        Open = "open": "Log as an open Task (to follow up)",
        /// Do not log it.
        Skip = "skip": "Do not log",
    }

    /// Whether a call's Task is related to the caller's most recent open Case.
    OpenCase {
        /// No: the Task is related to the caller's Account, if any.
        #[default] No = "no": "No: relate the Task to the caller's Account",
        /// Yes, when the caller has an open Case.
        Yes = "yes": "Yes: relate the Task to the caller's most recent open Case",
    }

    /// Who owns a call's Task.
    TaskOwner {
        /// The extension's associated user; without one, the connected user.
        #[default] Associated = "associated": "The extension's associated user (else the connected user)",
        /// Always the connected (authorizing) user.
        Connected = "connected": "Always the connected Salesforce user",
        /// The associated user; calls of extensions without one are not logged.
        AssociatedOnly = "associated-only": "The associated user; skip calls of extensions without one",
    }

    /// What a caller that matches no record becomes.
    UnknownCaller {
        /// A new Contact.
        #[default] Contact = "contact": "Create a Contact",
        /// A new Lead.
        Lead = "lead": "Create a Lead",
        /// Nothing: the Task is logged without a name.
        Nothing = "nothing": "Create nothing",
    }
}

/// The call settings (pop-up, call journal, unknown callers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallSettings {
    /// When the record pops up.
    pub popup_on: PopupOn,
    /// Inbound, answered.
    pub log_inbound_answered: Rule,
    /// Inbound, not answered.
    pub log_inbound_missed: Rule,
    /// Outbound, answered.
    pub log_outbound_answered: Rule,
    /// Outbound, not answered.
    pub log_outbound_unanswered: Rule,
    /// Between two extensions.
    pub log_internal: Rule,
    /// Ended in a voicemail, whatever the direction.
    pub log_voicemail: Rule,
    /// Relate the Task to the caller's most recent open Case.
    pub log_to_open_case: OpenCase,
    /// The Task's owner.
    pub task_owner: TaskOwner,
    /// Unknown inbound callers.
    pub unknown_inbound: UnknownCaller,
    /// Unknown numbers called outbound.
    pub unknown_outbound: UnknownCaller,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            popup_on: PopupOn::Ringing,
            log_inbound_answered: Rule::Completed,
            log_inbound_missed: Rule::Completed,
            log_outbound_answered: Rule::Completed,
            log_outbound_unanswered: Rule::Completed,
            log_internal: Rule::Skip,
            log_voicemail: Rule::Completed,
            log_to_open_case: OpenCase::No,
            task_owner: TaskOwner::Associated,
            unknown_inbound: UnknownCaller::Contact,
            unknown_outbound: UnknownCaller::Nothing,
        }
    }
}

impl CallSettings {
    /// Set the call setting `key` from the portal's `value` (absent or
    /// empty: its default); `Ok(false)` when `key` is no call setting.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<bool, PluginError> {
        let d = CallSettings::default();
        // "log" is what the portal and the CLI said before Open existed.
        let value = value.map(|v| if v.trim() == "log" { "completed" } else { v });
        match key {
            POPUP_ON => self.popup_on = choose(key, value, d.popup_on)?,
            LOG_INBOUND_ANSWERED => {
                self.log_inbound_answered = choose(key, value, d.log_inbound_answered)?
            }
            LOG_INBOUND_MISSED => {
                self.log_inbound_missed = choose(key, value, d.log_inbound_missed)?
            }
            LOG_OUTBOUND_ANSWERED => {
                self.log_outbound_answered = choose(key, value, d.log_outbound_answered)?
            }
            LOG_OUTBOUND_UNANSWERED => {
                self.log_outbound_unanswered = choose(key, value, d.log_outbound_unanswered)?
            }
            LOG_INTERNAL => self.log_internal = choose(key, value, d.log_internal)?,
            LOG_VOICEMAIL => self.log_voicemail = choose(key, value, d.log_voicemail)?,
            LOG_TO_OPEN_CASE => self.log_to_open_case = choose(key, value, d.log_to_open_case)?,
            TASK_OWNER => self.task_owner = choose(key, value, d.task_owner)?,
            UNKNOWN_INBOUND => self.unknown_inbound = choose(key, value, d.unknown_inbound)?,
            UNKNOWN_OUTBOUND => self.unknown_outbound = choose(key, value, d.unknown_outbound)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Every call setting's key, stored value and choices, in the form's
    /// order: the one list the form and the shown values are built from.
    pub fn fields(&self) -> [CallField; 11] {
        [
            field(POPUP_ON, self.popup_on),
            field(LOG_INBOUND_ANSWERED, self.log_inbound_answered),
            field(LOG_INBOUND_MISSED, self.log_inbound_missed),
            field(LOG_OUTBOUND_ANSWERED, self.log_outbound_answered),
            field(LOG_OUTBOUND_UNANSWERED, self.log_outbound_unanswered),
            field(LOG_INTERNAL, self.log_internal),
            field(LOG_VOICEMAIL, self.log_voicemail),
            field(TASK_OWNER, self.task_owner),
            field(UNKNOWN_INBOUND, self.unknown_inbound),
            field(UNKNOWN_OUTBOUND, self.unknown_outbound),
            field(LOG_TO_OPEN_CASE, self.log_to_open_case),
        ]
    }

    /// Every call setting's key and stored value, in the form's order.
    pub fn values(&self) -> [(&'static str, &'static str); 11] {
        self.fields().map(|(key, value, _)| (key, value))
    }
}

/// The call setting `key` holding `value`, with its type's choices.
fn field<T: Choice>(key: &'static str, value: T) -> CallField {
    (key, value.as_str(), T::CHOICES)
}

/// The choice `value` names for setting `key`; absent or empty: `default`.
fn choose<T: Choice>(key: &str, value: Option<&str>, default: T) -> Result<T, PluginError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => T::parse(v).ok_or_else(|| {
            let values: Vec<&str> = T::CHOICES.iter().map(|(v, _)| *v).collect();
            PluginError::InvalidInput(format!(
                "{key} {v:?} is unknown; choose one of {}",
                values.join(", ")
            ))
        }),
    }
}
