//! `pbx:crm@0.1.0`, frozen: released, so plugins built against it must keep
//! loading unchanged (a digest test below fails on any change to
//! `wit/v0.1.0`). Its imports are shims that only convert types and call
//! 0.2.0's (same shapes; no capability is implemented twice); its exports
//! are called here and their answers converted to the newest types.

use futures::future::BoxFuture;
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::v0_2_0::pbx::crm as new;
use super::{
    Answer, Association, Authorization, CallEvent, Caller, CrmUser, Exports, Info, Plain, Prepared,
    Proposal, SettingInput, SettingValue, Status, SyncProgress, UserList, Version, convert,
    impl_exports,
};
use crate::runtime::state::PluginState;

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit/v0.1.0",
    // As for the newest version: a directory that cannot be read fails the
    // call instead of looking empty.
    imports: { "pbx:crm/directory": async | trappable, default: async },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use pbx::crm as old;

/// This version's entry in the served list.
pub(super) static VERSION: V0_1_0 = V0_1_0;

/// `pbx:crm@0.1.0`.
pub(super) struct V0_1_0;

impl Version for V0_1_0 {
    fn api(&self) -> &'static str {
        "0.1.0"
    }

    fn add_to_linker(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        Plugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
    }

    fn prepare(&self, pre: InstancePre<PluginState>) -> wasmtime::Result<Box<dyn Prepared>> {
        Ok(Box::new(PluginPre::new(pre)?))
    }
}

impl Prepared for PluginPre<PluginState> {
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<PluginState>,
    ) -> BoxFuture<'a, wasmtime::Result<Box<dyn Exports>>> {
        Box::pin(async move {
            let instance = self.instantiate_async(store).await?;
            Ok(Box::new(instance) as Box<dyn Exports>)
        })
    }
}

impl_exports!(Plugin, |this, store| {
    integration: this.pbx_crm_integration(),
    calls: this.pbx_crm_calls(),
} {});

// The imports: converted, then 0.2.0's implementation called.

impl old::types::Host for PluginState {}

// kv-store

