//! The typed plugin handle: one method per export the host calls, with the
//! newest contract types in and out, so callers never see a wasmtime store
//! or write a closure over one (as Zed's `Extension` trait hides its store).
//!
//! ```no_run
//! # use pbx_host::runtime::{CallError, Runtime, wit::{CallEvent, SettingInput}};
//! # async fn example(runtime: &Runtime, values: &[SettingInput], event: &CallEvent)
//! # -> Result<(), CallError> {
//! let status = runtime.plugin("salesforce").save_settings(values).await?;
//! let (result, timing) = runtime.plugin("salesforce").on_call_event(event).timed().await;
//! # Ok(()) }
//! ```
//!
//! A method returns a [`PluginCall`]: `.await` it for the answer, or
//! `.timed().await` to also learn where the call's time went. A plugin that
//! answers no gives [`CallError::Refused`]; a trap, the deadline or the
//! memory cap give the other variants.

use std::future::IntoFuture;

use futures::future::BoxFuture;

use super::Runtime;
use super::call::{CallError, CallTiming, ExportFn};
use super::wit::{
    AfterCallWork, Association, Authorization, CallEvent, Caller, CrmRecord, CrmUser, EventOutcome,
    Info, Proposal, RecordChoice, SettingInput, SettingValue, SignInError, SignInRequest, Status,
    SyncProgress, UserList,
};

impl Runtime {
    /// The active version of plugin `id`, to call its exports.
    pub fn plugin<'r>(&'r self, id: &'r str) -> PluginHandle<'r> {
        PluginHandle { runtime: self, id }
    }
}

/// A plugin's exports, called on its active version.
#[derive(Clone, Copy)]
pub struct PluginHandle<'r> {
    runtime: &'r Runtime,
    id: &'r str,
}

/// One call to an export, made when awaited.
#[must_use = "a plugin call does nothing until it is awaited"]
pub struct PluginCall<'r, T> {
    runtime: &'r Runtime,
    id: &'r str,
    export: ExportFn<T>,
}

impl<'r, T: Send + 'r> PluginCall<'r, T> {
    /// Make the call, and tell where its time went (the plugin's outbound
    /// HTTP, CPU) and which version served it.
    pub async fn timed(self) -> (Result<T, CallError>, CallTiming) {
        self.runtime.call_timed(self.id, self.export).await
    }
}

impl<'r, T: Send + 'r> IntoFuture for PluginCall<'r, T> {
    type Output = Result<T, CallError>;
    type IntoFuture = BoxFuture<'r, Result<T, CallError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.timed().await.0 })
    }
}

