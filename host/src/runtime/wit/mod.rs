//! The `pbx:crm` contract versions this host serves, one file each (as
//! Zed's extension host keeps `since_vX_Y_Z.rs`): a version's file holds its
//! `bindgen!`, its import shims (its types converted, then the host's one
//! implementation in `crate::capabilities` called), the calls of its
//! exports (answers converted to the newest types), and its [`Version`]
//! entry. The rest of the host speaks only the newest types, re-exported
//! here, and holds plugins as [`Exports`] trait objects.
//!
//! Adding a version: a new file `vX_Y_Z.rs` (copy the newest, point its
//! `bindgen!` at `wit/vX.Y.Z`, add what the version adds), then move the
//! three lines below: its `mod`, the `latest` pointer, and its entry in
//! [`VERSIONS`]. No other version's file changes: each converts to the
//! host's own capability types and to whatever `latest` is.

pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;
pub mod v0_4_0;
pub mod v0_5_0;

/// The newest version: the types the host speaks.
pub use v0_5_0 as latest;

/// Every served version, oldest first.
const VERSIONS: &[&dyn Version] = &[
    &v0_1_0::VERSION,
    &v0_2_0::VERSION,
    &v0_3_0::VERSION,
    &v0_4_0::VERSION,
    &v0_5_0::VERSION,
];

use std::any::Any;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::state::PluginState;
pub use latest::exports::pbx::crm::calls::{
    AfterCallWork, CallEvent, Caller, Direction, EventAction, EventOutcome, Phase,
};
pub use latest::exports::pbx::crm::integration::{
    ApiUsage, Association, Authorization, CrmUser, Info, Proposal, SettingField, SettingInput,
    SettingKind, SettingValue, Status, SyncProgress, UserList,
};
pub use latest::exports::pbx::crm::user_sign_in::{SignInError, SignInRequest};
pub use latest::pbx::crm::types::{CrmRecord, Error as PluginError, ErrorKind};

/// The agent's pick among the records offered for a call (0.5.0's
/// `calls.choose-record` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChoice {
    /// The PBX's call id the records were offered for.
    pub call_id: String,
    /// The agent's extension.
    pub extension: String,
    /// The caller's number, as the PBX has it.
    pub number: String,
    /// The PBX's default region for the number.
    pub default_region: String,
    /// The record the agent picked.
    pub record_id: String,
}

/// One served contract version.
pub trait Version: Sync {
    /// Its version, e.g. `0.2.0`.
    fn api(&self) -> &'static str;
    /// Add its imports to `linker` (their names carry the version, so every
    /// version's sit side by side).
    fn add_to_linker(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()>;
    /// A linked component built against this version, ready to instantiate.
    /// Fails when the component lacks an export of the version's world.
    fn prepare(&self, pre: InstancePre<PluginState>) -> wasmtime::Result<Box<dyn Prepared>>;
}

/// A linked component, by contract version.
pub trait Prepared: Send + Sync {
    /// Whether the component exports `lifecycle.migrate` (0.2.0 on).
    fn exports_migrate(&self) -> bool {
        false
    }
    /// A new instance in `store`.
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
    ) -> BoxFuture<'a, wasmtime::Result<Box<dyn Exports>>>;
}

/// The store of the instance a call runs in.
pub type Ctx<'a> = &'a mut Store<PluginState>;
/// What a plugin's export answered, in the newest types.
pub type Answer<'a, T> = BoxFuture<'a, wasmtime::Result<Result<T, PluginError>>>;
/// An export that cannot fail on the plugin's side.
pub type Plain<'a, T> = BoxFuture<'a, wasmtime::Result<T>>;

