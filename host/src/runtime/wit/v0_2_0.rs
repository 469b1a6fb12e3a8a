//! `pbx:crm@0.2.0`, frozen since 0.3.0 (a digest test below fails on any
//! change to `wit/v0.2.0`): its bindings, its imports served by the host's
//! capabilities (`crate::capabilities`, in host types, so 0.2.0 and newer
//! share one implementation), and its exports, bound on first use. 0.2.0
//! adds `kv-store.get-many` and the optional `lifecycle.migrate` export
//! (world `plugin-with-migrate`); it has no `user-sign-in` (the `Exports`
//! defaults answer "unsupported") and its `open-browser.open` no caption.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, HasSelf, Instance, InstancePre, Linker};

use super::{
    Answer, Association, Authorization, CallEvent, Caller, CrmUser, Exports, Info, Plain,
    PluginError, Prepared, Proposal, SettingInput, SettingValue, Status, SyncProgress, UserList,
    Version, convert, impl_exports,
};
use crate::capabilities::browser::Viewer;
use crate::directory;
use crate::outbound::{self, FetchError};
use crate::runtime::state::PluginState;
use crate::store::{self, KvError};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit/v0.2.0",
    // A directory that cannot be read fails the call instead of looking
    // empty: an empty directory would make a plugin mark associations stale.
    imports: { "pbx:crm/directory": async | trappable, default: async },
    exports: { default: async },
    // The admin API speaks these types as JSON (docs/API.md), and older
    // versions convert to them through serde.
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use exports::pbx::crm::{calls as calls_export, integration as integration_export};
use pbx::crm::{directory as wit_directory, http_fetch, kv_store, log, open_browser, types};

/// This version's entry in the served list.
pub(super) static VERSION: V0_2_0 = V0_2_0;

/// `pbx:crm@0.2.0`.
pub(super) struct V0_2_0;

/// The optional `lifecycle` export (world `plugin-with-migrate`).
const LIFECYCLE: &str = "pbx:crm/lifecycle@0.2.0";

impl Version for V0_2_0 {
    fn api(&self) -> &'static str {
        "0.2.0"
    }

    fn add_to_linker(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
    }

    fn prepare(&self, pre: InstancePre<PluginState>) -> wasmtime::Result<Box<dyn Prepared>> {
        let integration = integration_export::GuestIndices::new(&pre)?;
        let calls = calls_export::GuestIndices::new(&pre)?;
        let component = pre.component();
        let migrate = component
            .get_export_index(None, LIFECYCLE)
            .and_then(|lifecycle| component.get_export_index(Some(&lifecycle), "migrate"));
        Ok(Box::new(Prepared0_2_0 {
            pre,
            exports: Arc::new(ExportIndices {
                integration,
                calls,
                migrate,
            }),
        }))
    }
}

/// A linked 0.2.0 component.
struct Prepared0_2_0 {
    pre: InstancePre<PluginState>,
    exports: Arc<ExportIndices>,
}

/// Where a 0.2.0 component's exports are, found once per loaded version.
struct ExportIndices {
    integration: integration_export::GuestIndices,
    calls: calls_export::GuestIndices,
    /// `lifecycle.migrate`, if the component exports it.
    migrate: Option<ComponentExportIndex>,
}

impl Prepared for Prepared0_2_0 {
    fn exports_migrate(&self) -> bool {
        self.exports.migrate.is_some()
    }

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
    ) -> BoxFuture<'a, wasmtime::Result<Box<dyn Exports>>> {
        Box::pin(async move {
            let instance = self.pre.instantiate_async(&mut *store).await?;
            Ok(Box::new(Instance0_2_0 {
                instance,
                exports: self.exports.clone(),
                integration: OnceLock::new(),
                calls: OnceLock::new(),
            }) as Box<dyn Exports>)
        })
    }
}

/// A 0.2.0 instance whose interfaces are bound on first use: binding
/// type-checks every function of an interface, which was a fifth of an
/// instantiation, and a call uses one interface.
struct Instance0_2_0 {
    instance: Instance,
    exports: Arc<ExportIndices>,
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

impl_exports!(Instance0_2_0, |this, store| {
    integration: this.integration(store)?,
    calls: this.calls(store)?,
} {
    fn migrate<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
        from_version: String,
    ) -> Plain<'a, Option<Result<(), PluginError>>> {
        Box::pin(async move {
            let Some(index) = &self.exports.migrate else {
                return Ok(None);
            };
            let func = self
                .instance
                .get_func(&mut *store, index)
                .ok_or_else(|| wasmtime::Error::msg("lifecycle.migrate is not a function"))?;
            // Looked up by name, so the type is checked here: a component
            // whose `migrate` has another signature fails the call with that
            // reason.
            let migrate = func.typed::<(&str,), (Result<(), types::Error>,)>(&*store)?;
            let (result,) = migrate
                .call_async(&mut *store, (from_version.as_str(),))
                .await?;
            Ok(Some(convert(result)?))
        })
    }
});