impl<'r> PluginHandle<'r> {
    /// The plugin id.
    pub fn id(&self) -> &'r str {
        self.id
    }

    fn call<T>(&self, export: ExportFn<T>) -> PluginCall<'r, T> {
        PluginCall {
            runtime: self.runtime,
            id: self.id,
            export,
        }
    }

    /// Make sure an instance of the active version is ready (created now
    /// when none is idle), calling no export: takes instantiation off the
    /// next call's path, and measures it.
    pub fn prewarm(&self) -> PluginCall<'r, ()> {
        self.call(Box::new(|_, _| Box::pin(async { Ok(Ok(())) })))
    }

    /// `integration.describe`: the CRM's name and the settings form.
    pub fn describe(&self) -> PluginCall<'r, Info> {
        self.call(Box::new(|p, s| {
            Box::pin(async move { p.describe(s).await.map(Ok) })
        }))
    }

    /// `integration.get-settings`: the stored settings, secrets masked.
    pub fn settings(&self) -> PluginCall<'r, Vec<SettingValue>> {
        self.call(Box::new(|p, s| p.get_settings(s)))
    }

    /// `integration.save-settings`.
    pub fn save_settings(&self, values: &[SettingInput]) -> PluginCall<'r, Status> {
        let values = values.to_vec();
        self.call(Box::new(move |p, s| p.save_settings(s, values)))
    }

    /// `integration.begin-authorization`.
    pub fn begin_authorization(&self, callback_url: &str) -> PluginCall<'r, Authorization> {
        let callback_url = callback_url.to_string();
        self.call(Box::new(move |p, s| p.begin_authorization(s, callback_url)))
    }

    /// `integration.complete-authorization` with the callback's raw query.
    pub fn complete_authorization(
        &self,
        callback_url: &str,
        query: &str,
    ) -> PluginCall<'r, Status> {
        let (callback_url, query) = (callback_url.to_string(), query.to_string());
        self.call(Box::new(move |p, s| {
            p.complete_authorization(s, callback_url, query)
        }))
    }

    /// `integration.get-status`.
    pub fn status(&self) -> PluginCall<'r, Status> {
        self.call(Box::new(|p, s| {
            Box::pin(async move { p.get_status(s).await.map(Ok) })
        }))
    }

    /// `integration.disconnect`.
    pub fn disconnect(&self) -> PluginCall<'r, Status> {
        self.call(Box::new(|p, s| p.disconnect(s)))
    }

    /// `integration.sync-users`: one step, from `cursor`.
    pub fn sync_users(&self, cursor: Option<&str>) -> PluginCall<'r, SyncProgress> {
        let cursor = cursor.map(str::to_string);
        self.call(Box::new(move |p, s| p.sync_users(s, cursor)))
    }

    /// `integration.list-users`.
    pub fn list_users(&self) -> PluginCall<'r, UserList> {
        self.call(Box::new(|p, s| p.list_users(s)))
    }

    /// `integration.propose-associations`.
    pub fn propose_associations(&self) -> PluginCall<'r, Proposal> {
        self.call(Box::new(|p, s| p.propose_associations(s)))
    }

    /// `integration.save-associations`.
    pub fn save_associations(
        &self,
        expected_version: u64,
        associations: &[Association],
    ) -> PluginCall<'r, u64> {
        let associations = associations.to_vec();
        self.call(Box::new(move |p, s| {
            p.save_associations(s, expected_version, associations)
        }))
    }

    /// `integration.user-for-extension`.
    pub fn user_for_extension(&self, extension: &str) -> PluginCall<'r, Option<CrmUser>> {
        let extension = extension.to_string();
        self.call(Box::new(move |p, s| p.user_for_extension(s, extension)))
    }

    /// `integration.extension-for-user`.
    pub fn extension_for_user(&self, user_id: &str) -> PluginCall<'r, Option<String>> {
        let user_id = user_id.to_string();
        self.call(Box::new(move |p, s| p.extension_for_user(s, user_id)))
    }

    /// `user-sign-in.begin` (0.3.0 on): a person's sign-in to the CRM, for
    /// `callback_url` (the same callback as the administrator's
    /// authorization). Older plugins give [`CallError::Unsupported`].
    pub fn begin_user_sign_in(&self, callback_url: &str) -> PluginCall<'r, SignInRequest> {
        let callback_url = callback_url.to_string();
        self.call(Box::new(move |p, s| p.begin_user_sign_in(s, callback_url)))
    }

    /// `user-sign-in.complete` (0.3.0 on) with the callback's raw query:
    /// the CRM user id, or why the sign-in identified no one. Older
    /// plugins give [`CallError::Unsupported`].
    pub fn complete_user_sign_in(
        &self,
        callback_url: &str,
        query: &str,
    ) -> PluginCall<'r, Result<String, SignInError>> {
        let (callback_url, query) = (callback_url.to_string(), query.to_string());
        self.call(Box::new(move |p, s| {
            p.complete_user_sign_in(s, callback_url, query)
        }))
    }

    /// `calls.lookup-caller`.
    pub fn lookup_caller(&self, number: &str, default_region: &str) -> PluginCall<'r, Caller> {
        let (number, region) = (number.to_string(), default_region.to_string());
        self.call(Box::new(move |p, s| p.lookup_caller(s, number, region)))
    }

    /// `calls.on-call-event`: what the plugin did with the event (one
    /// `Taken` outcome for plugins before pbx:crm 0.4.0).
    pub fn on_call_event(&self, event: &CallEvent) -> PluginCall<'r, Vec<EventOutcome>> {
        let event = event.clone();
        self.call(Box::new(move |p, s| p.on_call_event(s, event)))
    }

    /// `calls.run-pending`: deliver waiting work; how much still waits.
    pub fn run_pending(&self) -> PluginCall<'r, u32> {
        self.call(Box::new(|p, s| p.run_pending(s)))
    }

    /// `lifecycle.migrate(from-version)` (0.2.0 on, optional): `None` when
    /// the plugin does not export it. Activation runs it on the version
    /// about to become active; this runs it on the active one.
    pub fn migrate(&self, from_version: &str) -> PluginCall<'r, Option<()>> {
        self.call(migrate_export(from_version))
    }

    /// `calls.authorize-dial`: the number to dial, in E.164.
    pub fn authorize_dial(
        &self,
        extension: &str,
        number: &str,
        default_region: &str,
    ) -> PluginCall<'r, String> {
        let (extension, number, region) = (
            extension.to_string(),
            number.to_string(),
            default_region.to_string(),
        );
        self.call(Box::new(move |p, s| {
            p.authorize_dial(s, extension, number, region)
        }))
    }

    /// `calls.save-after-call-work` (0.5.0 on): the agent's notes and
    /// disposition added to what the plugin logged for the call.
    pub fn save_after_call_work(&self, work: &AfterCallWork) -> PluginCall<'r, Vec<EventOutcome>> {
        let work = work.clone();
        self.call(Box::new(move |p, s| p.save_after_call_work(s, work)))
    }

    /// `calls.choose-record` (0.5.0 on): the agent's pick among the records
    /// offered for a call; the answer is the record to open.
    pub fn choose_record(&self, choice: &RecordChoice) -> PluginCall<'r, CrmRecord> {
        let choice = choice.clone();
        self.call(Box::new(move |p, s| p.choose_record(s, choice)))
    }
}

/// The `lifecycle.migrate` call: `None` when the plugin does not export it,
/// a refusal when its migration fails.
pub(super) fn migrate_export(from_version: &str) -> ExportFn<Option<()>> {
    let from = from_version.to_string();
    Box::new(move |p, s| {
        Box::pin(async move {
            Ok(match p.migrate(s, from).await? {
                None => Ok(None),
                Some(answer) => answer.map(Some),
            })
        })
    })
}