/// One plugin instance of any served version: every export the host calls,
/// with arguments and answers in the newest types. Implemented for each
/// version's instance by [`impl_exports!`].
#[allow(missing_docs)]
pub trait Exports: Send + Sync {
    fn describe<'a>(&'a self, store: Ctx<'a>) -> Plain<'a, Info>;
    fn get_settings<'a>(&'a self, store: Ctx<'a>) -> Answer<'a, Vec<SettingValue>>;
    fn save_settings<'a>(&'a self, store: Ctx<'a>, values: Vec<SettingInput>)
    -> Answer<'a, Status>;
    fn begin_authorization<'a>(&'a self, store: Ctx<'a>, url: String) -> Answer<'a, Authorization>;
    fn complete_authorization<'a>(
        &'a self,
        store: Ctx<'a>,
        url: String,
        query: String,
    ) -> Answer<'a, Status>;
    fn get_status<'a>(&'a self, store: Ctx<'a>) -> Plain<'a, Status>;
    fn disconnect<'a>(&'a self, store: Ctx<'a>) -> Answer<'a, Status>;
    fn sync_users<'a>(&'a self, store: Ctx<'a>, cursor: Option<String>)
    -> Answer<'a, SyncProgress>;
    fn list_users<'a>(&'a self, store: Ctx<'a>) -> Answer<'a, UserList>;
    fn propose_associations<'a>(&'a self, store: Ctx<'a>) -> Answer<'a, Proposal>;
    fn save_associations<'a>(
        &'a self,
        store: Ctx<'a>,
        version: u64,
        set: Vec<Association>,
    ) -> Answer<'a, u64>;
    fn user_for_extension<'a>(&'a self, store: Ctx<'a>, ext: String)
    -> Answer<'a, Option<CrmUser>>;
    fn extension_for_user<'a>(&'a self, store: Ctx<'a>, id: String) -> Answer<'a, Option<String>>;
    fn lookup_caller<'a>(
        &'a self,
        store: Ctx<'a>,
        number: String,
        region: String,
    ) -> Answer<'a, Caller>;
    /// What the plugin did with the event (0.4.0 on); before 0.4.0 one
    /// `taken` outcome without detail.
    fn on_call_event<'a>(
        &'a self,
        store: Ctx<'a>,
        event: CallEvent,
    ) -> Answer<'a, Vec<EventOutcome>>;
    fn run_pending<'a>(&'a self, store: Ctx<'a>) -> Answer<'a, u32>;
    fn authorize_dial<'a>(
        &'a self,
        store: Ctx<'a>,
        ext: String,
        number: String,
        region: String,
    ) -> Answer<'a, String>;
    /// `lifecycle.migrate` (0.2.0 on, optional): `None` when the component
    /// does not export it, so the caller can tell "nothing to migrate" from
    /// a result.
    fn migrate<'a>(
        &'a self,
        _: Ctx<'a>,
        _from: String,
    ) -> Plain<'a, Option<Result<(), PluginError>>> {
        Box::pin(async { Ok(None) })
    }
    /// `user-sign-in.begin` (0.3.0 on): older versions answer
    /// [`Unsupported`].
    fn begin_user_sign_in<'a>(
        &'a self,
        _: Ctx<'a>,
        _callback_url: String,
    ) -> Answer<'a, SignInRequest> {
        unsupported(AGENT_SIGN_IN)
    }
    /// `user-sign-in.complete` (0.3.0 on): the plugin's answer, whatever it
    /// is, inside; older versions answer [`Unsupported`].
    fn complete_user_sign_in<'a>(
        &'a self,
        _: Ctx<'a>,
        _callback_url: String,
        _query: String,
    ) -> Answer<'a, Result<String, SignInError>> {
        unsupported(AGENT_SIGN_IN)
    }
    /// `calls.save-after-call-work` (0.5.0 on): older versions answer
    /// [`Unsupported`].
    fn save_after_call_work<'a>(
        &'a self,
        _: Ctx<'a>,
        _work: AfterCallWork,
    ) -> Answer<'a, Vec<EventOutcome>> {
        unsupported("after-call work")
    }
    /// `calls.choose-record` (0.5.0 on): older versions answer
    /// [`Unsupported`] (they never offer records either).
    fn choose_record<'a>(&'a self, _: Ctx<'a>, _choice: RecordChoice) -> Answer<'a, CrmRecord> {
        unsupported("record choice")
    }
}

