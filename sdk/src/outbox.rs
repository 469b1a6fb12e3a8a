//! An exactly-once outbox: work for the CRM (a call's log) waits under one
//! key per id, `<outbox prefix><id>`, until one instance delivers it.
//!
//! - **Enqueue** writes the entry guarded by "no entry, and the id is not
//!   in its done bucket", so an id is queued once however often its event
//!   comes.
//! - **Deliver** takes a lease on the entry and counts the attempt, with a
//!   compare-and-swap, before it sends anything: one instance delivers.
//!   An entry attempted before may have been delivered by an attempt whose
//!   answer was lost, so the CRM's [`Deliver::deliver`] first looks it up
//!   (e.g. a record by call id) before creating it.
//! - **Done**: a delivered entry is deleted and its id added to the done
//!   ledger in one batch; ids stay there for [`Deliver::DONE_KEEP_MS`], so
//!   late and repeated events are ignored.
//! - **Retry**: a failed attempt frees the lease and waits, 5 s doubling
//!   per attempt up to 5 min (a conflict: 5 s), never before the CRM's own
//!   back-off ends.
//!
//! The done ledger keeps ids in 64 buckets (`<done prefix><xx>`) rather
//! than one key per id, since the host's quota counts keys.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::lease::{Lease, Until};
use crate::record::{CAS_ROUNDS, Change, Unreadable, UpdateError, update};
use crate::store::{Batch, Repair, Store, encode};

/// Buckets of a ledger.
pub const BUCKETS: u8 = 64;
/// The first retry delay of an entry; it doubles per attempt.
pub const RETRY_FIRST_MS: u64 = 5_000;
/// The longest retry delay of an entry.
pub const RETRY_MAX_MS: u64 = 5 * 60 * 1000;
/// At most this many entries are delivered per `run_pending` call, and no
/// new one is started after [`RUN_BUDGET_MS`], so a call stays within its
/// deadline.
pub const RUN_MAX_ITEMS: usize = 25;
/// See [`RUN_MAX_ITEMS`].
pub const RUN_BUDGET_MS: u64 = 5_000;

/// A bucket of ids with the time each was recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// id -> when, ms since the Unix epoch.
    #[serde(default)]
    pub entries: BTreeMap<String, u64>,
}

impl Ledger {
    /// Forget ids recorded `keep_ms` or longer before `now`.
    pub fn prune(&mut self, now: u64, keep_ms: u64) {
        self.entries
            .retain(|_, at| now.saturating_sub(*at) < keep_ms);
    }
}

/// The bucket key of `id` under `prefix`.
pub fn bucket_key(prefix: &str, id: &str) -> String {
    let hash = Sha256::digest(id.as_bytes());
    format!("{prefix}{:02x}", hash[0] % BUCKETS)
}

/// `id` made safe for a key: `%`, `/` and control characters escaped.
pub fn key_part(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c == '%' || c == '/' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The ledger bucket under `key` with its bytes (for the precondition);
/// an unreadable bucket reads as empty and is replaced, guarded by its
/// bytes: it only remembers duplicates to ignore.
pub fn read_ledger<H: Host, R: Repair>(
    store: &Store<'_, H, R>,
    key: &str,
) -> Result<(Ledger, Option<Vec<u8>>), PluginError> {
    match store.get_raw(key)? {
        None => Ok((Ledger::default(), None)),
        Some(raw) => Ok((serde_json::from_slice(&raw).unwrap_or_default(), Some(raw))),
    }
}

/// Add `id` to its bucket under `prefix`, pruning ids older than
/// `keep_ms`; false when it was there already.
pub fn record_once<H: Host, R: Repair>(
    store: &Store<'_, H, R>,
    now_ms: impl Fn() -> u64,
    prefix: &str,
    id: &str,
    keep_ms: u64,
) -> Result<bool, UpdateError> {
    update(
        store,
        &bucket_key(prefix, id),
        Unreadable::Replace,
        CAS_ROUNDS,
        |ledger: Option<Ledger>| {
            let mut ledger = ledger.unwrap_or_default();
            if ledger.entries.contains_key(id) {
                return Ok(Change::Keep(false));
            }
            let now = now_ms();
            ledger.prune(now, keep_ms);
            ledger.entries.insert(id.to_string(), now);
            Ok(Change::Write(ledger, true))
        },
    )
}

/// An exponential back-off: `first_ms` after the first failure, doubling
/// per further one, at most `max_ms` (also for a CRM's own back-off after
/// its limits or an outage).
pub fn doubling_ms(failures: u32, first_ms: u64, max_ms: u64) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (first_ms << doublings).min(max_ms)
}

