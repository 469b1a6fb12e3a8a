//! `pbx:crm@0.5.0`, the newest version: its bindings, its imports served by
//! the host's capabilities (`crate::capabilities`), and its exports, bound
//! on first use. 0.5.0 adds the PBX's UTC offset and a `recording-ready`
//! phase to call events, after-call work (`calls.save-after-call-work`),
//! records offered to the agent (`open-browser.offer-records`,
//! `calls.choose-record`), `account` on records and `status.api-usage`;
//! 0.4.0 made `calls.on-call-event` answer what the plugin
//! did with the event (`event-outcome`s); 0.3.0 added the `user-sign-in`
//! export and a `caption` on `open-browser.open`; 0.2.0 added
//! `kv-store.get-many` and the optional `lifecycle.migrate` export (world
//! `plugin-with-migrate`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, HasSelf, Instance, InstancePre, Linker};

use super::{
    AfterCallWork, Answer, Association, Authorization, CallEvent, Caller, CrmRecord, CrmUser,
    EventOutcome, Exports, Info, Plain, PluginError, Prepared, Proposal, SettingInput,
    SettingValue, SignInError, SignInRequest, Status, SyncProgress, UserList, Version, convert,
    impl_exports,
};
use crate::capabilities::browser::{Caption, Detail, OfferedRecord, Viewer};
use crate::directory;
use crate::outbound::{self, FetchError};
use crate::runtime::state::PluginState;
use crate::store::{self, KvError};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit/v0.5.0",
    // A directory that cannot be read fails the call instead of looking
    // empty: an empty directory would make a plugin mark associations stale.
    imports: { "pbx:crm/directory": async | trappable, default: async },
    exports: { default: async },
    // The admin API speaks these types as JSON (docs/API.md), and older
    // versions convert to them through serde.
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use exports::pbx::crm::{
    calls as calls_export, integration as integration_export, user_sign_in as sign_in_export,
};
use pbx::crm::{directory as wit_directory, http_fetch, kv_store, log, open_browser, types};

/// This version's entry in the served list.
pub(super) static VERSION: V0_5_0 = V0_5_0;

/// `pbx:crm@0.5.0`.
pub(super) struct V0_5_0;

/// The optional `lifecycle` export (world `plugin-with-migrate`).
const LIFECYCLE: &str = "pbx:crm/lifecycle@0.5.0";

impl Version for V0_5_0 {
    fn api(&self) -> &'static str {
        "0.5.0"
    }

    fn add_to_linker(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
    }

    fn prepare(&self, pre: InstancePre<PluginState>) -> wasmtime::Result<Box<dyn Prepared>> {
        let integration = integration_export::GuestIndices::new(&pre)?;
        let calls = calls_export::GuestIndices::new(&pre)?;
        let sign_in = sign_in_export::GuestIndices::new(&pre)?;
        let component = pre.component();
        let migrate = component
            .get_export_index(None, LIFECYCLE)
            .and_then(|lifecycle| component.get_export_index(Some(&lifecycle), "migrate"));
        Ok(Box::new(Prepared0_5_0 {
            pre,
            exports: Arc::new(ExportIndices {
                integration,
                calls,
                sign_in,
                migrate,
            }),
        }))
    }
}

/// A linked 0.5.0 component.
struct Prepared0_5_0 {
    pre: InstancePre<PluginState>,
    exports: Arc<ExportIndices>,
}

/// Where a 0.5.0 component's exports are, found once per loaded version.
struct ExportIndices {
    integration: integration_export::GuestIndices,
    calls: calls_export::GuestIndices,
    sign_in: sign_in_export::GuestIndices,
    /// `lifecycle.migrate`, if the component exports it.
    migrate: Option<ComponentExportIndex>,
}