// The imports: this version's types converted, the host's capabilities called.

impl types::Host for PluginState {}

impl From<KvError> for kv_store::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::QuotaExceeded(why) => Self::QuotaExceeded(why),
            KvError::InvalidKey(why) => Self::InvalidKey(why),
            KvError::Conflict(key) => Self::Conflict(key),
            KvError::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl kv_store::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv_store::Error> {
        Ok(self.caps.kv_get(key).await?)
    }

    async fn get_many(
        &mut self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, kv_store::Error> {
        Ok(self.caps.kv_get_many(keys).await?)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), kv_store::Error> {
        Ok(self.caps.kv_set(key, value).await?)
    }

    async fn delete(&mut self, key: String) -> Result<(), kv_store::Error> {
        Ok(self.caps.kv_delete(key).await?)
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, kv_store::Error> {
        Ok(self.caps.kv_list_keys(prefix).await?)
    }

    async fn batch(
        &mut self,
        preconditions: Vec<kv_store::Precondition>,
        writes: Vec<kv_store::Write>,
    ) -> Result<(), kv_store::Error> {
        let preconditions = preconditions
            .into_iter()
            .map(|p| store::Precondition {
                key: p.key,
                expected: p.expected,
            })
            .collect();
        let writes = writes
            .into_iter()
            .map(|w| match w {
                kv_store::Write::Set(entry) => store::Write::Set {
                    key: entry.key,
                    value: entry.value,
                },
                kv_store::Write::Delete(key) => store::Write::Delete { key },
            })
            .collect();
        Ok(self.caps.kv_batch(preconditions, writes).await?)
    }
}

impl http_fetch::Host for PluginState {
    async fn fetch(
        &mut self,
        request: http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        use http_fetch::Method as M;
        let request = outbound::Request {
            method: match request.method {
                M::Get => outbound::Method::Get,
                M::Head => outbound::Method::Head,
                M::Post => outbound::Method::Post,
                M::Put => outbound::Method::Put,
                M::Patch => outbound::Method::Patch,
                M::Delete => outbound::Method::Delete,
            },
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: request.body,
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        match self.caps.fetch(request).await {
            Ok(response) => Ok(http_fetch::Response {
                status: response.status,
                headers: response
                    .headers
                    .into_iter()
                    .map(|(name, value)| http_fetch::Header { name, value })
                    .collect(),
                body: response.body,
            }),
            Err(e) => Err(match e {
                FetchError::Denied { host, rule } => {
                    http_fetch::Error::Denied(http_fetch::Denial { host, rule })
                }
                FetchError::Timeout => http_fetch::Error::Timeout,
                FetchError::Unreachable(why) => http_fetch::Error::Unreachable(why),
                FetchError::TooLarge(n) => http_fetch::Error::TooLarge(n),
                FetchError::Invalid(why) => http_fetch::Error::Invalid(why),
            }),
        }
    }
}

impl open_browser::Host for PluginState {
    async fn open(&mut self, url: String, audience: open_browser::Audience) -> Result<(), String> {
        let viewer = match audience {
            open_browser::Audience::Administrator => Viewer::Administrator,
            open_browser::Audience::Extension(number) => Viewer::Extension(number),
        };
        // 0.2.0 has no caption: the page is shown without one.
        self.caps.open_browser(&url, viewer, None)
    }
}

impl From<directory::Extension> for wit_directory::Extension {
    fn from(e: directory::Extension) -> Self {
        Self {
            number: e.number,
            name: e.name,
            email: e.email,
        }
    }
}

impl wit_directory::Host for PluginState {
    async fn list_extensions(&mut self) -> wasmtime::Result<Vec<wit_directory::Extension>> {
        let list = self.caps.list_extensions().await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    async fn get_extension(
        &mut self,
        number: String,
    ) -> wasmtime::Result<Option<wit_directory::Extension>> {
        Ok(self.caps.get_extension(&number).await?.map(Into::into))
    }
}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => tracing::Level::TRACE,
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        self.caps.log(level, &message);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::v0_1_0::tests::contract_digest;

    /// SHA-256 of `wit/v0.2.0` as released (as `v0_1_0`'s digest test computes it).
    const V0_2_0_DIGEST: &str = "bafa570b9a639a69e03d06dabd025bb01630a53c4536260f26ce324ef2d59115";

    #[test]
    fn the_0_2_0_contract_is_frozen() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/v0.2.0");
        assert_eq!(
            contract_digest(&dir),
            V0_2_0_DIGEST,
            "wit/v0.2.0 changed, but pbx:crm@0.2.0 is released and frozen: plugins built \
             against it must keep working unchanged. Undo the change, and put it into a new \
             version instead (copy the newest wit/vX.Y.Z to a new folder, see \
             docs/ARCHITECTURE.md, \"The contract\")."
        );
    }
}