impl From<new::kv_store::Error> for old::kv_store::Error {
    fn from(e: new::kv_store::Error) -> Self {
        use new::kv_store::Error as N;
        match e {
            N::QuotaExceeded(why) => Self::QuotaExceeded(why),
            N::InvalidKey(why) => Self::InvalidKey(why),
            N::Conflict(key) => Self::Conflict(key),
            N::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl From<old::kv_store::Precondition> for new::kv_store::Precondition {
    fn from(p: old::kv_store::Precondition) -> Self {
        Self {
            key: p.key,
            expected: p.expected,
        }
    }
}

impl From<old::kv_store::Write> for new::kv_store::Write {
    fn from(w: old::kv_store::Write) -> Self {
        match w {
            old::kv_store::Write::Set(e) => Self::Set(new::kv_store::Entry {
                key: e.key,
                value: e.value,
            }),
            old::kv_store::Write::Delete(key) => Self::Delete(key),
        }
    }
}

impl old::kv_store::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, old::kv_store::Error> {
        Ok(new::kv_store::Host::get(self, key).await?)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), old::kv_store::Error> {
        Ok(new::kv_store::Host::set(self, key, value).await?)
    }

    async fn delete(&mut self, key: String) -> Result<(), old::kv_store::Error> {
        Ok(new::kv_store::Host::delete(self, key).await?)
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, old::kv_store::Error> {
        Ok(new::kv_store::Host::list_keys(self, prefix).await?)
    }

    async fn batch(
        &mut self,
        preconditions: Vec<old::kv_store::Precondition>,
        writes: Vec<old::kv_store::Write>,
    ) -> Result<(), old::kv_store::Error> {
        let preconditions = preconditions.into_iter().map(Into::into).collect();
        let writes = writes.into_iter().map(Into::into).collect();
        Ok(new::kv_store::Host::batch(self, preconditions, writes).await?)
    }
}

// http-fetch

impl From<old::http_fetch::Header> for new::http_fetch::Header {
    fn from(h: old::http_fetch::Header) -> Self {
        Self {
            name: h.name,
            value: h.value,
        }
    }
}

impl From<new::http_fetch::Header> for old::http_fetch::Header {
    fn from(h: new::http_fetch::Header) -> Self {
        Self {
            name: h.name,
            value: h.value,
        }
    }
}

impl From<old::http_fetch::Method> for new::http_fetch::Method {
    fn from(m: old::http_fetch::Method) -> Self {
        use old::http_fetch::Method as O;
        match m {
            O::Get => Self::Get,
            O::Head => Self::Head,
            O::Post => Self::Post,
            O::Put => Self::Put,
            O::Patch => Self::Patch,
            O::Delete => Self::Delete,
        }
    }
}

impl From<old::http_fetch::Request> for new::http_fetch::Request {
    fn from(r: old::http_fetch::Request) -> Self {
        Self {
            method: r.method.into(),
            url: r.url,
            headers: r.headers.into_iter().map(Into::into).collect(),
            body: r.body,
            timeout_ms: r.timeout_ms,
        }
    }
}

impl From<new::http_fetch::Response> for old::http_fetch::Response {
    fn from(r: new::http_fetch::Response) -> Self {
        Self {
            status: r.status,
            headers: r.headers.into_iter().map(Into::into).collect(),
            body: r.body,
        }
    }
}

impl From<new::http_fetch::Error> for old::http_fetch::Error {
    fn from(e: new::http_fetch::Error) -> Self {
        use new::http_fetch::Error as N;
        match e {
            N::Denied(d) => Self::Denied(old::http_fetch::Denial {
                host: d.host,
                rule: d.rule,
            }),
            N::Timeout => Self::Timeout,
            N::Unreachable(why) => Self::Unreachable(why),
            N::TooLarge(n) => Self::TooLarge(n),
            N::Invalid(why) => Self::Invalid(why),
        }
    }
}

impl old::http_fetch::Host for PluginState {
    async fn fetch(
        &mut self,
        request: old::http_fetch::Request,
    ) -> Result<old::http_fetch::Response, old::http_fetch::Error> {
        // The grants check, the hop checks and the timing are all in there.
        new::http_fetch::Host::fetch(self, request.into())
            .await
            .map(Into::into)
            .map_err(Into::into)
    }
}

// open-browser

impl old::open_browser::Host for PluginState {
    async fn open(
        &mut self,
        url: String,
        audience: old::open_browser::Audience,
    ) -> Result<(), String> {
        let audience = match audience {
            old::open_browser::Audience::Administrator => {
                new::open_browser::Audience::Administrator
            }
            old::open_browser::Audience::Extension(number) => {
                new::open_browser::Audience::Extension(number)
            }
        };
        new::open_browser::Host::open(self, url, audience).await
    }
}

// directory

impl From<new::directory::Extension> for old::directory::Extension {
    fn from(e: new::directory::Extension) -> Self {
        Self {
            number: e.number,
            name: e.name,
            email: e.email,
        }
    }
}

impl old::directory::Host for PluginState {
    async fn list_extensions(&mut self) -> wasmtime::Result<Vec<old::directory::Extension>> {
        let list = new::directory::Host::list_extensions(self).await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    async fn get_extension(
        &mut self,
        number: String,
    ) -> wasmtime::Result<Option<old::directory::Extension>> {
        let found = new::directory::Host::get_extension(self, number).await?;
        Ok(found.map(Into::into))
    }
}

// log

impl old::log::Host for PluginState {
    async fn log(&mut self, level: old::log::Level, message: String) {
        use old::log::Level as O;
        let level = match level {
            O::Trace => new::log::Level::Trace,
            O::Debug => new::log::Level::Debug,
            O::Info => new::log::Level::Info,
            O::Warn => new::log::Level::Warn,
            O::Error => new::log::Level::Error,
        };
        new::log::Host::log(self, level, message).await
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::{Path, PathBuf};

    use sha2::{Digest, Sha256};

    /// SHA-256 of `wit/v0.1.0` as released (see `contract_digest`).
    const V0_1_0_DIGEST: &str = "823705620f60e59228108e803b79002c0d7195e02cddfbf54d22f40e39d0f7f0";

    fn files(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                files(&path, base, out);
            } else {
                let name = path
                    .strip_prefix(base)
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                out.push((name, path));
            }
        }
    }

    /// Over every file below `dir`, sorted by relative path: the path's and
    /// the contents' lengths and bytes, so a rename, an added or removed
    /// file and any edit all change it.
    pub(in crate::runtime::wit) fn contract_digest(dir: &Path) -> String {
        let mut list = Vec::new();
        files(dir, dir, &mut list);
        list.sort();
        let mut hasher = Sha256::new();
        for (name, path) in list {
            let contents = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((contents.len() as u64).to_le_bytes());
            hasher.update(&contents);
        }
        hex::encode(hasher.finalize())
    }

    #[test]
    fn the_0_1_0_contract_is_frozen() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/v0.1.0");
        assert_eq!(
            contract_digest(&dir),
            V0_1_0_DIGEST,
            "wit/v0.1.0 changed, but pbx:crm@0.1.0 is released and frozen: plugins built \
             against it must keep working unchanged. Undo the change, and put it into a new \
             version instead (copy the newest wit/vX.Y.Z to a new folder, see \
             docs/ARCHITECTURE.md, \"The contract\")."
        );
    }

    #[test]
    fn results_convert_between_versions_whole() {
        use super::super::latest::exports::pbx::crm::integration as new;
        use super::super::{ErrorKind, PluginError, convert};
        use super::exports::pbx::crm::integration as old;
        use super::pbx::crm::types as old_types;

        let old: Result<old::Status, old_types::Error> = Ok(old::Status {
            state: old::ConnectionState::ReauthorizationNeeded,
            account: Some("a@b @ Org".into()),
            message: "Re-authorize".into(),
            problem: None,
        });
        let new: Result<new::Status, PluginError> = convert(old).unwrap_or_else(|e| panic!("{e}"));
        let status = new.unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(status.state, new::ConnectionState::ReauthorizationNeeded);
        assert_eq!(status.account.as_deref(), Some("a@b @ Org"));

        let failed: Result<u64, old_types::Error> = Err(old_types::Error {
            kind: old_types::ErrorKind::Conflict,
            message: "reload".into(),
        });
        let failed: Result<u64, PluginError> = convert(failed).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            failed,
            Err(PluginError { kind: ErrorKind::Conflict, ref message }) if message == "reload"
        ));
    }
}