/// What `user-sign-in` is called where it is missing.
const AGENT_SIGN_IN: &str = "agent sign-in";

/// A plugin's contract version lacks an export the host called (the
/// [`Exports`] defaults); the runtime turns it into
/// `CallError::Unsupported`, naming the plugin and its version.
#[derive(Debug, thiserror::Error)]
#[error("this pbx:crm version has no {what}")]
pub struct Unsupported {
    /// What is missing, e.g. "agent sign-in".
    pub what: &'static str,
}

fn unsupported<'a, T: Send + 'a>(what: &'static str) -> Answer<'a, T> {
    Box::pin(async move { Err(wasmtime::Error::new(Unsupported { what })) })
}

/// The served versions, e.g. `["0.1.0", "0.2.0"]`.
pub fn supported() -> impl Iterator<Item = &'static str> {
    VERSIONS.iter().map(|v| v.api())
}

/// Adds the imports of every served version to `linker`.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    VERSIONS.iter().try_for_each(|v| v.add_to_linker(linker))
}

/// The prepared component of a plugin built against `pbx:crm@{api}` (as
/// `runtime::inspect` found it).
pub fn prepare(api: &str, pre: InstancePre<PluginState>) -> wasmtime::Result<Box<dyn Prepared>> {
    match VERSIONS.iter().find(|v| v.api() == api) {
        Some(version) => version.prepare(pre),
        // Inspection refuses these first; this keeps the two in step.
        None => Err(wasmtime::Error::msg(format!(
            "pbx:crm@{api} is not served by this host"
        ))),
    }
}

/// `value` as the same-shaped type of another contract version. The export
/// types of every version are the same shapes and derive serde, so the
/// conversion is a serde round trip instead of a hand-written `From` per
/// type; for the newest version's own types it is no conversion at all.
pub(crate) fn convert<A, B>(value: A) -> wasmtime::Result<B>
where
    A: Serialize + 'static,
    B: DeserializeOwned + 'static,
{
    let mut slot = Some(value);
    if let Some(same) = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
    {
        return Ok(same);
    }
    let value = slot.ok_or_else(|| wasmtime::Error::msg("a value was lost in conversion"))?;
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            // Only a host bug gets here: the shapes are the same by contract.
            wasmtime::Error::msg(format!("cannot convert between pbx:crm versions: {e}"))
        })
}

/// What `on-call-event` answers, as the newest version's outcomes: before
/// 0.4.0 it answers nothing, which says only that the plugin took the event.
pub(crate) trait IntoOutcomes {
    fn into_outcomes(self) -> Vec<EventOutcome>;
}

impl IntoOutcomes for () {
    fn into_outcomes(self) -> Vec<EventOutcome> {
        vec![EventOutcome {
            action: EventAction::Taken,
            detail: String::new(),
        }]
    }
}

impl IntoOutcomes for Vec<EventOutcome> {
    fn into_outcomes(self) -> Vec<EventOutcome> {
        self
    }
}

/// An `on-call-event` answer of any version in the newest types.
pub(crate) fn outcomes<T, E>(
    answer: Result<T, E>,
) -> wasmtime::Result<Result<Vec<EventOutcome>, PluginError>>
where
    T: IntoOutcomes,
    E: Serialize + 'static,
{
    match answer {
        Ok(done) => Ok(Ok(done.into_outcomes())),
        Err(e) => Ok(Err(convert(e)?)),
    }
}

/// `event` in a version's own type, or, for an event that version has no
/// phase for (`recording-ready` before 0.5.0), the outcome saying the
/// plugin was not asked.
pub(crate) fn event_for_version<T>(
    event: CallEvent,
) -> wasmtime::Result<Result<T, Vec<EventOutcome>>>
where
    T: DeserializeOwned + 'static,
{
    let newest = std::any::TypeId::of::<T>() == std::any::TypeId::of::<CallEvent>();
    if event.phase == Phase::RecordingReady && !newest {
        return Ok(Err(vec![EventOutcome {
            action: EventAction::Skipped,
            detail: "this plugin's pbx:crm version has no recording-ready events".into(),
        }]));
    }
    convert(event).map(Ok)
}