/// The wait before retrying an entry after its `attempts`-th attempt
/// failed with `error`.
pub fn retry_delay_ms(attempts: u32, error: &PluginError) -> u64 {
    match error {
        // Another instance holds what the delivery needs (a record being
        // created): soon free.
        PluginError::Conflict(_) => RETRY_FIRST_MS,
        _ => doubling_ms(attempts, RETRY_FIRST_MS, RETRY_MAX_MS),
    }
}

/// What the outbox needs of a stored entry; the CRM's type keeps its own
/// stored field names.
pub trait OutboxEntry: Clone + Serialize + DeserializeOwned {
    /// The id it is delivered once for (a call id).
    fn id(&self) -> &str;
    /// Delivery attempts started (counted before anything is sent).
    fn attempts(&self) -> u32;
    /// Set the attempts.
    fn set_attempts(&mut self, attempts: u32);
    /// Not tried again before this time, ms since the Unix epoch.
    fn next_at_ms(&self) -> u64;
    /// Set when it is tried again.
    fn set_next_at_ms(&mut self, at: u64);
    /// The lease of the instance delivering it now.
    fn lease(&self) -> Option<&Lease<Until>>;
    /// Set or clear the lease.
    fn set_lease(&mut self, lease: Option<Lease<Until>>);
    /// Record why the last attempt failed.
    fn set_last_error(&mut self, error: Option<String>);
}

/// A ready entry: the CRM's payload (flattened into the stored JSON) and
/// the outbox's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<P> {
    /// The id it is delivered once for.
    pub id: String,
    /// What to deliver.
    #[serde(flatten)]
    pub payload: P,
    /// Delivery attempts started.
    pub attempts: u32,
    /// Not tried again before this time.
    pub next_at_ms: u64,
    /// When it was queued.
    pub queued_at_ms: u64,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The lease of the instance delivering it now.
    #[serde(default)]
    pub lease: Option<Lease<Until>>,
}

impl<P> Entry<P> {
    /// A new entry for `id`, due at `now`.
    pub fn new(id: &str, payload: P, now: u64) -> Self {
        Self {
            id: id.to_string(),
            payload,
            attempts: 0,
            next_at_ms: now,
            queued_at_ms: now,
            last_error: None,
            lease: None,
        }
    }
}

impl<P: Clone + Serialize + DeserializeOwned> OutboxEntry for Entry<P> {
    fn id(&self) -> &str {
        &self.id
    }
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn set_attempts(&mut self, attempts: u32) {
        self.attempts = attempts;
    }
    fn next_at_ms(&self) -> u64 {
        self.next_at_ms
    }
    fn set_next_at_ms(&mut self, at: u64) {
        self.next_at_ms = at;
    }
    fn lease(&self) -> Option<&Lease<Until>> {
        self.lease.as_ref()
    }
    fn set_lease(&mut self, lease: Option<Lease<Until>>) {
        self.lease = lease;
    }
    fn set_last_error(&mut self, error: Option<String>) {
        self.last_error = error;
    }
}

