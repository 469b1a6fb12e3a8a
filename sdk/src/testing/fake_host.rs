//! A fake host for native unit tests: an in-memory kv-store with the same
//! batch semantics as the real one, a controllable clock, recorders for the
//! other host calls, and an HTTP side scripted with a handler (usually the
//! fake Salesforce). It is `Sync`, so several plugin instances on several
//! threads can share one (as concurrent calls share the real host's store).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::bindings::pbx::crm::http_fetch::{self, Method};
use crate::bindings::pbx::crm::types::CrmRecord;
use crate::bindings::pbx::crm::{directory, kv_store, log, open_browser};
use crate::host::Host;

type Hook = Box<dyn FnOnce(&mut BTreeMap<String, Vec<u8>>) + Send>;
type FetchHandler =
    dyn Fn(&http_fetch::Request) -> Result<http_fetch::Response, http_fetch::Error> + Send + Sync;

/// Lock, ignoring poisoning (a panicking test thread must not hide the
/// original failure behind a PoisonError).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One request the plugin sent.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

/// One `offer-records` the fake host got.
#[derive(Debug, Clone)]
pub struct Offer {
    /// "administrator" or the extension.
    pub audience: String,
    /// What the offer is about.
    pub caption: open_browser::Caption,
    /// The records offered.
    pub records: Vec<CrmRecord>,
}

#[derive(Default)]
pub struct FakeHost {
    kv: Mutex<BTreeMap<String, Vec<u8>>>,
    logs: Mutex<Vec<String>>,
    opened: Mutex<Vec<String>>,
    opened_for: Mutex<Vec<(String, String)>>,
    /// The caption of each opened page, in order.
    captions: Mutex<Vec<Option<open_browser::Caption>>>,
    /// Every `offer-records`: audience, caption, records.
    offers: Mutex<Vec<Offer>>,
    extensions: Mutex<Vec<directory::Extension>>,
    /// Hooks for the coming batches, in order (`None`: no hook for that one).
    before_batch: Mutex<VecDeque<Option<Hook>>>,
    batches: Mutex<Vec<Vec<String>>>,
    now_ms: AtomicU64,
    random_calls: AtomicU64,
    fetch: Mutex<Option<Arc<FetchHandler>>>,
    requests: Mutex<Vec<Recorded>>,
    browser_fails: AtomicBool,
    real_sleep: AtomicBool,
    sleeps: AtomicU32,
}

#[allow(dead_code)]
impl FakeHost {
    pub fn kv_keys(&self) -> Vec<String> {
        lock(&self.kv).keys().cloned().collect()
    }

    pub fn kv_dump(&self) -> String {
        lock(&self.kv)
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The value under `key` as text.
    pub fn kv_text(&self, key: &str) -> Option<String> {
        lock(&self.kv)
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The value under `key` as JSON.
    pub fn kv_json(&self, key: &str) -> Option<serde_json::Value> {
        lock(&self.kv)
            .get(key)
            .and_then(|v| serde_json::from_slice(v).ok())
    }

    /// Put a raw value.
    pub fn kv_put(&self, key: &str, value: &str) {
        lock(&self.kv).insert(key.into(), value.as_bytes().to_vec());
    }

    pub fn logs(&self) -> Vec<String> {
        lock(&self.logs).clone()
    }

    pub fn opened(&self) -> Vec<String> {
        lock(&self.opened).clone()
    }

    /// Every opened page with its audience ("administrator" or the
    /// extension number).
    pub fn opened_for(&self) -> Vec<(String, String)> {
        lock(&self.opened_for).clone()
    }

    /// The caption of every opened page, in order (`None`: opened without).
    pub fn captions(&self) -> Vec<Option<open_browser::Caption>> {
        lock(&self.captions).clone()
    }

    /// Every `offer-records` so far, in order.
    pub fn offers(&self) -> Vec<Offer> {
        lock(&self.offers).clone()
    }

    /// Make `open_browser` fail.
    pub fn fail_browser(&self) {
        self.browser_fails.store(true, Ordering::SeqCst);
    }

    /// Run `hook` on the store right before the next batch commits, to play a
    /// concurrent writer.
    pub fn before_next_batch(
        &self,
        hook: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) + Send + 'static,
    ) {
        self.before_batch_after(0, hook);
    }

    /// Like `before_next_batch`, but for the batch after `skip` others.
    pub fn before_batch_after(
        &self,
        skip: usize,
        hook: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) + Send + 'static,
    ) {
        let mut queue = lock(&self.before_batch);
        queue.clear();
        queue.extend((0..skip).map(|_| None));
        queue.push_back(Some(Box::new(hook)));
    }

    /// The keys each committed batch wrote (set or deleted), in order.
    pub fn batches(&self) -> Vec<Vec<String>> {
        lock(&self.batches).clone()
    }

    pub fn set_extensions(&self, extensions: Vec<directory::Extension>) {
        *lock(&self.extensions) = extensions;
    }

