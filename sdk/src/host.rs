//! The host calls the plugin makes, behind a trait so the logic runs natively
//! against a fake host in unit tests (calling a WIT import natively aborts).

use crate::bindings::pbx::crm::{directory, http_fetch, kv_store, log, open_browser};

/// Everything the plugin may ask of the PBX host.
pub trait Host {
    /// kv-store `get`.
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, kv_store::Error>;
    /// kv-store `get-many`: the values of `keys` in their order, in one host
    /// call. The default reads them one by one (the fake host in tests).
    fn kv_get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, kv_store::Error> {
        keys.iter().map(|key| self.kv_get(key)).collect()
    }
    /// kv-store `set`.
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), kv_store::Error>;
    /// kv-store `delete`.
    fn kv_delete(&self, key: &str) -> Result<(), kv_store::Error>;
    /// kv-store `list-keys`.
    fn kv_list(&self, prefix: &str) -> Result<Vec<String>, kv_store::Error>;
    /// kv-store `batch`: all or nothing, after checking the preconditions.
    fn kv_batch(
        &self,
        preconditions: &[kv_store::Precondition],
        writes: &[kv_store::Write],
    ) -> Result<(), kv_store::Error>;
    /// http-fetch `fetch`.
    fn fetch(
        &self,
        request: &http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error>;
    /// open-browser `open` with what the page is about (0.3.0's caption).
    fn open_page(
        &self,
        url: &str,
        audience: &open_browser::Audience,
        caption: Option<&open_browser::Caption>,
    ) -> Result<(), String>;
    /// open-browser `offer-records` (0.5.0): several records for the
    /// person at `audience` to pick one.
    fn offer_records(
        &self,
        audience: &open_browser::Audience,
        caption: &open_browser::Caption,
        records: &[crate::bindings::pbx::crm::types::CrmRecord],
    ) -> Result<(), String>;
    /// open-browser `open` without a caption (the administrator's pages).
    fn open_browser(&self, url: &str, audience: &open_browser::Audience) -> Result<(), String> {
        self.open_page(url, audience, None)
    }
    /// directory `list`.
    fn extensions(&self) -> Vec<directory::Extension>;
    /// directory `get-extension`: one extension by number. The default
    /// searches `extensions()`; the component asks the host directly.
    fn extension(&self, number: &str) -> Option<directory::Extension> {
        self.extensions().into_iter().find(|e| e.number == number)
    }
    /// log `log`.
    fn log(&self, level: log::Level, message: &str);
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Cryptographically secure random bytes (PKCE verifiers, `state`).
    fn random_bytes(&self, len: usize) -> Vec<u8>;
    /// Block this call for `ms` milliseconds (waiting for another instance's
    /// token refresh). Behind the trait so tests can drive the clock.
    fn sleep_ms(&self, ms: u64);
}

/// A reference to a host is a host (tests hand one host to several
/// parts).
impl<H: Host> Host for &H {
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, kv_store::Error> {
        (**self).kv_get(key)
    }
    fn kv_get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, kv_store::Error> {
        (**self).kv_get_many(keys)
    }
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), kv_store::Error> {
        (**self).kv_set(key, value)
    }
    fn kv_delete(&self, key: &str) -> Result<(), kv_store::Error> {
        (**self).kv_delete(key)
    }
    fn kv_list(&self, prefix: &str) -> Result<Vec<String>, kv_store::Error> {
        (**self).kv_list(prefix)
    }
    fn kv_batch(
        &self,
        preconditions: &[kv_store::Precondition],
        writes: &[kv_store::Write],
    ) -> Result<(), kv_store::Error> {
        (**self).kv_batch(preconditions, writes)
    }
    fn fetch(
        &self,
        request: &http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        (**self).fetch(request)
    }
    fn open_page(
        &self,
        url: &str,
        audience: &open_browser::Audience,
        caption: Option<&open_browser::Caption>,
    ) -> Result<(), String> {
        (**self).open_page(url, audience, caption)
    }
    fn offer_records(
        &self,
        audience: &open_browser::Audience,
        caption: &open_browser::Caption,
        records: &[crate::bindings::pbx::crm::types::CrmRecord],
    ) -> Result<(), String> {
        (**self).offer_records(audience, caption, records)
    }
    fn extensions(&self) -> Vec<directory::Extension> {
        (**self).extensions()
    }
    fn extension(&self, number: &str) -> Option<directory::Extension> {
        (**self).extension(number)
    }
    fn log(&self, level: log::Level, message: &str) {
        (**self).log(level, message)
    }
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn random_bytes(&self, len: usize) -> Vec<u8> {
        (**self).random_bytes(len)
    }
    fn sleep_ms(&self, ms: u64) {
        (**self).sleep_ms(ms)
    }
}