/// How one CRM delivers an outbox's entries.
pub trait Deliver {
    /// The stored entry.
    type Entry: OutboxEntry;
    /// What a delivery made (a record's id).
    type Receipt;
    /// What replaces a damaged value of the plugin's keys.
    type Repair: Repair;
    /// What an entry is, with its article, for log lines ("a call log").
    const ENTRY: &'static str = "an outbox entry";
    /// The prefix of the entries' keys.
    const OUTBOX_PREFIX: &'static str;
    /// The prefix of the done ledger's buckets.
    const DONE_PREFIX: &'static str;
    /// How long a delivered id is remembered.
    const DONE_KEEP_MS: u64;

    /// Deliver `entry` (its attempt already counted). With
    /// `entry.attempts() > 1` an earlier attempt may have delivered it and
    /// lost the answer: look for what it made before making it again.
    fn deliver(&self, entry: &Self::Entry) -> Result<Self::Receipt, PluginError>;
    /// The CRM's own back-off, if one lasts at `now_ms`: when it ends and
    /// the error meanwhile. Nothing is delivered before it ends.
    fn hold_off(&self, _now_ms: u64) -> Option<(u64, PluginError)> {
        None
    }
    /// Whether `error` stops a run: the CRM is down, limited or
    /// disconnected, so the other entries would fail alike.
    fn stops_run(error: &PluginError) -> bool {
        matches!(
            error,
            PluginError::CrmUnavailable(_)
                | PluginError::RateLimited(_)
                | PluginError::NotConnected(_)
                | PluginError::NotConfigured(_)
        )
    }
    /// Say that `entry` was delivered (a log line).
    fn delivered(&self, _entry: &Self::Entry, _receipt: &Self::Receipt) {}
    /// The error when the done ledger stays busy through every round.
    fn busy(&self) -> PluginError {
        PluginError::Conflict(
            "the outbox is busy with concurrent updates; it will be retried".into(),
        )
    }
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued<O> {
    /// A new entry waits.
    Queued(O),
    /// The id was recorded as done without a delivery.
    Done(O),
    /// The id waits already, or is done.
    Known,
}

/// What to do with an id being enqueued.
pub enum Enqueue<E> {
    /// Queue this entry.
    Queue(E),
    /// Record the id as done without delivering anything (rules skip it).
    Done,
}

/// The outbox of `D` on `host`.
pub struct Outbox<'h, H: Host, D: Deliver> {
    host: &'h H,
    crm: D,
}

impl<'h, H: Host, D: Deliver> Outbox<'h, H, D> {
    /// The outbox over `host`, delivering with `crm`.
    pub fn new(host: &'h H, crm: D) -> Self {
        Self { host, crm }
    }