impl Prepared for Prepared0_5_0 {
    fn exports_migrate(&self) -> bool {
        self.exports.migrate.is_some()
    }

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
    ) -> BoxFuture<'a, wasmtime::Result<Box<dyn Exports>>> {
        Box::pin(async move {
            let instance = self.pre.instantiate_async(&mut *store).await?;
            Ok(Box::new(Instance0_5_0 {
                instance,
                exports: self.exports.clone(),
                integration: OnceLock::new(),
                calls: OnceLock::new(),
                sign_in: OnceLock::new(),
            }) as Box<dyn Exports>)
        })
    }
}

/// A 0.5.0 instance whose interfaces are bound on first use: binding
/// type-checks every function of an interface, which was a fifth of an
/// instantiation, and a call uses one interface.
struct Instance0_5_0 {
    instance: Instance,
    exports: Arc<ExportIndices>,
    integration: OnceLock<integration_export::Guest>,
    calls: OnceLock<calls_export::Guest>,
    sign_in: OnceLock<sign_in_export::Guest>,
}

impl Instance0_5_0 {
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

    fn sign_in(&self, store: &mut Store<PluginState>) -> wasmtime::Result<&sign_in_export::Guest> {
        if let Some(bound) = self.sign_in.get() {
            return Ok(bound);
        }
        let bound = self.exports.sign_in.load(store, &self.instance)?;
        Ok(self.sign_in.get_or_init(|| bound))
    }
}

impl_exports!(Instance0_5_0, |this, store| {
    integration: this.integration(store)?,
    calls: this.calls(store)?,
} {
    fn begin_user_sign_in<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
        callback_url: String,
    ) -> Answer<'a, SignInRequest> {
        Box::pin(async move {
            self.sign_in(store)?
                .call_begin(&mut *store, &callback_url)
                .await
        })
    }

    fn complete_user_sign_in<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
        callback_url: String,
        query: String,
    ) -> Answer<'a, Result<String, SignInError>> {
        Box::pin(async move {
            // Every answer of `complete` is the plugin's: a failed sign-in
            // is a value for the caller to show, not a refused call.
            let answer = self
                .sign_in(store)?
                .call_complete(&mut *store, &callback_url, &query)
                .await?;
            Ok(Ok(answer))
        })
    }

    fn save_after_call_work<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
        work: AfterCallWork,
    ) -> Answer<'a, Vec<EventOutcome>> {
        Box::pin(async move {
            self.calls(store)?
                .call_save_after_call_work(&mut *store, &work)
                .await
        })
    }

    fn choose_record<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
        choice: super::RecordChoice,
    ) -> Answer<'a, CrmRecord> {
        Box::pin(async move {
            self.calls(store)?
                .call_choose_record(
                    &mut *store,
                    &choice.call_id,
                    &choice.extension,
                    &choice.number,
                    &choice.default_region,
                    &choice.record_id,
                )
                .await
        })
    }

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

impl From<open_browser::Caption> for Caption {
    fn from(c: open_browser::Caption) -> Self {
        Self {
            title: c.title,
            details: c
                .details
                .into_iter()
                .map(|d| Detail {
                    label: d.label,
                    value: d.value,
                })
                .collect(),
            action: c.action,
            call_id: c.call_id,
        }
    }
}

impl From<open_browser::Audience> for Viewer {
    fn from(audience: open_browser::Audience) -> Self {
        match audience {
            open_browser::Audience::Administrator => Viewer::Administrator,
            open_browser::Audience::Extension(number) => Viewer::Extension(number),
        }
    }
}

impl open_browser::Host for PluginState {
    async fn open(
        &mut self,
        url: String,
        audience: open_browser::Audience,
        caption: Option<open_browser::Caption>,
    ) -> Result<(), String> {
        self.caps
            .open_browser(&url, audience.into(), caption.map(Into::into))
    }

    async fn offer_records(
        &mut self,
        audience: open_browser::Audience,
        caption: open_browser::Caption,
        records: Vec<types::CrmRecord>,
    ) -> Result<(), String> {
        let records = records
            .into_iter()
            .map(|r| OfferedRecord {
                object_type: r.object_type,
                id: r.id,
                name: r.name,
                url: r.url,
                account: r.account,
            })
            .collect();
        self.caps
            .offer_records(audience.into(), caption.into(), records)
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
