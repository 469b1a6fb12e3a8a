//! The calls feature: caller lookup (SOSL over phone fields, a documented
//! winner, a short cache), the pop-up of the caller's record, the call
//! journal (one Task per call id, through an outbox in the kv-store), unknown
//! callers (a new Contact or Lead, remembered while Salesforce's search index
//! lags), and click-to-call checks.
//!
//! # Lookup
//! The number is normalized to E.164 ([`phone::normalize`]) and searched
//! with [`sosl`]; when nothing matches, the national significant number is
//! searched too. The winner is a Contact, then a Lead, then an Account; among
//! records of one kind the most recently modified. The others are reported.
//! Answers are cached for [`CACHE_MS`] under `calls/lookup/<E.164>`. A
//! number that cannot be normalized is answered with no match and the number
//! as given (as the WIT `caller.number` documents); nothing is sent.
//!
//! # Exactly once
//! `ended` writes an outbox item `calls/outbox/<call id>` in one batch with
//! the pending count, guarded by "no item and the call id is not in its done
//! bucket". Delivery takes a lease on the item (and counts the attempt) with
//! a compare-and-swap before it sends anything; an item attempted before is
//! first looked up by `CallObject`, so a create whose answer was lost (a
//! crash, a timeout) is found instead of made twice. Done call ids are kept
//! in 64 buckets (`calls/done/<xx>`) for [`DONE_KEEP_MS`], so late and
//! repeated events are ignored without one key per call (the host's quota
//! counts keys).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::associations::Associations;
use crate::bindings::exports::pbx::crm::calls::{CallEvent, Caller, CrmRecord, Direction, Phase};
use crate::bindings::pbx::crm::log::Level;
use crate::bindings::pbx::crm::open_browser::Audience;
use crate::connection::Tokens;
use crate::error::PluginError;
use crate::host::Host;
use crate::oauth;
use crate::phone::{self, Normalized};
use crate::salesforce::query::{search_path, sosl, task_by_call_object};
use crate::salesforce::{Backoff, Salesforce, SalesforceError};
use crate::settings::{CallSettings, PopupOn, Rule, Settings, TaskOwner, UnknownCaller};
use crate::store::{Batch, Store, decode, encode, keys};
use crate::time::{clock, date, datetime, human_duration};

/// How long a lookup's answer is reused.
pub const CACHE_MS: u64 = 60_000;
/// How long a record created for an unknown caller is remembered (Salesforce
/// indexes new records for search within minutes).
pub const REMEMBER_MS: u64 = 24 * 60 * 60 * 1000;
/// How long a logged call id is remembered, to ignore late duplicates.
pub const DONE_KEEP_MS: u64 = 3 * 24 * 60 * 60 * 1000;
/// How long a shown pop-up is remembered.
pub const POPPED_KEEP_MS: u64 = 24 * 60 * 60 * 1000;
/// A delivery lease: longer than a plugin call's deadline (10 s), so a live
/// holder never loses it; a crashed holder's lease lapses soon.
pub const LEASE_MS: u64 = 15_000;
/// The first retry delay of an item; it doubles per attempt.
const RETRY_FIRST_MS: u64 = 5_000;
/// The longest retry delay of an item.
const RETRY_MAX_MS: u64 = 5 * 60 * 1000;
/// At most this many items are delivered per `run_pending` call, and no new
/// one is started after [`RUN_BUDGET_MS`], so a call stays within its deadline.
const RUN_MAX_ITEMS: usize = 25;
const RUN_BUDGET_MS: u64 = 5_000;
/// Buckets of the done and pop-up ledgers.
const BUCKETS: u8 = 64;
/// Bounded rounds of compare-and-swap retries.
const CAS_ROUNDS: usize = 16;
/// Pruning runs at most this often, and reads at most `PRUNE_MAX` keys.
const PRUNE_EVERY_MS: u64 = 10 * 60 * 1000;
const PRUNE_MAX: usize = 200;
/// A call id is the Task's `CallObject`, a 255-character field.
const MAX_CALL_ID: usize = 255;

/// A record that matched a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    /// Contact, Lead or Account.
    pub object: String,
    /// The record's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// A Contact's Account, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `LastModifiedDate` as Salesforce wrote it (ISO 8601, UTC).
    #[serde(default)]
    pub modified: String,
    /// `{instance_url}/lightning/r/{Object}/{Id}/view`.
    pub url: String,
}

impl Match {
    fn rank(&self) -> u8 {
        match self.object.as_str() {
            "Contact" => 0,
            "Lead" => 1,
            "Account" => 2,
            _ => 3,
        }
    }

    fn record(&self) -> CrmRecord {
        CrmRecord {
            object_type: self.object.clone(),
            id: self.id.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
        }
    }
}