    fn store(&self) -> Store<'h, H, D::Repair> {
        Store::new(self.host)
    }

    /// The entry key of `id`.
    pub fn key(id: &str) -> String {
        format!("{}{}", D::OUTBOX_PREFIX, key_part(id))
    }

    /// The done bucket key of `id`.
    pub fn done_key(id: &str) -> String {
        bucket_key(D::DONE_PREFIX, id)
    }

    /// Enqueue `id` once. Each round, unless the id waits or is done,
    /// `decide` gets the time and an empty batch, adds what must commit
    /// with the entry (guarded by its own preconditions) and says what to
    /// do; the outbox adds its preconditions and the write.
    pub fn enqueue<O>(
        &self,
        id: &str,
        mut decide: impl FnMut(u64, Batch) -> Result<(Batch, Enqueue<D::Entry>, O), PluginError>,
    ) -> Result<Enqueued<O>, PluginError> {
        let store = self.store();
        let key = Self::key(id);
        let done_key = Self::done_key(id);
        for _ in 0..CAS_ROUNDS {
            let now = self.host.now_ms();
            let (mut done, done_raw) = read_ledger(&store, &done_key)?;
            if done.entries.contains_key(id) || store.get_raw(&key)?.is_some() {
                return Ok(Enqueued::Known);
            }
            let (batch, what, outcome) = decide(now, Batch::new())?;
            let batch = batch.expect_raw(&done_key, done_raw).expect_raw(&key, None);
            let (batch, queued) = match what {
                Enqueue::Done => {
                    done.prune(now, D::DONE_KEEP_MS);
                    done.entries.insert(id.to_string(), now);
                    (batch.set(&done_key, &done)?, false)
                }
                Enqueue::Queue(entry) => (batch.set(&key, &entry)?, true),
            };
            match store.commit(&batch) {
                Ok(()) if queued => return Ok(Enqueued::Queued(outcome)),
                Ok(()) => return Ok(Enqueued::Done(outcome)),
                Err(PluginError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(self.crm.busy())
    }

    /// Deliver the entry of `id` (see [`Outbox::deliver`]).
    pub fn deliver_id(&self, id: &str) -> Result<Option<D::Receipt>, PluginError> {
        self.deliver(&Self::key(id))
    }

    /// Deliver the entry under `key` if it is due and free: what the
    /// delivery made, or `None` when it is not due, leased by another
    /// instance, or gone.
    pub fn deliver(&self, key: &str) -> Result<Option<D::Receipt>, PluginError> {
        let store = self.store();
        let Some((entry, raw)) = store.get_with_raw::<D::Entry>(key)? else {
            return Ok(None);
        };
        let now = self.host.now_ms();
        if entry.next_at_ms() > now || entry.lease().is_some_and(|l| l.live(now)) {
            return Ok(None);
        }
        if let Some((_, error)) = self.crm.hold_off(now) {
            return Err(error);
        }
        let mut leased = entry;
        leased.set_attempts(leased.attempts().saturating_add(1));
        leased.set_lease(Some(Lease::take(self.host, Until::lease_from(now))));
        let leased_raw = encode(&leased)?;
        match store.commit(&Batch::new().expect_raw(key, Some(raw)).set(key, &leased)?) {
            Ok(()) => {}
            // Someone else took it meanwhile.
            Err(PluginError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        match self.crm.deliver(&leased) {
            Ok(receipt) => {
                self.finish(key, &leased, leased_raw, &receipt)?;
                Ok(Some(receipt))
            }
            Err(error) => {
                let now = self.host.now_ms();
                let backoff_until = self.crm.hold_off(now).map_or(0, |(until, _)| until);
                let mut next = leased;
                next.set_lease(None);
                next.set_last_error(Some(error.to_string()));
                let at = (now + retry_delay_ms(next.attempts(), &error)).max(backoff_until);
                next.set_next_at_ms(at);
                let release = Batch::new()
                    .expect_raw(key, Some(leased_raw))
                    .set(key, &next)?;
                if let Err(e) = store.commit(&release) {
                    self.host.log(
                        Level::Warn,
                        &format!("could not record a failed delivery: {e}"),
                    );
                }
                Err(error)
            }
        }
    }

    /// Remove a delivered entry and remember its id, in one batch.
    fn finish(
        &self,
        key: &str,
        leased: &D::Entry,
        leased_raw: Vec<u8>,
        receipt: &D::Receipt,
    ) -> Result<(), PluginError> {
        let store = self.store();
        let id = leased.id();
        let done_key = Self::done_key(id);
        for _ in 0..CAS_ROUNDS {
            let now = self.host.now_ms();
            let (mut done, done_raw) = read_ledger(&store, &done_key)?;
            done.prune(now, D::DONE_KEEP_MS);
            done.entries.insert(id.to_string(), now);
            let batch = Batch::new()
                .expect_raw(key, Some(leased_raw.clone()))
                .expect_raw(&done_key, done_raw)
                .delete(key)
                .set(&done_key, &done)?;
            match store.commit(&batch) {
                Ok(()) => {
                    self.crm.delivered(leased, receipt);
                    return Ok(());
                }
                Err(PluginError::Conflict(_)) => {
                    if store.get_raw(key)?.as_deref() != Some(leased_raw.as_slice()) {
                        // Not ours any more; its next attempt finds what
                        // this one made.
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(self.crm.busy())
    }

    /// Deliver what is due, within [`RUN_MAX_ITEMS`] and [`RUN_BUDGET_MS`];
    /// the number of entries still waiting.
    pub fn run_pending(&self) -> Result<u32, PluginError> {
        let started = self.host.now_ms();
        let keys = self.store().keys(D::OUTBOX_PREFIX)?;
        for key in keys.iter().take(RUN_MAX_ITEMS) {
            let now = self.host.now_ms();
            if now.saturating_sub(started) > RUN_BUDGET_MS || self.crm.hold_off(now).is_some() {
                break;
            }
            match self.deliver(key) {
                Ok(_) => {}
                // The CRM is down, limited or disconnected: the rest
                // waits too; no point in asking again now.
                Err(e) if D::stops_run(&e) => break,
                Err(e) => self.host.log(
                    Level::Warn,
                    &format!("{} could not be delivered: {e}", D::ENTRY),
                ),
            }
        }
        Ok(self.store().keys(D::OUTBOX_PREFIX)?.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::store::SaveAgain;
    use crate::testing::FakeHost;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }

    /// A CRM that stores notes by id; `down` fails deliveries, `lose`
    /// makes the next created note's answer get lost.
    #[derive(Default)]
    struct Crm {
        notes: RefCell<BTreeMap<String, String>>,
        creates: Cell<u32>,
        down: Cell<bool>,
        lose: Cell<bool>,
    }

    impl Deliver for &Crm {
        type Entry = Entry<Note>;
        type Receipt = String;
        type Repair = SaveAgain;
        const OUTBOX_PREFIX: &'static str = "out/";
        const DONE_PREFIX: &'static str = "done/";
        const DONE_KEEP_MS: u64 = 1_000_000;

        fn deliver(&self, entry: &Entry<Note>) -> Result<String, PluginError> {
            if self.down.get() {
                return Err(PluginError::CrmUnavailable("down".into()));
            }
            if entry.attempts > 1
                && let Some(found) = self.notes.borrow().get(&entry.id)
            {
                return Ok(found.clone());
            }
            self.creates.set(self.creates.get() + 1);
            let made = format!("note-{}", self.creates.get());
            self.notes
                .borrow_mut()
                .insert(entry.id.clone(), made.clone());
            if self.lose.replace(false) {
                return Err(PluginError::CrmUnavailable("answer lost".into()));
            }
            Ok(made)
        }
    }

    fn enqueue(outbox: &Outbox<'_, FakeHost, &Crm>, id: &str) -> Enqueued<()> {
        outbox
            .enqueue(id, |now, batch| {
                let note = Note {
                    text: format!("about {id}"),
                };
                Ok((batch, Enqueue::Queue(Entry::new(id, note, now)), ()))
            })
            .unwrap_or_else(|e| panic!("enqueue: {e}"))
    }

    #[test]
    fn an_id_is_queued_and_delivered_once() {
        let host = FakeHost::default();
        let crm = Crm::default();
        let outbox = Outbox::new(&host, &crm);
        assert_eq!(enqueue(&outbox, "c/1"), Enqueued::Queued(()));
        assert_eq!(enqueue(&outbox, "c/1"), Enqueued::Known);
        assert!(host.kv_text("out/c%2F1").is_some());
        assert_eq!(outbox.run_pending().ok(), Some(0));
        assert_eq!(crm.creates.get(), 1);
        // Done: a late event is ignored, nothing is delivered again.
        assert_eq!(enqueue(&outbox, "c/1"), Enqueued::Known);
        assert_eq!(outbox.run_pending().ok(), Some(0));
        assert_eq!(crm.creates.get(), 1);
        assert!(host.kv_keys().iter().all(|k| !k.starts_with("out/")));
    }

    #[test]
    fn a_failed_delivery_waits_doubling_and_a_lost_answer_is_found() {
        let host = FakeHost::default();
        host.set_now_ms(1_000_000);
        let crm = Crm::default();
        let outbox = Outbox::new(&host, &crm);
        enqueue(&outbox, "c1");
        crm.lose.set(true);
        assert_eq!(outbox.run_pending().ok(), Some(1));
        let entry = host.kv_json("out/c1");
        assert_eq!(
            entry.as_ref().map(|e| e["attempts"].clone()),
            Some(1.into())
        );
        assert_eq!(
            entry.as_ref().map(|e| e["next_at_ms"].clone()),
            Some((1_000_000 + RETRY_FIRST_MS).into())
        );
        assert_eq!(
            entry.map(|e| e["lease"].clone()),
            Some(serde_json::Value::Null)
        );
        // Not due yet: nothing is tried.
        assert_eq!(outbox.run_pending().ok(), Some(1));
        crm.down.set(true);
        host.advance_ms(RETRY_FIRST_MS);
        assert_eq!(outbox.run_pending().ok(), Some(1));
        assert_eq!(
            host.kv_json("out/c1").map(|e| e["next_at_ms"].clone()),
            Some((1_000_000 + 3 * RETRY_FIRST_MS).into()),
            "the second wait is twice the first"
        );
        crm.down.set(false);
        host.advance_ms(2 * RETRY_FIRST_MS);
        assert_eq!(outbox.run_pending().ok(), Some(0));
        assert_eq!(
            crm.creates.get(),
            1,
            "the lost note was found, not made again"
        );
    }

    #[test]
    fn a_leased_entry_is_left_to_its_holder() {
        let host = FakeHost::default();
        let crm = Crm::default();
        let outbox = Outbox::new(&host, &crm);
        enqueue(&outbox, "c1");
        // Another instance takes the lease between our read and our take.
        host.before_next_batch(|kv| {
            if let Some(raw) = kv.get_mut("out/c1") {
                let mut e: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
                e["lease"] = serde_json::json!({"holder":"other","until_ms":u64::MAX});
                *raw = e.to_string().into_bytes();
            }
        });
        assert_eq!(outbox.deliver("out/c1").ok(), Some(None));
        assert_eq!(crm.creates.get(), 0);
        assert_eq!(
            outbox.deliver("out/c1").ok(),
            Some(None),
            "its lease is live"
        );
    }

    #[test]
    fn skipped_ids_are_done_without_delivery() {
        let host = FakeHost::default();
        let crm = Crm::default();
        let outbox = Outbox::new(&host, &crm);
        let done = outbox.enqueue("c1", |_, batch| Ok((batch, Enqueue::Done, "skipped")));
        assert_eq!(done.ok(), Some(Enqueued::Done("skipped")));
        assert_eq!(enqueue(&outbox, "c1"), Enqueued::Known);
        assert_eq!(outbox.run_pending().ok(), Some(0));
        assert_eq!(crm.creates.get(), 0);
    }

    #[test]
    fn ledgers_forget_old_ids_and_keys_are_safe() {
        let host = FakeHost::default();
        let store = Store::<_, SaveAgain>::new(&host);
        let now = || host.now_ms();
        assert_eq!(record_once(&store, now, "p/", "a", 100).ok(), Some(true));
        assert_eq!(record_once(&store, now, "p/", "a", 100).ok(), Some(false));
        let mut ledger = Ledger::default();
        ledger.entries.insert("old".into(), 0);
        ledger.entries.insert("new".into(), 1);
        ledger.prune(100, 100);
        assert_eq!(ledger.entries.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(key_part("a/b%c\n"), "a%2Fb%25c%0A");
        let k = bucket_key("calls/done/", "x");
        assert!(k.starts_with("calls/done/") && k.len() == "calls/done/".len() + 2);
        assert_eq!(
            retry_delay_ms(1, &PluginError::NotFound(String::new())),
            5_000
        );
        assert_eq!(
            retry_delay_ms(3, &PluginError::NotFound(String::new())),
            20_000
        );
        assert_eq!(
            retry_delay_ms(99, &PluginError::NotFound(String::new())),
            RETRY_MAX_MS
        );
        assert_eq!(
            retry_delay_ms(9, &PluginError::Conflict(String::new())),
            5_000
        );
    }
}
