//! A fake host for native unit tests: an in-memory kv-store with the same
//! batch semantics as the real one, and recorders for the other host calls.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::host::Host;
use crate::pbx::crm::{directory, http_fetch, kv_store, log, open_browser};

type Hook = Box<dyn FnOnce(&mut BTreeMap<String, Vec<u8>>)>;

#[derive(Default)]
pub struct FakeHost {
    kv: RefCell<BTreeMap<String, Vec<u8>>>,
    logs: RefCell<Vec<String>>,
    opened: RefCell<Vec<String>>,
    extensions: RefCell<Vec<directory::Extension>>,
    before_batch: RefCell<Option<Hook>>,
    now_ms: RefCell<u64>,
}

impl FakeHost {
    pub fn kv_keys(&self) -> Vec<String> {
        self.kv.borrow().keys().cloned().collect()
    }

    pub fn kv_dump(&self) -> String {
        self.kv
            .borrow()
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.borrow().clone()
    }

    #[allow(dead_code)]
    pub fn opened(&self) -> Vec<String> {
        self.opened.borrow().clone()
    }

    /// Run `hook` on the store right before the next batch commits, to play a
    /// concurrent writer.
    pub fn before_next_batch(&self, hook: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) + 'static) {
        *self.before_batch.borrow_mut() = Some(Box::new(hook));
    }

    #[allow(dead_code)]
    pub fn set_extensions(&self, extensions: Vec<directory::Extension>) {
        *self.extensions.borrow_mut() = extensions;
    }

    #[allow(dead_code)]
    pub fn advance_ms(&self, ms: u64) {
        *self.now_ms.borrow_mut() += ms;
    }
}

impl Host for FakeHost {
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, kv_store::Error> {
        Ok(self.kv.borrow().get(key).cloned())
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), kv_store::Error> {
        self.kv.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), kv_store::Error> {
        self.kv.borrow_mut().remove(key);
        Ok(())
    }

    fn kv_list(&self, prefix: &str) -> Result<Vec<String>, kv_store::Error> {
        Ok(self
            .kv
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn kv_batch(
        &self,
        preconditions: &[kv_store::Precondition],
        writes: &[kv_store::Write],
    ) -> Result<(), kv_store::Error> {
        if let Some(hook) = self.before_batch.borrow_mut().take() {
            hook(&mut self.kv.borrow_mut());
        }
        let mut kv = self.kv.borrow_mut();
        for p in preconditions {
            if kv.get(&p.key) != p.expected.as_ref() {
                return Err(kv_store::Error::Conflict(p.key.clone()));
            }
        }
        for w in writes {
            match w {
                kv_store::Write::Set(e) => {
                    kv.insert(e.key.clone(), e.value.clone());
                }
                kv_store::Write::Delete(k) => {
                    kv.remove(k);
                }
            }
        }
        Ok(())
    }

    fn fetch(
        &self,
        request: &http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        Err(http_fetch::Error::Unreachable(format!(
            "the fake host has no network ({})",
            request.url
        )))
    }

    fn open_browser(&self, url: &str, _audience: &open_browser::Audience) -> Result<(), String> {
        self.opened.borrow_mut().push(url.into());
        Ok(())
    }

    fn extensions(&self) -> Vec<directory::Extension> {
        self.extensions.borrow().clone()
    }

    fn log(&self, _level: log::Level, message: &str) {
        self.logs.borrow_mut().push(message.into());
    }

    fn now_ms(&self) -> u64 {
        *self.now_ms.borrow()
    }

    fn random_bytes(&self, len: usize) -> Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }
}

impl<H: Host> Host for &H {
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, kv_store::Error> {
        (**self).kv_get(key)
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
    fn open_browser(&self, url: &str, audience: &open_browser::Audience) -> Result<(), String> {
        (**self).open_browser(url, audience)
    }
    fn extensions(&self) -> Vec<directory::Extension> {
        (**self).extensions()
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
}