/// Implements [`Exports`] for one version's instance type. Every version's
/// exports have the same names and shapes, so every method is the same
/// three steps: arguments converted to the version's types, the export
/// called on the interface `$integration` or `$calls` (expressions over
/// `$this` and `$store`, which may bind the interface on first use), the
/// answer converted to the newest types. Extra items (such as `migrate`)
/// follow in braces.
macro_rules! impl_exports {
    ($instance:ty, |$this:ident, $store:ident| {
        integration: $integration:expr,
        calls: $calls:expr $(,)?
    } { $($extra:item)* }) => {
        impl $crate::runtime::wit::Exports for $instance {
            fn describe<'a>(&'a self, $store: &'a mut Store<PluginState>) -> Plain<'a, Info> {
                let $this = self;
                Box::pin(async move { convert($integration.call_describe(&mut *$store).await?) })
            }
            fn get_settings<'a>(&'a self, $store: &'a mut Store<PluginState>)
                -> Answer<'a, Vec<SettingValue>> {
                let $this = self;
                Box::pin(async move { convert($integration.call_get_settings(&mut *$store).await?) })
            }
            fn save_settings<'a>(&'a self, $store: &'a mut Store<PluginState>, values: Vec<SettingInput>)
                -> Answer<'a, Status> {
                let $this = self;
                Box::pin(async move {
                    let values: Vec<_> = convert(values)?;
                    convert($integration.call_save_settings(&mut *$store, &values).await?)
                })
            }
            fn begin_authorization<'a>(&'a self, $store: &'a mut Store<PluginState>, callback_url: String)
                -> Answer<'a, Authorization> {
                let $this = self;
                Box::pin(async move {
                    convert($integration.call_begin_authorization(&mut *$store, &callback_url).await?)
                })
            }
            fn complete_authorization<'a>(&'a self, $store: &'a mut Store<PluginState>,
                callback_url: String, query: String) -> Answer<'a, Status> {
                let $this = self;
                Box::pin(async move {
                    convert($integration
                        .call_complete_authorization(&mut *$store, &callback_url, &query)
                        .await?)
                })
            }
            fn get_status<'a>(&'a self, $store: &'a mut Store<PluginState>) -> Plain<'a, Status> {
                let $this = self;
                Box::pin(async move { convert($integration.call_get_status(&mut *$store).await?) })
            }
            fn disconnect<'a>(&'a self, $store: &'a mut Store<PluginState>) -> Answer<'a, Status> {
                let $this = self;
                Box::pin(async move { convert($integration.call_disconnect(&mut *$store).await?) })
            }
            fn sync_users<'a>(&'a self, $store: &'a mut Store<PluginState>, cursor: Option<String>)
                -> Answer<'a, SyncProgress> {
                let $this = self;
                Box::pin(async move {
                    convert($integration.call_sync_users(&mut *$store, cursor.as_deref()).await?)
                })
            }
            fn list_users<'a>(&'a self, $store: &'a mut Store<PluginState>) -> Answer<'a, UserList> {
                let $this = self;
                Box::pin(async move { convert($integration.call_list_users(&mut *$store).await?) })
            }
            fn propose_associations<'a>(&'a self, $store: &'a mut Store<PluginState>)
                -> Answer<'a, Proposal> {
                let $this = self;
                Box::pin(async move {
                    convert($integration.call_propose_associations(&mut *$store).await?)
                })
            }
            fn save_associations<'a>(&'a self, $store: &'a mut Store<PluginState>,
                expected_version: u64, associations: Vec<Association>) -> Answer<'a, u64> {
                let $this = self;
                Box::pin(async move {
                    let associations: Vec<_> = convert(associations)?;
                    convert($integration
                        .call_save_associations(&mut *$store, expected_version, &associations)
                        .await?)
                })
            }
            fn user_for_extension<'a>(&'a self, $store: &'a mut Store<PluginState>, extension: String)
                -> Answer<'a, Option<CrmUser>> {
                let $this = self;
                Box::pin(async move {
                    convert($integration.call_user_for_extension(&mut *$store, &extension).await?)
                })
            }
            fn extension_for_user<'a>(&'a self, $store: &'a mut Store<PluginState>, user_id: String)
                -> Answer<'a, Option<String>> {
                let $this = self;
                Box::pin(async move {
                    convert($integration.call_extension_for_user(&mut *$store, &user_id).await?)
                })
            }
            fn lookup_caller<'a>(&'a self, $store: &'a mut Store<PluginState>, number: String,
                default_region: String) -> Answer<'a, Caller> {
                let $this = self;
                Box::pin(async move {
                    convert($calls.call_lookup_caller(&mut *$store, &number, &default_region).await?)
                })
            }
            fn on_call_event<'a>(&'a self, $store: &'a mut Store<PluginState>, event: CallEvent)
                -> Answer<'a, Vec<$crate::runtime::wit::EventOutcome>> {
                let $this = self;
                Box::pin(async move {
                    let event = match $crate::runtime::wit::event_for_version(event)? {
                        Ok(event) => event,
                        Err(skipped) => return Ok(Ok(skipped)),
                    };
                    $crate::runtime::wit::outcomes(
                        $calls.call_on_call_event(&mut *$store, &event).await?,
                    )
                })
            }
            fn run_pending<'a>(&'a self, $store: &'a mut Store<PluginState>) -> Answer<'a, u32> {
                let $this = self;
                Box::pin(async move { convert($calls.call_run_pending(&mut *$store).await?) })
            }
            fn authorize_dial<'a>(&'a self, $store: &'a mut Store<PluginState>, extension: String,
                number: String, default_region: String) -> Answer<'a, String> {
                let $this = self;
                Box::pin(async move {
                    convert($calls
                        .call_authorize_dial(&mut *$store, &extension, &number, &default_region)
                        .await?)
                })
            }
            $($extra)*
        }
    };
}
use impl_exports;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_types_convert_to_themselves() {
        let status = Status {
            state: latest::exports::pbx::crm::integration::ConnectionState::Connected,
            account: Some("a@b @ Org".into()),
            message: "Connected".into(),
            problem: None,
            api_usage: None,
        };
        let same: Status = convert(status).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same.message, "Connected");
        let other: u32 = convert(7u64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other, 7, "same shape, another type: a round trip");
    }

    #[test]
    fn an_older_plugin_took_the_event_and_errors_keep_their_kind() {
        let taken = outcomes::<(), PluginError>(Ok(())).unwrap_or_else(|e| panic!("{e}"));
        let taken = taken.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].action, EventAction::Taken);
        assert_eq!(taken[0].detail, "");
        let old_error = v0_3_0::pbx::crm::types::Error {
            kind: v0_3_0::pbx::crm::types::ErrorKind::InvalidInput,
            message: "no".into(),
        };
        let refused = outcomes::<(), _>(Err(old_error)).unwrap_or_else(|e| panic!("{e}"));
        match refused {
            Err(e) => assert_eq!(
                (e.kind, e.message.as_str()),
                (ErrorKind::InvalidInput, "no")
            ),
            Ok(o) => panic!("took it: {o:?}"),
        }
        let said = vec![EventOutcome {
            action: EventAction::Logged,
            detail: "Task logged".into(),
        }];
        let kept = outcomes::<_, PluginError>(Ok(said.clone())).unwrap_or_else(|e| panic!("{e}"));
        let kept = kept.unwrap_or_default();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].action, kept[0].detail.as_str()),
            (said[0].action, "Task logged")
        );
    }

    #[test]
    fn every_version_is_served_once_in_order() {
        let versions: Vec<&str> = supported().collect();
        assert_eq!(versions, ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"]);
        assert_eq!(versions.last().copied(), Some(latest::VERSION.api()));
    }
}
