//! A plugin of any served `pbx:crm` version behind one set of methods that
//! speak the newest version's types.
//!
//! The host is written against the newest bindings (`capabilities`); a
//! plugin built against an older version is instantiated with that
//! version's bindings, and its exports are called there with the arguments
//! and results converted. The export types of 0.1.0 and 0.2.0 are the same
//! shapes, and both sets of bindings derive serde, so the conversion is a
//! serde round trip ([`convert`]) instead of a hand-written `From` per type.
//! Adding a version: a variant in each enum, an arm in each method.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Instance, InstancePre};

use crate::capabilities::calls_export::{self, CallEvent, Caller};
use crate::capabilities::integration_export::{
    self, Association, Authorization, CrmUser, Info, Proposal, SettingInput, SettingValue, Status,
    SyncProgress, UserList,
};
use crate::capabilities::pbx::crm::types::Error;
use crate::capabilities::{PluginState, v0_1_0};

/// The optional `lifecycle` export of 0.2.0 (world `plugin-with-migrate`).
const LIFECYCLE_0_2_0: &str = "pbx:crm/lifecycle@0.2.0";

/// A compiled plugin, linked and ready to instantiate, by contract version.
pub enum PluginPre {
    /// Built against `pbx:crm@0.1.0` (frozen).
    V0_1_0(Box<v0_1_0::PluginPre<PluginState>>),
    /// Built against `pbx:crm@0.2.0`.
    V0_2_0 {
        /// The linked component.
        pre: InstancePre<PluginState>,
        /// Where the world's exports are.
        exports: Arc<Exports0_2_0>,
    },
}

/// Where a 0.2.0 component's exports are, found once per loaded version.
pub struct Exports0_2_0 {
    integration: integration_export::GuestIndices,
    calls: calls_export::GuestIndices,
    /// `lifecycle.migrate`, if the component exports it.
    migrate: Option<ComponentExportIndex>,
}

/// One instance of a plugin, by contract version.
pub enum PluginInstance {
    /// Built against `pbx:crm@0.1.0`.
    V0_1_0(v0_1_0::Plugin),
    /// Built against `pbx:crm@0.2.0`.
    V0_2_0(Instance0_2_0),
}

/// A 0.2.0 instance whose interfaces are bound on first use: binding
/// type-checks every function of an interface, which was a fifth of an
/// instantiation, and a call uses one interface.
pub struct Instance0_2_0 {
    instance: Instance,
    exports: Arc<Exports0_2_0>,
    integration: OnceLock<integration_export::Guest>,
    calls: OnceLock<calls_export::Guest>,
}

impl Instance0_2_0 {
    fn integration(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<&integration_export::Guest> {
        if let Some(bound) = self.integration.get() {
            return Ok(bound);
        }
        let bound = self.exports.integration.load(store, &self.instance)?;
        Ok(self.integration.get_or_init(|| bound))
    }

    fn calls(&self, store: &mut Store<PluginState>) -> wasmtime::Result<&calls_export::Guest> {
        if let Some(bound) = self.calls.get() {
            return Ok(bound);
        }
        let bound = self.exports.calls.load(store, &self.instance)?;
        Ok(self.calls.get_or_init(|| bound))
    }
}

impl PluginPre {
    /// Whether the component exports `lifecycle.migrate`.
    pub fn exports_migrate(&self) -> bool {
        matches!(self, Self::V0_2_0 { exports, .. } if exports.migrate.is_some())
    }

    /// The pre-instance of a component built against `pbx:crm@{api_version}`
    /// (as `runtime::inspect` found it). Fails when the component lacks an
    /// export of its version's world.
    pub fn new(api_version: &str, pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        match api_version {
            "0.1.0" => Ok(Self::V0_1_0(Box::new(v0_1_0::PluginPre::new(pre)?))),
            "0.2.0" => {
                let integration = integration_export::GuestIndices::new(&pre)?;
                let calls = calls_export::GuestIndices::new(&pre)?;
                let component = pre.component();
                let migrate = component
                    .get_export_index(None, LIFECYCLE_0_2_0)
                    .and_then(|lifecycle| component.get_export_index(Some(&lifecycle), "migrate"));
                Ok(Self::V0_2_0 {
                    pre,
                    exports: Arc::new(Exports0_2_0 {
                        integration,
                        calls,
                        migrate,
                    }),
                })
            }
            // Inspection refuses these first; this keeps the two in step.
            other => Err(wasmtime::Error::msg(format!(
                "pbx:crm@{other} is not served by this host"
            ))),
        }
    }