/// Sort matches winner first: Contact, Lead, Account; then the most
/// recently modified; then by id (stable).
pub fn rank(matches: &mut [Match]) {
    matches.sort_by(|a, b| {
        a.rank()
            .cmp(&b.rank())
            .then_with(|| b.modified.cmp(&a.modified))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// A cached lookup, under `calls/lookup/<E.164>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedLookup {
    /// When it was looked up.
    pub at_ms: u64,
    /// The matches, winner first.
    pub matches: Vec<Match>,
}

/// A record created for an unknown caller, under `calls/created/<E.164>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remembered {
    /// The record.
    pub record: Match,
    /// When it was created.
    pub created_at_ms: u64,
}

/// A lease on an outbox item or on creating a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemLease {
    /// A random nonce naming the holder.
    pub holder: String,
    /// When it lapses.
    pub until_ms: u64,
}

/// The call as the journal keeps it (the `ended` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The PBX's call id (the Task's `CallObject`).
    pub call_id: String,
    /// inbound, outbound or internal.
    pub direction: String,
    /// The outside number as the PBX had it.
    pub external_number: String,
    /// The extension.
    pub extension: String,
    /// Start, answer and end, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// When answered, if it was.
    #[serde(default)]
    pub answered_at_ms: Option<u64>,
    /// When it ended.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    /// The PBX's disposition.
    #[serde(default)]
    pub disposition: Option<String>,
    /// The recording's URL.
    #[serde(default)]
    pub recording_url: Option<String>,
    /// The PBX's default region.
    #[serde(default)]
    pub default_region: String,
}

impl CallRecord {
    fn from_event(e: &CallEvent) -> Self {
        Self {
            call_id: e.call_id.clone(),
            direction: direction_str(e.direction).into(),
            external_number: e.external_number.clone(),
            extension: e.extension.clone(),
            started_at_ms: e.started_at_ms,
            answered_at_ms: e.answered_at_ms,
            ended_at_ms: e.ended_at_ms,
            disposition: e.disposition.clone(),
            recording_url: e.recording_url.clone(),
            default_region: e.default_region.clone(),
        }
    }

    fn answered(&self) -> bool {
        self.answered_at_ms.is_some()
    }

    /// Talk time: answered to ended, 0 when unanswered.
    pub fn duration_s(&self) -> u64 {
        match (self.answered_at_ms, self.ended_at_ms) {
            (Some(a), Some(e)) => e.saturating_sub(a) / 1000,
            _ => 0,
        }
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
    }
}

fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Ringing => "ringing",
        Phase::Answered => "answered",
        Phase::Ended => "ended",
    }
}

/// One call log waiting for Salesforce, under `calls/outbox/<call id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// The call.
    pub call: CallRecord,
    /// The Task's owner (none: the connected user).
    #[serde(default)]
    pub owner_id: Option<String>,
    /// Delivery attempts started (counted before anything is sent).
    pub attempts: u32,
    /// Not tried again before this time.
    pub next_at_ms: u64,
    /// When the call was queued.
    pub queued_at_ms: u64,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The lease of the instance delivering it now.
    #[serde(default)]
    pub lease: Option<ItemLease>,
}

/// A bucket of ids with the time each was recorded, under
/// `calls/done/<xx>` and `calls/popped/<xx>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// id -> when, ms since the Unix epoch.
    #[serde(default)]
    pub entries: BTreeMap<String, u64>,
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

/// The outbox key of `call_id`.
pub fn outbox_key(call_id: &str) -> String {
    format!("{}{}", keys::CALLS_OUTBOX_PREFIX, key_part(call_id))
}

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// What happened to an event's journal part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// A new outbox item.
    Queued,
    /// The call waits already, or is logged.
    Known,
    /// The rules say this call is not logged.
    Skipped,
}

