//! The host calls through the component's WIT imports: [`WitHost`], the
//! [`Host`] a plugin's component hands its logic, so the same logic runs
//! natively against `testing::FakeHost`.

use crate::bindings::pbx::crm::{directory, http_fetch, kv_store, log, open_browser};
use crate::host::Host;

/// The host calls, through the component's imports.
pub struct WitHost;

impl Host for WitHost {
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, kv_store::Error> {
        kv_store::get(key)
    }
    fn kv_get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, kv_store::Error> {
        kv_store::get_many(keys)
    }
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), kv_store::Error> {
        kv_store::set(key, value)
    }
    fn kv_delete(&self, key: &str) -> Result<(), kv_store::Error> {
        kv_store::delete(key)
    }
    fn kv_list(&self, prefix: &str) -> Result<Vec<String>, kv_store::Error> {
        kv_store::list_keys(prefix)
    }
    fn kv_batch(
        &self,
        preconditions: &[kv_store::Precondition],
        writes: &[kv_store::Write],
    ) -> Result<(), kv_store::Error> {
        kv_store::batch(preconditions, writes)
    }
    fn fetch(
        &self,
        request: &http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        http_fetch::fetch(request)
    }
    fn open_page(
        &self,
        url: &str,
        audience: &open_browser::Audience,
        caption: Option<&open_browser::Caption>,
    ) -> Result<(), String> {
        open_browser::open(url, audience, caption)
    }
    fn offer_records(
        &self,
        audience: &open_browser::Audience,
        caption: &open_browser::Caption,
        records: &[crate::bindings::pbx::crm::types::CrmRecord],
    ) -> Result<(), String> {
        open_browser::offer_records(audience, caption, records)
    }
    fn extensions(&self) -> Vec<directory::Extension> {
        directory::list_extensions()
    }
    fn extension(&self, number: &str) -> Option<directory::Extension> {
        directory::get_extension(number)
    }
    fn log(&self, level: log::Level, message: &str) {
        log::log(level, message)
    }
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    fn random_bytes(&self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        // wasi:random never fails in practice; a zeroed buffer would only
        // weaken a nonce, so fail loudly instead.
        if getrandom::fill(&mut buf).is_err() {
            panic!("wasi:random is unavailable");
        }
        buf
    }
    fn sleep_ms(&self, ms: u64) {
        // On wasip2 this polls wasi:clocks; the host's call deadline
        // still bounds the whole call.
        std::thread::sleep(std::time::Duration::from_millis(ms))
    }
}