    /// A new instance in `store`.
    pub async fn instantiate_async(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<PluginInstance> {
        match self {
            Self::V0_1_0(pre) => Ok(PluginInstance::V0_1_0(pre.instantiate_async(store).await?)),
            Self::V0_2_0 { pre, exports } => {
                let instance = pre.instantiate_async(&mut *store).await?;
                Ok(PluginInstance::V0_2_0(Instance0_2_0 {
                    instance,
                    exports: exports.clone(),
                    integration: OnceLock::new(),
                    calls: OnceLock::new(),
                }))
            }
        }
    }
}

/// `value` as the same-shaped type of another contract version.
fn convert<A: Serialize, B: DeserializeOwned>(value: A) -> wasmtime::Result<B> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            // Only a host bug gets here: the shapes are the same by contract.
            wasmtime::Error::msg(format!("cannot convert between pbx:crm versions: {e}"))
        })
}

/// What a plugin's export answered, in the newest types.
type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl PluginInstance {
    /// `integration.describe`.
    pub async fn describe(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Info> {
        match self {
            Self::V0_1_0(p) => convert(p.pbx_crm_integration().call_describe(store).await?),
            Self::V0_2_0(p) => p.integration(store)?.call_describe(store).await,
        }
    }

    /// `integration.get-settings`.
    pub async fn get_settings(&self, store: &mut Store<PluginState>) -> Answer<Vec<SettingValue>> {
        match self {
            Self::V0_1_0(p) => convert(p.pbx_crm_integration().call_get_settings(store).await?),
            Self::V0_2_0(p) => p.integration(store)?.call_get_settings(store).await,
        }
    }

    /// `integration.save-settings`.
    pub async fn save_settings(
        &self,
        store: &mut Store<PluginState>,
        values: &[SettingInput],
    ) -> Answer<Status> {
        match self {
            Self::V0_1_0(p) => {
                let values: Vec<_> = convert(values)?;
                convert(
                    p.pbx_crm_integration()
                        .call_save_settings(store, &values)
                        .await?,
                )
            }
            Self::V0_2_0(p) => {
                p.integration(store)?
                    .call_save_settings(store, values)
                    .await
            }
        }
    }

    /// `integration.begin-authorization`.
    pub async fn begin_authorization(
        &self,
        store: &mut Store<PluginState>,
        callback_url: &str,
    ) -> Answer<Authorization> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_integration()
                    .call_begin_authorization(store, callback_url)
                    .await?,
            ),
            Self::V0_2_0(p) => {
                p.integration(store)?
                    .call_begin_authorization(store, callback_url)
                    .await
            }
        }
    }

    /// `integration.complete-authorization`.
    pub async fn complete_authorization(
        &self,
        store: &mut Store<PluginState>,
        callback_url: &str,
        query: &str,
    ) -> Answer<Status> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_integration()
                    .call_complete_authorization(store, callback_url, query)
                    .await?,
            ),
            Self::V0_2_0(p) => {
                p.integration(store)?
                    .call_complete_authorization(store, callback_url, query)
                    .await
            }
        }
    }

    /// `integration.get-status`.
    pub async fn get_status(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Status> {
        match self {
            Self::V0_1_0(p) => convert(p.pbx_crm_integration().call_get_status(store).await?),
            Self::V0_2_0(p) => p.integration(store)?.call_get_status(store).await,
        }
    }

    /// `integration.disconnect`.
    pub async fn disconnect(&self, store: &mut Store<PluginState>) -> Answer<Status> {
        match self {
            Self::V0_1_0(p) => convert(p.pbx_crm_integration().call_disconnect(store).await?),
            Self::V0_2_0(p) => p.integration(store)?.call_disconnect(store).await,
        }
    }

    /// `integration.sync-users`.
    pub async fn sync_users(
        &self,
        store: &mut Store<PluginState>,
        cursor: Option<&str>,
    ) -> Answer<SyncProgress> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_integration()
                    .call_sync_users(store, cursor)
                    .await?,
            ),
            Self::V0_2_0(p) => p.integration(store)?.call_sync_users(store, cursor).await,
        }
    }

    /// `integration.list-users`.
    pub async fn list_users(&self, store: &mut Store<PluginState>) -> Answer<UserList> {
        match self {
            Self::V0_1_0(p) => convert(p.pbx_crm_integration().call_list_users(store).await?),
            Self::V0_2_0(p) => p.integration(store)?.call_list_users(store).await,
        }
    }

    /// `integration.propose-associations`.
    pub async fn propose_associations(&self, store: &mut Store<PluginState>) -> Answer<Proposal> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_integration()
                    .call_propose_associations(store)
                    .await?,
            ),
            Self::V0_2_0(p) => p.integration(store)?.call_propose_associations(store).await,
        }
    }

    /// `integration.save-associations`.
    pub async fn save_associations(
        &self,
        store: &mut Store<PluginState>,
        expected_version: u64,
        associations: &[Association],
    ) -> Answer<u64> {
        match self {
            Self::V0_1_0(p) => {
                let associations: Vec<_> = convert(associations)?;
                convert(
                    p.pbx_crm_integration()
                        .call_save_associations(store, expected_version, &associations)
                        .await?,
                )
            }
            Self::V0_2_0(p) => {
                p.integration(store)?
                    .call_save_associations(store, expected_version, associations)
                    .await
            }
        }
    }

    /// `integration.user-for-extension`.
    pub async fn user_for_extension(
        &self,
        store: &mut Store<PluginState>,
        extension: &str,
    ) -> Answer<Option<CrmUser>> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_integration()
                    .call_user_for_extension(store, extension)
                    .await?,
            ),
            Self::V0_2_0(p) => {
                p.integration(store)?
                    .call_user_for_extension(store, extension)
                    .await
            }
        }
    }

    /// `integration.extension-for-user`.
    pub async fn extension_for_user(
        &self,
        store: &mut Store<PluginState>,
        user_id: &str,
    ) -> Answer<Option<String>> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_integration()
                    .call_extension_for_user(store, user_id)
                    .await?,
            ),
            Self::V0_2_0(p) => {
                p.integration(store)?
                    .call_extension_for_user(store, user_id)
                    .await
            }
        }
    }

    /// `calls.lookup-caller`.
    pub async fn lookup_caller(
        &self,
        store: &mut Store<PluginState>,
        number: &str,
        default_region: &str,
    ) -> Answer<Caller> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_calls()
                    .call_lookup_caller(store, number, default_region)
                    .await?,
            ),
            Self::V0_2_0(p) => {
                p.calls(store)?
                    .call_lookup_caller(store, number, default_region)
                    .await
            }
        }
    }

    /// `calls.on-call-event`.
    pub async fn on_call_event(
        &self,
        store: &mut Store<PluginState>,
        event: &CallEvent,
    ) -> Answer<()> {
        match self {
            Self::V0_1_0(p) => {
                let event = convert(event)?;
                convert(p.pbx_crm_calls().call_on_call_event(store, &event).await?)
            }
            Self::V0_2_0(p) => p.calls(store)?.call_on_call_event(store, event).await,
        }
    }

    /// `calls.run-pending`.
    pub async fn run_pending(&self, store: &mut Store<PluginState>) -> Answer<u32> {
        match self {
            Self::V0_1_0(p) => convert(p.pbx_crm_calls().call_run_pending(store).await?),
            Self::V0_2_0(p) => p.calls(store)?.call_run_pending(store).await,
        }
    }

    /// `calls.authorize-dial`.
    pub async fn authorize_dial(
        &self,
        store: &mut Store<PluginState>,
        extension: &str,
        number: &str,
        default_region: &str,
    ) -> Answer<String> {
        match self {
            Self::V0_1_0(p) => convert(
                p.pbx_crm_calls()
                    .call_authorize_dial(store, extension, number, default_region)
                    .await?,
            ),
            Self::V0_2_0(p) => {
                p.calls(store)?
                    .call_authorize_dial(store, extension, number, default_region)
                    .await
            }
        }
    }

    /// `lifecycle.migrate` (0.2.0, optional): `None` when the component does
    /// not export it (every 0.1.0 plugin, and 0.2.0 plugins of world
    /// `plugin`), so the caller can tell "nothing to migrate" from a result.
    pub async fn migrate(
        &self,
        store: &mut Store<PluginState>,
        from_version: &str,
    ) -> wasmtime::Result<Option<Result<(), Error>>> {
        let func = match self {
            Self::V0_1_0(_) => return Ok(None),
            Self::V0_2_0(p) => match &p.exports.migrate {
                None => return Ok(None),
                Some(index) => p
                    .instance
                    .get_func(&mut *store, index)
                    .ok_or_else(|| wasmtime::Error::msg("lifecycle.migrate is not a function"))?,
            },
        };
        // Looked up by name, so the type is checked here: a component whose
        // `migrate` has another signature fails the call with that reason.
        let migrate = func.typed::<(&str,), (Result<(), Error>,)>(&*store)?;
        let (result,) = migrate.call_async(&mut *store, (from_version,)).await?;
        Ok(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::integration_export as new;
    use crate::capabilities::v0_1_0::exports::pbx::crm::integration as old;
    use crate::capabilities::v0_1_0::pbx::crm::types as old_types;

    #[test]
    fn results_convert_between_versions_whole() {
        let old: Result<old::Status, old_types::Error> = Ok(old::Status {
            state: old::ConnectionState::ReauthorizationNeeded,
            account: Some("a@b @ Org".into()),
            message: "Re-authorize".into(),
            problem: None,
        });
        let new: Result<new::Status, Error> = convert(old).unwrap_or_else(|e| panic!("{e}"));
        let status = new.unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(status.state, new::ConnectionState::ReauthorizationNeeded);
        assert_eq!(status.account.as_deref(), Some("a@b @ Org"));

        let failed: Result<u64, old_types::Error> = Err(old_types::Error {
            kind: old_types::ErrorKind::Conflict,
            message: "reload".into(),
        });
        let failed: Result<u64, Error> = convert(failed).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            failed,
            Err(Error { kind: crate::capabilities::pbx::crm::types::ErrorKind::Conflict, ref message }) if message == "reload"
        ));
    }
}