/// The calls feature over a host.
pub struct Calls<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Calls<'h, H> {
    /// The feature over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    fn api(&self) -> Salesforce<'h, H> {
        Salesforce::new(self.host)
    }

    fn settings(&self) -> Result<CallSettings, PluginError> {
        Ok(self
            .store()
            .get::<Settings>(keys::SETTINGS)?
            .unwrap_or_default()
            .calls)
    }

    // --- lookup ---------------------------------------------------------

    /// Look `number` up; a number that cannot be normalized gives no match
    /// and the number as given.
    pub fn lookup(&self, number: &str, region: &str) -> Result<Caller, PluginError> {
        let n = match phone::normalize(number, region) {
            Ok(n) => n,
            Err(bad) => {
                self.host.log(
                    Level::Info,
                    &format!("caller lookup: {}", bad.describe(number)),
                );
                return Ok(Caller {
                    number: number.to_string(),
                    best: None,
                    others: Vec::new(),
                });
            }
        };
        let matches = self.find(&n)?;
        let mut records = matches.iter().map(Match::record);
        Ok(Caller {
            number: n.e164.clone(),
            best: records.next(),
            others: records.collect(),
        })
    }

    /// The records matching `n`, winner first (cached).
    pub fn find(&self, n: &Normalized) -> Result<Vec<Match>, PluginError> {
        let store = self.store();
        let now = self.host.now_ms();
        let cache_key = format!("{}{}", keys::CALLS_LOOKUP_PREFIX, n.e164);
        if let Ok(Some(cached)) = store.get::<CachedLookup>(&cache_key)
            && cached.at_ms <= now
            && now - cached.at_ms < CACHE_MS
        {
            return Ok(cached.matches);
        }
        let tokens: Option<Tokens> = store.get(keys::TOKENS)?;
        let instance = tokens.map(|t| t.instance_url).unwrap_or_default();
        let mut matches = self.search(&n.e164, &instance)?;
        if matches.is_empty() && n.national.len() >= 7 {
            // Numbers stored without their country code may be indexed
            // under the national number only.
            matches = self.search(&n.national, &instance)?;
        }
        if let Some(r) = self.remembered(&n.e164)?
            && !matches.iter().any(|m| m.id == r.record.id)
        {
            matches.push(r.record);
        }
        rank(&mut matches);
        let cached = CachedLookup {
            at_ms: now,
            matches: matches.clone(),
        };
        if let Err(e) = store.put(&cache_key, &cached) {
            self.host
                .log(Level::Warn, &format!("could not cache a lookup: {e}"));
        }
        Ok(matches)
    }

    fn remembered(&self, e164: &str) -> Result<Option<Remembered>, PluginError> {
        let key = format!("{}{}", keys::CALLS_CREATED_PREFIX, e164);
        let now = self.host.now_ms();
        Ok(self
            .store()
            .get::<Remembered>(&key)?
            .filter(|r| now.saturating_sub(r.created_at_ms) < REMEMBER_MS))
    }

    fn search(&self, term: &str, instance: &str) -> Result<Vec<Match>, PluginError> {
        let path = search_path(&sosl(term));
        let answer: Value = self.api().get(&path)?;
        let records = match &answer {
            Value::Array(list) => list.as_slice(),
            other => other
                .get("searchRecords")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
        };
        let text = |r: &Value, f: &str| r.get(f).and_then(Value::as_str).map(str::to_string);
        Ok(records
            .iter()
            .filter_map(|r| {
                let object = r.get("attributes")?.get("type")?.as_str()?.to_string();
                let id = text(r, "Id")?;
                if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return None;
                }
                Some(Match {
                    url: format!("{instance}/lightning/r/{object}/{id}/view"),
                    name: text(r, "Name").unwrap_or_else(|| id.clone()),
                    account_id: text(r, "AccountId"),
                    modified: text(r, "LastModifiedDate").unwrap_or_default(),
                    object,
                    id,
                })
            })
            .collect())
    }

    // --- events ---------------------------------------------------------

    /// Take one call event: the pop-up when its phase is the configured
    /// one, and for `ended` the call journal (queued, then delivered at
    /// once if Salesforce answers).
    pub fn on_event(&self, e: &CallEvent) -> Result<(), PluginError> {
        if e.call_id.trim().is_empty() || e.call_id.chars().count() > MAX_CALL_ID {
            return Err(PluginError::InvalidInput(format!(
                "the call id must have 1 to {MAX_CALL_ID} characters (it becomes the Task's Call Object Identifier)"
            )));
        }
        let settings = self.settings()?;
        let popup_phase = match settings.popup_on {
            PopupOn::Ringing => Some(Phase::Ringing),
            PopupOn::Answered => Some(Phase::Answered),
            PopupOn::Ended => Some(Phase::Ended),
            PopupOn::Never => None,
        };
        if e.phase == Phase::Ended {
            let queued = self.enqueue(e, &settings)?;
            if popup_phase == Some(Phase::Ended) && queued != Queued::Known {
                self.popup(e);
            }
            if queued == Queued::Queued
                && let Err(err) = self.deliver(&outbox_key(&e.call_id))
            {
                self.host.log(
                    Level::Info,
                    &format!("call {} waits for Salesforce: {err}", e.call_id),
                );
            }
            return Ok(());
        }
        if popup_phase == Some(e.phase) {
            // Late events of a call already over are ignored.
            if self.is_over(&e.call_id)? {
                return Ok(());
            }
            self.popup(e);
        }
        Ok(())
    }

    /// Whether the call has ended: its log waits in the outbox or is in the
    /// done ledger. Both are read in one host call (`get-many`), as this is
    /// on the way of every ringing or answered event.
    fn is_over(&self, call_id: &str) -> Result<bool, PluginError> {
        let done_key = bucket_key(keys::CALLS_DONE_PREFIX, call_id);
        let found = self
            .store()
            .get_many_raw(&[outbox_key(call_id), done_key.clone()])?;
        let (queued, ledger) = match found.as_slice() {
            [queued, ledger] => (queued.is_some(), ledger.as_deref()),
            other => {
                return Err(PluginError::Store(format!(
                    "get-many answered {} values for 2 keys",
                    other.len()
                )));
            }
        };
        let done = match ledger {
            Some(bytes) => decode::<Ledger>(&done_key, bytes)?
                .entries
                .contains_key(call_id),
            None => false,
        };
        Ok(queued || done)
    }

    /// Pop the caller's record up for the extension's associated user, once
    /// per call and phase. Best effort: failures are logged.
    fn popup(&self, e: &CallEvent) {
        if let Err(err) = self.try_popup(e) {
            self.host.log(
                Level::Warn,
                &format!("no pop-up for call {}: {err}", e.call_id),
            );
        }
    }

    fn try_popup(&self, e: &CallEvent) -> Result<(), PluginError> {
        if e.direction == Direction::Internal {
            return Ok(());
        }
        if Associations::new(self.host)
            .user_for_extension(&e.extension)?
            .is_none()
        {
            return Ok(());
        }
        let Ok(n) = phone::normalize(&e.external_number, &e.default_region) else {
            return Ok(());
        };
        let Some(best) = self.find(&n)?.into_iter().next() else {
            return Ok(());
        };
        let id = format!("{}/{}", e.call_id, phase_str(e.phase));
        if !self.record_once(keys::CALLS_POPPED_PREFIX, &id, POPPED_KEEP_MS)? {
            return Ok(());
        }
        self.host
            .open_browser(&best.url, &Audience::Extension(e.extension.clone()))
            .map_err(|why| {
                PluginError::CrmUnavailable(format!(
                    "the PBX could not open the record for extension {}: {why}",
                    e.extension
                ))
            })
    }

    /// Add `id` to its ledger bucket; false when it was there already.
    fn record_once(&self, prefix: &str, id: &str, keep_ms: u64) -> Result<bool, PluginError> {
        let store = self.store();
        let key = bucket_key(prefix, id);
        for _ in 0..CAS_ROUNDS {
            let now = self.host.now_ms();
            let (mut ledger, raw) = read_ledger(&store, &key)?;
            if ledger.entries.contains_key(id) {
                return Ok(false);
            }
            prune_ledger(&mut ledger, now, keep_ms);
            ledger.entries.insert(id.to_string(), now);
            match store.commit(&Batch::new().expect_raw(&key, raw).set(&key, &ledger)?) {
                Ok(()) => return Ok(true),
                Err(PluginError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy())
    }

    /// Queue the call's log (or record that the rules skip it), exactly
    /// once per call id.
    pub fn enqueue(&self, e: &CallEvent, settings: &CallSettings) -> Result<Queued, PluginError> {
        let store = self.store();
        let call = CallRecord::from_event(e);
        let key = outbox_key(&call.call_id);
        let done_key = bucket_key(keys::CALLS_DONE_PREFIX, &call.call_id);
        let rule = match (e.direction, call.answered()) {
            (Direction::Inbound, true) => settings.log_inbound_answered,
            (Direction::Inbound, false) => settings.log_inbound_missed,
            (Direction::Outbound, true) => settings.log_outbound_answered,
            (Direction::Outbound, false) => settings.log_outbound_unanswered,
            (Direction::Internal, _) => settings.log_internal,
        };
        let mut skip = rule == Rule::Skip;
        let mut owner_id = None;
        if !skip && settings.task_owner != TaskOwner::Connected {
            owner_id = Associations::new(self.host)
                .user_for_extension(&call.extension)?
                .map(|u| u.id);
            skip = owner_id.is_none() && settings.task_owner == TaskOwner::AssociatedOnly;
        }
        for _ in 0..CAS_ROUNDS {
            let now = self.host.now_ms();
            let (mut done, done_raw) = read_ledger(&store, &done_key)?;
            if done.entries.contains_key(&call.call_id) || store.get_raw(&key)?.is_some() {
                return Ok(Queued::Known);
            }
            let batch = if skip {
                prune_ledger(&mut done, now, DONE_KEEP_MS);
                done.entries.insert(call.call_id.clone(), now);
                Batch::new()
                    .expect_raw(&done_key, done_raw)
                    .expect_raw(&key, None)
                    .set(&done_key, &done)?
            } else {
                let item = OutboxItem {
                    call: call.clone(),
                    owner_id: owner_id.clone(),
                    attempts: 0,
                    next_at_ms: now,
                    queued_at_ms: now,
                    last_error: None,
                    lease: None,
                };
                Batch::new()
                    .expect_raw(&done_key, done_raw)
                    .expect_raw(&key, None)
                    .set(&key, &item)?
            };
            match store.commit(&batch) {
                Ok(()) => {
                    return Ok(if skip {
                        self.host.log(
                            Level::Info,
                            &format!("call {} is not logged (call settings)", call.call_id),
                        );
                        Queued::Skipped
                    } else {
                        Queued::Queued
                    });
                }
                Err(PluginError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy())
    }

    /// Call logs waiting for Salesforce: the outbox's size. Counted, not
    /// kept in a counter: a counter every call updates would make all
    /// concurrent calls conflict on one key.
    pub fn pending(&self) -> u32 {
        self.store()
            .keys(keys::CALLS_OUTBOX_PREFIX)
            .map_or(0, |k| k.len() as u32)
    }

    // --- delivery -------------------------------------------------------

    /// Deliver what waits, with back-off; the number still waiting.
    pub fn run_pending(&self) -> Result<u32, PluginError> {
        let started = self.host.now_ms();
        self.prune(started);
        let keys = self.store().keys(keys::CALLS_OUTBOX_PREFIX)?;
        for key in keys.iter().take(RUN_MAX_ITEMS) {
            if self.host.now_ms().saturating_sub(started) > RUN_BUDGET_MS || self.backing_off() {
                break;
            }
            match self.deliver(key) {
                Ok(_) => {}
                // Salesforce is down, limited or disconnected: the rest
                // waits too; no point in asking again now.
                Err(
                    PluginError::CrmUnavailable(_)
                    | PluginError::RateLimited(_)
                    | PluginError::NotConnected(_)
                    | PluginError::NotConfigured(_),
                ) => break,
                Err(e) => self.host.log(
                    Level::Warn,
                    &format!("a call log could not be delivered: {e}"),
                ),
            }
        }
        Ok(self.store().keys(keys::CALLS_OUTBOX_PREFIX)?.len() as u32)
    }

    fn backing_off(&self) -> bool {
        let now = self.host.now_ms();
        self.store()
            .get::<Backoff>(keys::BACKOFF)
            .ok()
            .flatten()
            .is_some_and(|b| now < b.until_ms)
    }

    /// Deliver the item under `key` if it is due and free. Ok(true) when
    /// it was logged now.
    pub fn deliver(&self, key: &str) -> Result<bool, PluginError> {
        let store = self.store();
        let Some((item, raw)) = store.get_with_raw::<OutboxItem>(key)? else {
            return Ok(false);
        };
        let now = self.host.now_ms();
        if item.next_at_ms > now || item.lease.as_ref().is_some_and(|l| l.until_ms > now) {
            return Ok(false);
        }
        if let Some(b) = store.get::<Backoff>(keys::BACKOFF).ok().flatten()
            && now < b.until_ms
        {
            return Err(if b.rate_limited {
                PluginError::RateLimited(b.problem(now))
            } else {
                PluginError::CrmUnavailable(b.problem(now))
            });
        }
        let mut leased = item.clone();
        leased.attempts = leased.attempts.saturating_add(1);
        leased.lease = Some(ItemLease {
            holder: oauth::random_token(self.host, 16),
            until_ms: now + LEASE_MS,
        });
        let leased_raw = encode(&leased)?;
        match store.commit(&Batch::new().expect_raw(key, Some(raw)).set(key, &leased)?) {
            Ok(()) => {}
            // Someone else took it meanwhile.
            Err(PluginError::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        match self.attempt(&leased) {
            Ok(task_id) => {
                self.finish(key, &leased, leased_raw, &task_id)?;
                Ok(true)
            }
            Err(err) => {
                let now = self.host.now_ms();
                let mut next = leased;
                next.lease = None;
                next.last_error = Some(err.to_string());
                let backoff_until = store
                    .get::<Backoff>(keys::BACKOFF)
                    .ok()
                    .flatten()
                    .map_or(0, |b| b.until_ms);
                let doublings = next.attempts.saturating_sub(1).min(16);
                let delay = match err {
                    // Another delivery is creating the caller's record.
                    PluginError::Conflict(_) => RETRY_FIRST_MS,
                    _ => (RETRY_FIRST_MS << doublings).min(RETRY_MAX_MS),
                };
                next.next_at_ms = (now + delay).max(backoff_until);
                let release = Batch::new()
                    .expect_raw(key, Some(leased_raw))
                    .set(key, &next)?;
                if let Err(e) = store.commit(&release) {
                    self.host.log(
                        Level::Warn,
                        &format!("could not record a failed delivery: {e}"),
                    );
                }
                Err(err)
            }
        }
    }

    /// Log the call in Salesforce; the Task's id.
    fn attempt(&self, item: &OutboxItem) -> Result<String, PluginError> {
        let call = &item.call;
        if item.attempts > 1
            && let Some(id) = self.existing_task(&call.call_id)?
        {
            self.host.log(
                Level::Info,
                &format!(
                    "call {} was already logged as Task {id} (an earlier attempt's answer was lost)",
                    call.call_id
                ),
            );
            return Ok(id);
        }
        let normalized = if call.direction == "internal" {
            None
        } else {
            phone::normalize(&call.external_number, &call.default_region).ok()
        };
        let mut who = None;
        if let Some(n) = &normalized {
            let mut best = self.find(n)?.into_iter().next();
            if best.is_none() {
                let settings = self.settings()?;
                let kind = if call.direction == "outbound" {
                    settings.unknown_outbound
                } else {
                    settings.unknown_inbound
                };
                if kind != UnknownCaller::Nothing {
                    best = Some(self.create_for_unknown(n, kind, item.owner_id.as_deref())?);
                }
            }
            who = best;
        }
        let mut task = task_body(item, normalized.as_ref(), who.as_ref());
        let created: Value = match self.api().post_json("sobjects/Task/", &task) {
            Ok(v) => v,
            // The associated user was deactivated meanwhile: the call is
            // still logged, owned by the connected user.
            Err(SalesforceError::Api(api))
                if item.owner_id.is_some()
                    && (api.has_code("INACTIVE_OWNER_OR_USER")
                        || api
                            .errors
                            .iter()
                            .any(|e| e.fields.iter().any(|f| f == "OwnerId"))) =>
            {
                self.host.log(
                    Level::Warn,
                    &format!(
                        "call {}: Salesforce refused the Task's owner ({api}); logging it for the connected user",
                        call.call_id
                    ),
                );
                if let Some(t) = task.as_object_mut() {
                    t.remove("OwnerId");
                }
                self.api().post_json("sobjects/Task/", &task)?
            }
            Err(e) => return Err(e.into()),
        };
        created
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                PluginError::CrmUnavailable(
                    "Salesforce created the Task but sent no id; it will be checked on the next attempt".into(),
                )
            })
    }

    /// The Task logging `call_id`, if one exists.
    fn existing_task(&self, call_id: &str) -> Result<Option<String>, PluginError> {
        #[derive(Deserialize)]
        struct Row {
            #[serde(rename = "Id")]
            id: String,
        }
        let rows: Vec<Row> = self.api().query(&task_by_call_object(call_id))?;
        Ok(rows.into_iter().next().map(|r| r.id))
    }

    /// Create a Contact or Lead for an unknown number and remember it.
    fn create_for_unknown(
        &self,
        n: &Normalized,
        kind: UnknownCaller,
        owner: Option<&str>,
    ) -> Result<Match, PluginError> {
        let store = self.store();
        let lease_key = format!("{}{}", keys::CALLS_CREATING_PREFIX, n.e164);
        let now = self.host.now_ms();
        let lease_raw = store.get_raw(&lease_key)?;
        let live = lease_raw
            .as_deref()
            .and_then(|r| serde_json::from_slice::<ItemLease>(r).ok())
            .is_some_and(|l| l.until_ms > now);
        if live {
            return Err(PluginError::Conflict(format!(
                "another call is creating the record for {}; this one follows",
                n.international
            )));
        }
        let lease = ItemLease {
            holder: oauth::random_token(self.host, 16),
            until_ms: now + LEASE_MS,
        };
        store.commit(
            &Batch::new()
                .expect_raw(&lease_key, lease_raw)
                .set(&lease_key, &lease)?,
        )?;
        let release = || {
            let _ = store.commit(
                &Batch::new()
                    .expect(&lease_key, Some(&lease))
                    .map(|b| b.delete(&lease_key))
                    .unwrap_or_default(),
            );
        };
        // Created by someone who held the lease just before?
        match self.remembered(&n.e164) {
            Ok(Some(r)) => {
                release();
                return Ok(r.record);
            }
            Ok(None) => {}
            Err(e) => {
                release();
                return Err(e);
            }
        }
        let object = match kind {
            UnknownCaller::Lead => "Lead",
            _ => "Contact",
        };
        let name = format!("Caller {}", n.international);
        let mut body = json!({
            "LastName": cut(&name, 80),
            "Phone": n.e164,
            "Description": format!("Created by the PBX for a call from or to {} on {}.", n.international, date(now)),
        });
        if object == "Lead" {
            body["Company"] = json!("Unknown");
        }
        if let Some(owner) = owner {
            body["OwnerId"] = json!(owner);
        }
        let created: Result<Value, SalesforceError> =
            self.api().post_json(&format!("sobjects/{object}/"), &body);
        let created = match created {
            Ok(v) => v,
            Err(e) => {
                release();
                return Err(e.into());
            }
        };
        let Some(id) = created.get("id").and_then(Value::as_str) else {
            release();
            return Err(PluginError::CrmUnavailable(format!(
                "Salesforce created a {object} but sent no id; try again later"
            )));
        };
        let instance = store
            .get::<Tokens>(keys::TOKENS)?
            .map(|t| t.instance_url)
            .unwrap_or_default();
        let record = Match {
            object: object.into(),
            id: id.to_string(),
            name,
            account_id: None,
            modified: datetime(now),
            url: format!("{instance}/lightning/r/{object}/{id}/view"),
        };
        let remembered = Remembered {
            record: record.clone(),
            created_at_ms: now,
        };
        let commit = Batch::new()
            .set(
                &format!("{}{}", keys::CALLS_CREATED_PREFIX, n.e164),
                &remembered,
            )?
            .delete(&format!("{}{}", keys::CALLS_LOOKUP_PREFIX, n.e164))
            .delete(&lease_key);
        store.commit(&commit)?;
        self.host.log(
            Level::Info,
            &format!(
                "created {object} {id} for the unknown number {}",
                n.international
            ),
        );
        Ok(record)
    }

    /// Remove a delivered item, remember its call id, count one less.
    fn finish(
        &self,
        key: &str,
        leased: &OutboxItem,
        leased_raw: Vec<u8>,
        task_id: &str,
    ) -> Result<(), PluginError> {
        let store = self.store();
        let call_id = &leased.call.call_id;
        let done_key = bucket_key(keys::CALLS_DONE_PREFIX, call_id);
        for _ in 0..CAS_ROUNDS {
            let now = self.host.now_ms();
            let (mut done, done_raw) = read_ledger(&store, &done_key)?;
            prune_ledger(&mut done, now, DONE_KEEP_MS);
            done.entries.insert(call_id.clone(), now);
            let batch = Batch::new()
                .expect_raw(key, Some(leased_raw.clone()))
                .expect_raw(&done_key, done_raw)
                .delete(key)
                .set(&done_key, &done)?;
            match store.commit(&batch) {
                Ok(()) => {
                    self.host.log(
                        Level::Info,
                        &format!("call {call_id} logged as Task {task_id}"),
                    );
                    return Ok(());
                }
                Err(PluginError::Conflict(_)) => {
                    if store.get_raw(key)?.as_deref() != Some(leased_raw.as_slice()) {
                        // Not ours any more; its next attempt finds the Task.
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(busy())
    }

    /// Drop expired cache entries, remembered records and lapsed creation
    /// leases, at most every [`PRUNE_EVERY_MS`] and [`PRUNE_MAX`] keys.
    fn prune(&self, now: u64) {
        let store = self.store();
        let last: u64 = store.get(keys::CALLS_PRUNED_AT).ok().flatten().unwrap_or(0);
        if now.saturating_sub(last) < PRUNE_EVERY_MS && last <= now {
            return;
        }
        let _ = store.put(keys::CALLS_PRUNED_AT, &now);
        let mut budget = PRUNE_MAX;
        let mut sweep = |prefix: &str, expired: &dyn Fn(&[u8]) -> bool| {
            let Ok(list) = store.keys(prefix) else {
                return;
            };
            for key in list {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                if let Ok(Some(raw)) = store.get_raw(&key)
                    && expired(&raw)
                {
                    let _ = store.commit(&Batch::new().expect_raw(&key, Some(raw)).delete(&key));
                }
            }
        };
        sweep(keys::CALLS_LOOKUP_PREFIX, &|raw| {
            serde_json::from_slice::<CachedLookup>(raw)
                .map_or(true, |c| now.saturating_sub(c.at_ms) >= CACHE_MS)
        });
        sweep(keys::CALLS_CREATED_PREFIX, &|raw| {
            serde_json::from_slice::<Remembered>(raw)
                .map_or(true, |r| now.saturating_sub(r.created_at_ms) >= REMEMBER_MS)
        });
        sweep(keys::CALLS_CREATING_PREFIX, &|raw| {
            serde_json::from_slice::<ItemLease>(raw).map_or(true, |l| l.until_ms <= now)
        });
    }

    // --- click-to-call --------------------------------------------------

    /// Check a click-to-call request; the number to dial in E.164.
    pub fn authorize_dial(
        &self,
        extension: &str,
        number: &str,
        region: &str,
    ) -> Result<String, PluginError> {
        let extension = extension.trim();
        if Associations::new(self.host)
            .user_for_extension(extension)?
            .is_none()
        {
            let shown = cut(extension, 32);
            return Err(if self.host.extension(extension).is_none() {
                PluginError::InvalidInput(format!(
                    "extension {shown:?} does not exist on the PBX; dial from an extension associated with a Salesforce user"
                ))
            } else {
                PluginError::NotConfigured(format!(
                    "associate extension {shown} with a Salesforce user first (PBX portal, Salesforce users), then dial again"
                ))
            });
        }
        phone::normalize(number, region)
            .map(|n| n.e164)
            .map_err(|bad| PluginError::InvalidInput(bad.describe(number)))
    }

    /// The status line for waiting call logs, if any wait.
    pub fn problem(&self) -> Option<String> {
        match self.pending() {
            0 => None,
            1 => Some("1 call log waiting for Salesforce; the PBX retries with back-off".into()),
            n => Some(format!(
                "{n} call logs waiting for Salesforce; the PBX retries with back-off"
            )),
        }
    }
}

fn read_ledger<H: Host>(
    store: &Store<'_, H>,
    key: &str,
) -> Result<(Ledger, Option<Vec<u8>>), PluginError> {
    match store.get_raw(key)? {
        None => Ok((Ledger::default(), None)),
        // An unreadable bucket is replaced (guarded by its raw bytes): it
        // only remembers duplicates to ignore.
        Some(raw) => Ok((serde_json::from_slice(&raw).unwrap_or_default(), Some(raw))),
    }
}

fn prune_ledger(ledger: &mut Ledger, now: u64, keep_ms: u64) {
    ledger
        .entries
        .retain(|_, at| now.saturating_sub(*at) < keep_ms);
}

fn busy() -> PluginError {
    PluginError::Conflict(
        "the call journal is busy with concurrent updates; the event will be retried".into(),
    )
}

/// The Task for a call.
pub fn task_body(item: &OutboxItem, n: Option<&Normalized>, who: Option<&Match>) -> Value {
    let call = &item.call;
    let shown = match n {
        Some(n) => n.international.clone(),
        None if call.external_number.trim().is_empty() => "an unknown number".into(),
        None => cut(call.external_number.trim(), 64),
    };
    let answered = call.answered();
    let (call_type, subject) = match (call.direction.as_str(), answered) {
        ("outbound", true) => ("Outbound", format!("Outbound call to {shown}")),
        ("outbound", false) => ("Outbound", format!("Unanswered outbound call to {shown}")),
        ("internal", _) => (
            "Internal",
            format!("Internal call between {} and {shown}", call.extension),
        ),
        (_, true) => ("Inbound", format!("Inbound call from {shown}")),
        (_, false) => ("Inbound", format!("Missed inbound call from {shown}")),
    };
    let duration = call.duration_s();
    let mut lines = vec![
        match call.direction.as_str() {
            "outbound" => format!("Outbound call from extension {} to {shown}", call.extension),
            "internal" => format!(
                "Internal call between extensions {} and {shown}",
                call.extension
            ),
            _ => format!("Inbound call from {shown} to extension {}", call.extension),
        },
        format!(
            "Started: {} {}",
            date(call.started_at_ms),
            clock(call.started_at_ms)
        ),
    ];
    if let Some(n) = n {
        lines.push(format!(
            "Number: {} (as the PBX gave it: {})",
            n.e164,
            cut(&call.external_number, 64)
        ));
    }
    lines.push(if answered {
        format!(
            "Duration: {} ({duration} s talk time)",
            human_duration(duration)
        )
    } else {
        "Not answered".into()
    });
    if let Some(d) = &call.disposition {
        lines.push(format!("Disposition: {}", cut(d, 255)));
    }
    if let Some(r) = &call.recording_url {
        lines.push(format!("Recording: {r}"));
    }
    lines.push(format!("PBX call id: {}", call.call_id));
    let mut task = json!({
        "Subject": cut(&subject, 255),
        "TaskSubtype": "Call",
        "CallType": call_type,
        "CallDurationInSeconds": duration,
        "CallObject": call.call_id,
        "ActivityDate": date(call.started_at_ms),
        "Status": "Completed",
        "Description": cut(&lines.join("\n"), 32_000),
    });
    if let Some(d) = &call.disposition {
        task["CallDisposition"] = json!(cut(d, 255));
    }
    if let Some(m) = who {
        match m.object.as_str() {
            "Contact" => {
                task["WhoId"] = json!(m.id);
                if let Some(a) = &m.account_id {
                    task["WhatId"] = json!(a);
                }
            }
            "Lead" => task["WhoId"] = json!(m.id),
            _ => task["WhatId"] = json!(m.id),
        }
    }
    if let Some(owner) = &item.owner_id {
        task["OwnerId"] = json!(owner);
    }
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe() {
        assert_eq!(key_part("a/b%c"), "a%2Fb%25c");
        let k = bucket_key("calls/done/", "x");
        assert!(k.starts_with("calls/done/") && k.len() == "calls/done/".len() + 2);
    }
}