    pub fn set_now_ms(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Answer fetches with `handler` (every request is recorded first).
    pub fn on_fetch(
        &self,
        handler: impl Fn(&http_fetch::Request) -> Result<http_fetch::Response, http_fetch::Error>
        + Send
        + Sync
        + 'static,
    ) {
        *lock(&self.fetch) = Some(Arc::new(handler));
    }

    /// Every request sent so far, but the authorization preflight (its own
    /// tests use `all_requests`).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests)
            .iter()
            .filter(|r| !r.body.contains("pbx-preflight-not-a-code"))
            .cloned()
            .collect()
    }

    /// Every request sent so far, the preflight included.
    pub fn all_requests(&self) -> Vec<Recorded> {
        lock(&self.requests).clone()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.requests).clear();
    }

    /// `sleep_ms` really sleeps (for tests with threads) instead of moving
    /// the fake clock.
    pub fn use_real_sleep(&self) {
        self.real_sleep.store(true, Ordering::SeqCst);
    }

    /// How often `sleep_ms` was called.
    pub fn sleeps(&self) -> u32 {
        self.sleeps.load(Ordering::SeqCst)
    }
}

/// splitmix64: distinct, reproducible "random" bytes per call.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Host for FakeHost {
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, kv_store::Error> {
        Ok(lock(&self.kv).get(key).cloned())
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), kv_store::Error> {
        lock(&self.kv).insert(key.into(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<(), kv_store::Error> {
        lock(&self.kv).remove(key);
        Ok(())
    }

    fn kv_list(&self, prefix: &str) -> Result<Vec<String>, kv_store::Error> {
        Ok(lock(&self.kv)
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
        let hook = lock(&self.before_batch).pop_front().flatten();
        // One lock for check and writes: the batch is one transaction.
        let mut kv = lock(&self.kv);
        if let Some(hook) = hook {
            hook(&mut kv);
        }
        for p in preconditions {
            if kv.get(&p.key) != p.expected.as_ref() {
                return Err(kv_store::Error::Conflict(p.key.clone()));
            }
        }
        let mut written = Vec::new();
        for w in writes {
            match w {
                kv_store::Write::Set(e) => {
                    kv.insert(e.key.clone(), e.value.clone());
                    written.push(e.key.clone());
                }
                kv_store::Write::Delete(k) => {
                    kv.remove(k);
                    written.push(k.clone());
                }
            }
        }
        lock(&self.batches).push(written);
        Ok(())
    }

    fn fetch(
        &self,
        request: &http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        lock(&self.requests).push(Recorded {
            method: request.method,
            url: request.url.clone(),
            headers: request
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            body: request
                .body
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        });
        // Call the handler without holding the lock: it may be slow, and
        // other threads fetch meanwhile.
        let handler = lock(&self.fetch).clone();
        match handler {
            Some(handler) => handler(request),
            None => Err(http_fetch::Error::Unreachable(format!(
                "the fake host has no network ({})",
                request.url
            ))),
        }
    }

    fn open_page(
        &self,
        url: &str,
        audience: &open_browser::Audience,
        caption: Option<&open_browser::Caption>,
    ) -> Result<(), String> {
        if self.browser_fails.load(Ordering::SeqCst) {
            return Err("no browser is attached".into());
        }
        let who = match audience {
            open_browser::Audience::Administrator => "administrator".to_string(),
            open_browser::Audience::Extension(n) => n.clone(),
        };
        lock(&self.opened_for).push((url.into(), who));
        lock(&self.opened).push(url.into());
        lock(&self.captions).push(caption.cloned());
        Ok(())
    }

    fn offer_records(
        &self,
        audience: &open_browser::Audience,
        caption: &open_browser::Caption,
        records: &[CrmRecord],
    ) -> Result<(), String> {
        if self.browser_fails.load(Ordering::SeqCst) {
            return Err("no browser is attached".into());
        }
        let who = match audience {
            open_browser::Audience::Administrator => "administrator".to_string(),
            open_browser::Audience::Extension(n) => n.clone(),
        };
        lock(&self.offers).push(Offer {
            audience: who,
            caption: caption.clone(),
            records: records.to_vec(),
        });
        Ok(())
    }

    fn extensions(&self) -> Vec<directory::Extension> {
        lock(&self.extensions).clone()
    }

    fn log(&self, _level: log::Level, message: &str) {
        lock(&self.logs).push(message.into());
    }

    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn random_bytes(&self, len: usize) -> Vec<u8> {
        let mut state = self.random_calls.fetch_add(1, Ordering::SeqCst);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            out.extend_from_slice(&splitmix(&mut state).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn sleep_ms(&self, ms: u64) {
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        if self.real_sleep.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        } else {
            self.advance_ms(ms);
        }
    }
}

/// An extension of the PBX directory.
pub fn extension(number: &str, email: Option<&str>) -> directory::Extension {
    directory::Extension {
        number: number.into(),
        name: format!("Extension {number}"),
        email: email.map(Into::into),
    }
}
