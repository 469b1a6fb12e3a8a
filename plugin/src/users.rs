//! The synced list of Salesforce users: the step-wise sync and its storage.
//!
//! # Sync
//! A sync runs in steps so every call stays well inside the host's 10 s
//! deadline and the host can show progress: the first call (no cursor)
//! sends the SOQL query, each later call follows `nextRecordsUrl`. A step
//! reads pages until [`STEP_BUDGET_MS`] have passed, it has read
//! [`MAX_PAGES_PER_STEP`] pages or holds [`STEP_MAX_BYTES`] (a slow
//! Salesforce: one page per step; a fast one: 20,000 users per step), cuts
//! them into chunks of about
//! [`CHUNK_TARGET`] users, writes them in one batch, and returns a cursor.
//! A step that fails writes nothing: its cursor is still the previous one.
//!
//! # Storage (kv keys)
//! - `users/sync/<sync>/<page>` (`00000`, `00001`, ...): a JSON array of
//!   [`UserRecord`], about 2,000 per key (see `sizes` in the tests: ~0.5 MB).
//! - `users/sync/<sync>/ids-<page>`: the ids of that chunk in the id map's
//!   form, written with it, so the last step builds the id map without
//!   reading any chunk; folded into the id map and deleted by the swap.
//! - `users/sync/<sync>/ids`: a JSON string `",<id>:<page>,<id>:<page>,"`
//!   naming the chunk of every user, so a lookup by id reads one chunk.
//! - `users/index` ([`UsersIndex`]): which sync is the current list.
//! - `users/last-sync` ([`LastSync`]): how the last sync ended, for the
//!   status.
//!
//! A sync writes its chunks under its own id; they are "staging" until the
//! last step swaps `users/index` to point at them, in one batch guarded by
//! the index it read (and by the staged id lists it folded), that also
//! writes the last step's chunks and deletes the previous list's keys. Until
//! then the previous list stays in use, whatever happens to the sync.
//! Staging areas nobody finished are deleted after [`STAGING_TTL_MS`].
//!
//! Sizes: 50,000 users are 25 chunks plus 2 keys (plus an id list per
//! chunk while staging), twice that while a sync runs: far inside the
//! default quota of 10,000 keys and 64 MiB.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::bindings::exports::pbx::crm::integration::{CrmUser, SyncProgress};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::http;
use crate::salesforce::query::query_path;
use crate::salesforce::{ApiResponse, QueryPage, Salesforce, SalesforceError};
use crate::store::{Batch, Store, keys};

/// The users query, under the name the sync benchmark knows it by.
pub use crate::salesforce::query::USERS_SOQL;
/// Salesforce's largest page.
const BATCH_OPTION: &str = "batchSize=2000";
/// Users per stored chunk: a chunk is closed once it holds this many (a
/// lookup by id reads one chunk, so chunks stay small).
pub const CHUNK_TARGET: usize = 2_000;
/// At most this many pages per step: 20,000 users in full pages, about
/// 5 MB of chunks held until the step's batch.
pub const MAX_PAGES_PER_STEP: usize = 10;
/// A step starts no further page after this long, so the progress moves
/// about every half second and a slow Salesforce (each request may take up
/// to 8 s) cannot push a step past the host's 10 s deadline.
pub const STEP_BUDGET_MS: u64 = 500;
/// A step starts no further page once its chunks hold this much: they
/// wait in the instance's memory (64 MiB by default) until the step's
/// batch, and users with long fields make big pages.
pub const STEP_MAX_BYTES: usize = 8 * 1024 * 1024;
/// A sync not finished within this long is abandoned: its staging area is
/// deleted and its cursor refused.
pub const STAGING_TTL_MS: u64 = 60 * 60 * 1000;
/// Longest cursor accepted (a real one is a few hundred characters).
const MAX_CURSOR_LEN: usize = 4_096;
/// Most chunks one sync may write (10 pages per step would allow more, but
/// 1,000 chunks are 2 million users: something is wrong).
const MAX_CHUNKS: u32 = 1_000;

/// One synced Salesforce user, as stored in a chunk. Also the user input of
/// [`crate::matching::propose`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Salesforce's user id (005...).
    pub id: String,
    /// Full name.
    #[serde(default)]
    pub name: String,
    /// Login name.
    #[serde(default)]
    pub username: String,
    /// E-mail address as Salesforce has it (not normalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the user is active (the sync keeps only active ones).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Salesforce's UserType (Standard, PowerPartner, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Mobile phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// The phone extension Salesforce knows (informative; the PBX's
    /// directory decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// LastModifiedDate as Salesforce wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl UserRecord {
    /// An active user with the given id, name, login and e-mail, other
    /// fields empty (for tests and benchmarks).
    pub fn new(id: &str, name: &str, username: &str, email: Option<&str>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            username: username.into(),
            email: email.map(Into::into),
            active: true,
            kind: None,
            title: None,
            department: None,
            phone: None,
            mobile: None,
            extension: None,
            modified: None,
        }
    }

    /// The user as the WIT contract shows it.
    pub fn to_crm_user(&self) -> CrmUser {
        CrmUser {
            id: self.id.clone(),
            name: self.name.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            active: self.active,
            kind: self.kind.clone(),
        }
    }
}

/// Text of a page: borrowed from the body unless JSON escapes made serde
/// build it. A page is 2,000 users of a dozen fields; allocating each field
/// was the largest share of a step's own time.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visitor).map(Text)
    }
}

/// A User record as the REST API sends it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SfUser<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    username: Option<Text<'a>>,
    #[serde(default, borrow)]
    email: Option<Text<'a>>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default, borrow)]
    user_type: Option<Text<'a>>,
    #[serde(default, borrow)]
    title: Option<Text<'a>>,
    #[serde(default, borrow)]
    department: Option<Text<'a>>,
    #[serde(default, borrow)]
    phone: Option<Text<'a>>,
    #[serde(default, borrow)]
    mobile_phone: Option<Text<'a>>,
    #[serde(default, borrow)]
    extension: Option<Text<'a>>,
    #[serde(default, borrow)]
    last_modified_date: Option<Text<'a>>,
}

/// Text for a chunk. `plain` text was borrowed from the page: serde_json
/// borrows only strings without escapes and refuses raw control
/// characters, so it needs no escaping and is copied as is (serde_json's
/// escaping scan was a fifth of a step's own time).
#[derive(Clone, Copy)]
struct Out<'a> {
    text: &'a str,
    plain: bool,
}

impl<'a> Out<'a> {
    fn of(text: &'a Text<'a>) -> Self {
        Self {
            text: &text.0,
            plain: matches!(text.0, Cow::Borrowed(_)),
        }
    }

    fn write(self, out: &mut Vec<u8>) -> Result<(), PluginError> {
        if self.plain {
            out.push(b'"');
            out.extend_from_slice(self.text.as_bytes());
            out.push(b'"');
            Ok(())
        } else {
            serde_json::to_writer(&mut *out, self.text)
                .map_err(|e| PluginError::Store(format!("cannot encode a user: {e}")))
        }
    }
}

/// A user as a chunk stores it: exactly [`UserRecord`]'s JSON (the tests
/// compare them), written straight from the page's text.
struct StoredUser<'a> {
    id: Out<'a>,
    name: Out<'a>,
    username: Out<'a>,
    email: Option<Out<'a>>,
    active: bool,
    kind: Option<Out<'a>>,
    title: Option<Out<'a>>,
    department: Option<Out<'a>>,
    phone: Option<Out<'a>>,
    mobile: Option<Out<'a>>,
    extension: Option<Out<'a>>,
    modified: Option<Out<'a>>,
}

impl StoredUser<'_> {
    /// Append the user's JSON object, fields in [`UserRecord`]'s order,
    /// absent ones left out as its `skip_serializing_if`s do.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), PluginError> {
        out.extend_from_slice(b"{\"id\":");
        self.id.write(out)?;
        out.extend_from_slice(b",\"name\":");
        self.name.write(out)?;
        out.extend_from_slice(b",\"username\":");
        self.username.write(out)?;
        let optional = |out: &mut Vec<u8>, name: &str, value: Option<Out<'_>>| {
            let Some(value) = value else {
                return Ok(());
            };
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            value.write(out)
        };
        optional(out, "email", self.email)?;
        if !self.active {
            out.extend_from_slice(b",\"active\":false");
        }
        optional(out, "type", self.kind)?;
        optional(out, "title", self.title)?;
        optional(out, "department", self.department)?;
        optional(out, "phone", self.phone)?;
        optional(out, "mobile", self.mobile)?;
        optional(out, "extension", self.extension)?;
        optional(out, "modified", self.modified)?;
        out.push(b'}');
        Ok(())
    }
}

impl<'a> SfUser<'a> {
    fn stored(&'a self) -> StoredUser<'a> {
        const EMPTY: Out<'static> = Out {
            text: "",
            plain: true,
        };
        let text = |t: &'a Option<Text<'a>>| t.as_ref().map_or(EMPTY, Out::of);
        // Blank optional fields are stored as absent: smaller chunks, and
        // an empty e-mail is no e-mail.
        let some = |t: &'a Option<Text<'a>>| {
            t.as_ref()
                .map(Out::of)
                .filter(|o| !o.text.trim().is_empty())
        };
        StoredUser {
            id: Out::of(&self.id),
            name: text(&self.name),
            username: text(&self.username),
            email: some(&self.email),
            active: self.is_active.unwrap_or(true),
            kind: some(&self.user_type),
            title: some(&self.title),
            department: some(&self.department),
            phone: some(&self.phone),
            mobile: some(&self.mobile_phone),
            extension: some(&self.extension),
            modified: some(&self.last_modified_date),
        }
    }
}

/// Which sync is the current user list; stored under `users/index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersIndex {
    /// The sync whose chunks hold the list.
    pub sync_id: String,
    /// How many chunks (`users/sync/<sync>/00000` onwards).
    pub pages: u32,
    /// How many users in all.
    pub count: u32,
    /// When the sync finished, ms since the Unix epoch.
    pub synced_at_ms: u64,
}

/// How the last sync ended; stored under `users/last-sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    /// Whether it completed.
    pub ok: bool,
    /// When it ended, ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened, for the status (failures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Users stored by that sync.
    pub fetched: u32,
    /// Users Salesforce said there were.
    pub total: u32,
}

/// The sync's position, carried by the host between steps as opaque text:
/// base64url (no padding) of this as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// Format version.
    v: u8,
    /// The sync's id.
    sync: String,
    /// Salesforce's `nextRecordsUrl` to continue with.
    next: String,
    /// Chunks written so far.
    pages: u32,
    /// Users written so far.
    fetched: u32,
    /// Users Salesforce said there are.
    total: u32,
}

impl Cursor {
    fn encode(&self) -> Result<String, PluginError> {
        Ok(URL_SAFE_NO_PAD.encode(crate::store::encode(self)?))
    }

    /// Parse and check a cursor from outside; any fault means "start again".
    fn decode(text: &str) -> Result<Self, PluginError> {
        let refused = || {
            PluginError::InvalidInput(
                "the user sync's cursor is not one this plugin issued: start the sync again".into(),
            )
        };
        if text.len() > MAX_CURSOR_LEN {
            return Err(refused());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| refused())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| refused())?;
        let plausible = cursor.v == 1
            && sync_started_ms(&cursor.sync).is_some()
            && cursor.next.starts_with("/services/data/")
            && cursor.pages >= 1
            && cursor.pages < MAX_CHUNKS
            && cursor.fetched
                <= cursor
                    .pages
                    .saturating_mul(MAX_PAGES_PER_STEP as u32 * 2_000);
        if plausible {
            Ok(cursor)
        } else {
            Err(refused())
        }
    }
}

/// The key of chunk `page` of `sync`.
pub fn page_key(sync: &str, page: u32) -> String {
    format!("{}{sync}/{page:05}", keys::USERS_SYNC_PREFIX)
}

/// The key of the id list of chunk `page` of `sync`, while it is staged.
pub fn ids_part_key(sync: &str, page: u32) -> String {
    format!("{}{sync}/ids-{page:05}", keys::USERS_SYNC_PREFIX)
}

/// The key of the id map of `sync`.
pub fn ids_key(sync: &str) -> String {
    format!("{}{sync}/ids", keys::USERS_SYNC_PREFIX)
}

/// The prefix of every key of `sync`.
fn sync_prefix(sync: &str) -> String {
    format!("{}{sync}/", keys::USERS_SYNC_PREFIX)
}

/// A new sync id: the start time (so abandoned ones can be aged without
/// reading anything) and random hex (so concurrent syncs differ).
fn new_sync_id<H: Host>(host: &H) -> String {
    let mut id = format!("{:013}-", host.now_ms());
    for b in host.random_bytes(6) {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// When sync `id` started, if `id` has the form `new_sync_id` makes.
fn sync_started_ms(id: &str) -> Option<u64> {
    let (ms, rand) = id.split_once('-')?;
    let valid = ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && rand.len() == 12
        && rand.bytes().all(|b| b.is_ascii_hexdigit());
    if valid { ms.parse().ok() } else { None }
}

/// "50,000".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `e` with `message` instead of its own text, keeping its kind (the host
/// reacts to the kind: back off, show "re-authorize", ...).
fn reworded(e: PluginError, message: String) -> PluginError {
    match e {
        PluginError::InvalidInput(_) => PluginError::InvalidInput(message),
        PluginError::NotConfigured(_) => PluginError::NotConfigured(message),
        PluginError::NotConnected(_) => PluginError::NotConnected(message),
        PluginError::AuthorizationFailed(_) => PluginError::AuthorizationFailed(message),
        PluginError::CrmUnavailable(_) => PluginError::CrmUnavailable(message),
        PluginError::RateLimited(_) => PluginError::RateLimited(message),
        PluginError::Conflict(_) => PluginError::Conflict(message),
        PluginError::NotFound(_) => PluginError::NotFound(message),
        // These carry their own framing ("the PBX's plugin store failed").
        other @ (PluginError::Store(_)
        | PluginError::Corrupt { .. }
        | PluginError::Unsupported(_)) => other,
    }
}

/// The synced user list over a host: sync steps, reading, lookups.
pub struct Users<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Users<'h, H> {
    /// The user list over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    /// The current index, if a sync ever completed.
    pub fn index(&self) -> Result<Option<UsersIndex>, PluginError> {
        self.store().get(keys::USERS_INDEX)
    }

    /// How the last sync ended, if one ever ended.
    pub fn last_sync(&self) -> Result<Option<LastSync>, PluginError> {
        self.store().get(keys::USERS_LAST_SYNC)
    }

    /// The problem line for the status when the last sync failed.
    pub fn problem(&self) -> Option<String> {
        match self.last_sync() {
            Ok(Some(LastSync {
                ok: false, message, ..
            })) => Some(message.unwrap_or_else(|| "the last user sync failed; sync again".into())),
            Ok(_) => None,
            Err(e) => Some(format!("the last user sync's record is unreadable ({e})")),
        }
    }

    /// The whole current list (chunk by chunk, in Salesforce's order: by
    /// name), with its index; `None` before the first sync.
    pub fn load(&self) -> Result<Option<(UsersIndex, Vec<UserRecord>)>, PluginError> {
        let Some(index) = self.index()? else {
            return Ok(None);
        };
        let mut users = Vec::with_capacity(index.count as usize);
        for page in 0..index.pages {
            users.extend(self.chunk(&index.sync_id, page)?);
        }
        Ok(Some((index, users)))
    }

    /// One chunk of a sync; a missing chunk of a sync the index names means
    /// the store lost it.
    fn chunk(&self, sync: &str, page: u32) -> Result<Vec<UserRecord>, PluginError> {
        let key = page_key(sync, page);
        self.store().get(&key)?.ok_or_else(|| PluginError::Corrupt {
            key,
            reason: "a part of the user list is missing".into(),
        })
    }

    /// The active synced user with `id`, reading only its chunk. `None`
    /// when the user is not in the current list (deactivated, removed, or
    /// never synced).
    pub fn find(&self, id: &str) -> Result<Option<UserRecord>, PluginError> {
        // Salesforce ids are alphanumeric; anything else cannot be in the
        // list and must not confuse the ",id:page," search below.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let Some(index) = self.index()? else {
            return Ok(None);
        };
        let Some(ids) = self.store().get::<String>(&ids_key(&index.sync_id))? else {
            return Err(PluginError::Corrupt {
                key: ids_key(&index.sync_id),
                reason: "the user list's id map is missing".into(),
            });
        };
        let needle = format!(",{id}:");
        let Some(at) = ids.find(&needle) else {
            return Ok(None);
        };
        let rest = &ids[at + needle.len()..];
        let digits = rest.split(',').next().unwrap_or_default();
        let Ok(page) = digits.parse::<u32>() else {
            return Err(PluginError::Corrupt {
                key: ids_key(&index.sync_id),
                reason: "the user list's id map is damaged".into(),
            });
        };
        Ok(self
            .chunk(&index.sync_id, page)?
            .into_iter()
            .find(|u| u.id == id && u.active))
    }

    /// One step of a sync: start one with `None`, continue with the cursor
    /// the previous step returned. A failed step leaves the previous list in
    /// place and records what happened for the status; the same cursor may
    /// be tried again (within an hour), or a new sync started.
    pub fn sync_step(&self, cursor: Option<&str>) -> Result<SyncProgress, PluginError> {
        let started = self.host.now_ms();
        let mut state = match cursor {
            None => {
                self.prune();
                let sync = new_sync_id(self.host);
                self.host
                    .log(Level::Info, &format!("user sync {sync} started"));
                Step {
                    sync,
                    next: None,
                    pages: 0,
                    fetched: 0,
                    total: 0,
                }
            }
            Some(text) => {
                let cursor = Cursor::decode(text)?;
                if let Some(done) = self.already_done(&cursor.sync)? {
                    return Ok(done);
                }
                self.check_staging(&cursor, started)?;
                Step {
                    sync: cursor.sync,
                    next: Some(cursor.next),
                    pages: cursor.pages,
                    fetched: cursor.fetched,
                    total: cursor.total,
                }
            }
        };

        let sf = Salesforce::new(self.host);
        let mut parts: Vec<Part> = Vec::new();
        let mut open = PartWriter::new(state.pages);
        let mut pages_read = 0;
        loop {
            let response = match self.fetch_page(&sf, state.next.as_deref()) {
                Ok(response) => response,
                Err(e) => return Err(self.failed(&state, e)),
            };
            let page = match parse_page(&response) {
                Ok(page) => page,
                Err(e) => return Err(self.failed(&state, e)),
            };
            pages_read += 1;
            state.total = u32::try_from(page.total_size).unwrap_or(u32::MAX);
            for user in &page.records {
                if let Err(e) = open.push(&user.stored()) {
                    return Err(self.failed(&state, e));
                }
            }
            if open.count as usize >= CHUNK_TARGET {
                let next = PartWriter::new(open.page + 1);
                parts.push(std::mem::replace(&mut open, next).finish());
            }
            state.next = match (page.done, page.next_records_url) {
                (true, _) => None,
                (false, Some(next)) => Some(next),
                (false, None) => {
                    let e = PluginError::CrmUnavailable(
                        "Salesforce said more users follow but sent no link to them; try again later"
                            .into(),
                    );
                    return Err(self.failed(&state, e));
                }
            };
            let elapsed = self.host.now_ms().saturating_sub(started);
            let held = open.json.len() + parts.iter().map(|p| p.json.len()).sum::<usize>();
            if state.next.is_none()
                || pages_read >= MAX_PAGES_PER_STEP
                || elapsed >= STEP_BUDGET_MS
                || held >= STEP_MAX_BYTES
            {
                break;
            }
        }
        // The rest is a chunk of its own: the next step is a new instance.
        // An empty org still gets one (empty) chunk.
        if open.count > 0 || (parts.is_empty() && state.pages == 0) {
            parts.push(open.finish());
        }
        if parts.last().is_some_and(|p| p.page >= MAX_CHUNKS) {
            let e = PluginError::CrmUnavailable(format!(
                "the user list has more than {MAX_CHUNKS} parts; Salesforce may be sending very small pages: try again later"
            ));
            return Err(self.failed(&state, e));
        }

        let Some(next) = state.next.take() else {
            return self.finish(&state, parts);
        };
        // One batch for the step's chunks and their id lists: one commit.
        let pages = state.pages + parts.len() as u32;
        let fetched = state
            .fetched
            .saturating_add(parts.iter().map(|p| p.ids.count).sum());
        let mut batch = Batch::new();
        for part in parts {
            batch = part.stage(&state.sync, batch)?;
        }
        if let Err(e) = self.store().commit(&batch) {
            return Err(self.failed(&state, e));
        }
        let cursor = Cursor {
            v: 1,
            sync: state.sync,
            next,
            pages,
            fetched,
            total: state.total,
        };
        Ok(SyncProgress {
            fetched: cursor.fetched,
            total: cursor.total.max(cursor.fetched),
            cursor: Some(cursor.encode()?),
        })
    }

    /// The first page of the users query (`next` is `None`) or a further
    /// one.
    fn fetch_page(
        &self,
        sf: &Salesforce<'_, H>,
        next: Option<&str>,
    ) -> Result<ApiResponse, PluginError> {
        let options = [http::header("sforce-query-options", BATCH_OPTION)];
        let path = match next {
            None => query_path(USERS_SOQL),
            // The cursor's check and the previous page's answer both said
            // it starts so; Salesforce's client refuses anything else too.
            Some(next) if next.starts_with("/services/data/") => next.to_string(),
            Some(next) => {
                return Err(PluginError::CrmUnavailable(format!(
                    "Salesforce gave an unexpected next-page link {:?}; try again later",
                    http::sanitize(next)
                )));
            }
        };
        sf.send(
            crate::bindings::pbx::crm::http_fetch::Method::Get,
            &path,
            None,
            &options,
        )
        .map_err(query_error)
    }

    /// A cursor of the sync that is already the current list (a retried
    /// last step whose answer got lost): report it complete.
    fn already_done(&self, sync: &str) -> Result<Option<SyncProgress>, PluginError> {
        Ok(self
            .index()?
            .filter(|i| i.sync_id == sync)
            .map(|i| SyncProgress {
                fetched: i.count,
                total: i.count,
                cursor: None,
            }))
    }

    /// Refuse a cursor whose sync is too old or whose chunks are gone.
    fn check_staging(&self, cursor: &Cursor, now: u64) -> Result<(), PluginError> {
        let again = |why: &str| {
            PluginError::InvalidInput(format!(
                "this user sync {why}; the previous list is kept: start the sync again"
            ))
        };
        let started = sync_started_ms(&cursor.sync).unwrap_or(0);
        if now.saturating_sub(started) > STAGING_TTL_MS {
            return Err(again("was started over an hour ago and abandoned"));
        }
        let stored = self.store().keys(&sync_prefix(&cursor.sync))?;
        let present = (0..cursor.pages).all(|p| {
            stored.contains(&page_key(&cursor.sync, p))
                && stored.contains(&ids_part_key(&cursor.sync, p))
        });
        if present {
            Ok(())
        } else {
            Err(again("is unknown (or its progress was discarded)"))
        }
    }

    /// Record a failed step for the status and return the error with the
    /// same kind, saying what happened to the list.
    fn failed(&self, state: &Step, error: PluginError) -> PluginError {
        let kept = match self.index() {
            Ok(Some(index)) => format!(
                "the previous list of {} users is kept",
                thousands(u64::from(index.count))
            ),
            _ => "no user list was stored before".into(),
        };
        let message = if state.total == 0 && state.fetched == 0 {
            format!("user sync failed before any user was read: {error}; {kept}; sync again")
        } else {
            format!(
                "user sync stopped after {} of {} users: {error}; {kept}; sync again",
                thousands(u64::from(state.fetched)),
                thousands(u64::from(state.total.max(state.fetched)))
            )
        };
        let record = LastSync {
            ok: false,
            at_ms: self.host.now_ms(),
            message: Some(message.clone()),
            fetched: state.fetched,
            total: state.total,
        };
        if let Err(e) = self.store().put(keys::USERS_LAST_SYNC, &record) {
            self.host.log(
                Level::Error,
                &format!("could not record the failed user sync: {e}"),
            );
        }
        self.host.log(Level::Warn, &message);
        reworded(error, message)
    }

    /// The last step: in one batch, write this step's chunks and the id map
    /// (from the staged id lists, so no chunk is read back), make this sync
    /// the current list, and delete the staged id lists and the previous
    /// list.
    fn finish(&self, state: &Step, parts: Vec<Part>) -> Result<SyncProgress, PluginError> {
        let store = self.store();
        let mut batch = Batch::new();
        let mut ids =
            String::with_capacity((state.fetched as usize + parts.len() * CHUNK_TARGET) * 24 + 1);
        ids.push(',');
        let mut count: u32 = 0;
        for page in 0..state.pages {
            let key = ids_part_key(&state.sync, page);
            let raw = match store.get_raw(&key) {
                Ok(Some(raw)) => raw,
                Ok(None) => {
                    let e = PluginError::InvalidInput(
                        "this user sync's earlier parts were discarded meanwhile; the previous list is kept: start the sync again".into(),
                    );
                    return Err(self.failed(state, e));
                }
                Err(e) => return Err(self.failed(state, e)),
            };
            let Ok(part) = serde_json::from_slice::<ChunkIds>(&raw) else {
                let e = PluginError::Corrupt {
                    key,
                    reason: "a staged part of the user list is damaged".into(),
                };
                return Err(self.failed(state, e));
            };
            ids.push_str(&part.ids);
            count = count.saturating_add(part.count);
            // Guarded by the id lists it folds: if this sync's staging area
            // was pruned meanwhile, it must not become the list.
            batch = batch.expect_raw(&key, Some(raw)).delete(&key);
        }
        let pages = state.pages + parts.len() as u32;
        for part in parts {
            ids.push_str(&part.ids.ids);
            count = count.saturating_add(part.ids.count);
            batch = batch.set_raw(&page_key(&state.sync, part.page), part.json);
        }
        batch = batch.set(&ids_key(&state.sync), &ids)?;
        drop(ids);

        let now = self.host.now_ms();
        let index = UsersIndex {
            sync_id: state.sync.clone(),
            pages,
            count,
            synced_at_ms: now,
        };
        let done = LastSync {
            ok: true,
            at_ms: now,
            message: None,
            fetched: count,
            total: count,
        };
        batch = batch
            .set(keys::USERS_INDEX, &index)?
            .set(keys::USERS_LAST_SYNC, &done)?;
        let fixed = batch.mark();
        // A concurrent sync may swap its own list in between our read of the
        // index and our batch; then read again and replace that one.
        for _ in 0..3 {
            let previous_raw = store.get_raw(keys::USERS_INDEX)?;
            let previous: Option<UsersIndex> = previous_raw
                .as_deref()
                .and_then(|raw| serde_json::from_slice(raw).ok());
            if previous.as_ref().is_some_and(|p| p.sync_id == state.sync) {
                break;
            }
            batch = batch
                .rewind(fixed)
                .expect_raw(keys::USERS_INDEX, previous_raw);
            if let Some(previous) = &previous {
                for key in store.keys(&sync_prefix(&previous.sync_id))? {
                    batch = batch.delete(&key);
                }
            }
            match store.commit(&batch) {
                Ok(()) => {
                    self.host.log(
                        Level::Info,
                        &format!(
                            "user sync {} finished: {} active users in {} parts",
                            state.sync, count, pages
                        ),
                    );
                    self.prune();
                    return Ok(SyncProgress {
                        fetched: count,
                        total: count,
                        cursor: None,
                    });
                }
                Err(PluginError::Conflict(_)) => continue,
                Err(e) => return Err(self.failed(state, e)),
            }
        }
        match self.already_done(&state.sync)? {
            Some(done) => Ok(done),
            None => Err(PluginError::Conflict(
                "the user list kept changing while this sync finished (other syncs finished, or this one was discarded); sync again".into(),
            )),
        }
    }

    /// Delete staging areas of syncs older than an hour that are not the
    /// current list. Best effort: a failure here must not stop a sync.
    pub fn prune(&self) {
        let store = self.store();
        let Ok(index_raw) = store.get_raw(keys::USERS_INDEX) else {
            return;
        };
        let current = index_raw
            .as_deref()
            .and_then(|raw| serde_json::from_slice::<UsersIndex>(raw).ok())
            .map(|i| i.sync_id);
        let Ok(all) = store.keys(keys::USERS_SYNC_PREFIX) else {
            return;
        };
        let now = self.host.now_ms();
        let mut by_sync: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for key in &all {
            let rest = &key[keys::USERS_SYNC_PREFIX.len()..];
            let sync = rest.split('/').next().unwrap_or_default();
            by_sync.entry(sync).or_default().push(key);
        }
        let mut batch = Batch::new().expect_raw(keys::USERS_INDEX, index_raw.clone());
        let mut stale = 0;
        for (sync, keys) in by_sync {
            if current.as_deref() == Some(sync) {
                continue;
            }
            // Ids of an unknown form are no sync of ours: delete them too.
            let old = sync_started_ms(sync)
                .is_none_or(|started| now.saturating_sub(started) > STAGING_TTL_MS);
            if old {
                stale += 1;
                for key in keys {
                    batch = batch.delete(key);
                }
            }
        }
        if stale == 0 {
            return;
        }
        // Guarded by the index: a sync that became current meanwhile keeps
        // its chunks.
        match store.commit(&batch) {
            Ok(()) => self.host.log(
                Level::Info,
                &format!("deleted {stale} abandoned user sync(s)"),
            ),
            Err(e) => self.host.log(
                Level::Warn,
                &format!("could not delete abandoned user syncs: {e}"),
            ),
        }
    }
}

/// A sync's progress inside one step.
struct Step {
    sync: String,
    /// `None` before the first page.
    next: Option<String>,
    pages: u32,
    fetched: u32,
    total: u32,
}

/// A chunk being filled in this step: the JSON array written as users
/// arrive, and their entries for the id map.
struct PartWriter {
    page: u32,
    json: Vec<u8>,
    ids: String,
    count: u32,
}

impl PartWriter {
    fn new(page: u32) -> Self {
        let mut json = Vec::with_capacity(CHUNK_TARGET * 256);
        json.push(b'[');
        Self {
            page,
            json,
            ids: String::with_capacity(CHUNK_TARGET * 24),
            count: 0,
        }
    }

    fn push(&mut self, user: &StoredUser<'_>) -> Result<(), PluginError> {
        if self.count > 0 {
            self.json.push(b',');
        }
        user.write_json(&mut self.json)?;
        // Only ids `find` can ask for go into the map: a comma or colon in
        // one would garble the entries around it.
        let id = user.id.text;
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let _ = write!(self.ids, "{id}:{},", self.page);
        }
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> Part {
        self.json.push(b']');
        Part {
            page: self.page,
            json: self.json,
            ids: ChunkIds {
                count: self.count,
                ids: self.ids,
            },
        }
    }
}

/// A chunk read in this step, encoded, not yet written.
struct Part {
    page: u32,
    /// The chunk: a JSON array of [`UserRecord`].
    json: Vec<u8>,
    ids: ChunkIds,
}

impl Part {
    /// `batch` with the chunk and its id list added.
    fn stage(self, sync: &str, batch: Batch) -> Result<Batch, PluginError> {
        Ok(batch
            .set(&ids_part_key(sync, self.page), &self.ids)?
            .set_raw(&page_key(sync, self.page), self.json))
    }
}

/// The id list of one staged chunk (`users/sync/<sync>/ids-<page>`).
#[derive(Serialize, Deserialize)]
struct ChunkIds {
    /// Users in the chunk.
    count: u32,
    /// `<id>:<page>,` per user: the chunk's share of the id map.
    ids: String,
}

/// A page of the users query, its text borrowed from the answer.
fn parse_page(response: &ApiResponse) -> Result<QueryPage<SfUser<'_>>, PluginError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        PluginError::CrmUnavailable(format!(
            "Salesforce's answer to the users query could not be read ({}); try again later",
            http::sanitize(&e.to_string())
        ))
    })
}

/// A query failure worded for the sync: an expired query locator means the
/// sync must start again.
fn query_error(e: SalesforceError) -> PluginError {
    if let SalesforceError::Api(api) = &e
        && api.has_code("INVALID_QUERY_LOCATOR")
    {
        return PluginError::InvalidInput(
            "Salesforce no longer knows this sync's position (a paused sync expires after about 15 minutes)".into(),
        );
    }
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4_000), "4,000");
        assert_eq!(thousands(50_000), "50,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn sync_ids_carry_their_start() {
        assert_eq!(
            sync_started_ms("1700000000000-00112233aabb"),
            Some(1_700_000_000_000)
        );
        assert_eq!(sync_started_ms("1700000000000-00112233aab"), None);
        assert_eq!(sync_started_ms("17000000000-00112233aabb"), None);
        assert_eq!(sync_started_ms("../x"), None);
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let c = Cursor {
            v: 1,
            sync: "1700000000000-00112233aabb".into(),
            next: "/services/data/v67.0/query/01gX-2000".into(),
            pages: 1,
            fetched: 2000,
            total: 5000,
        };
        let text = c.encode().map_err(|e| e.to_string());
        let back = text
            .as_deref()
            .map(|t| Cursor::decode(t).map_err(|e| e.to_string()));
        assert_eq!(back, Ok(Ok(c.clone())));
        for bad in [
            "",
            "not base64 !",
            "e30",
            &"A".repeat(5000),
            &URL_SAFE_NO_PAD.encode(
                br#"{"v":1,"sync":"x","next":"/services/data/","pages":1,"fetched":0,"total":0}"#,
            ),
            &Cursor {
                next: "https://evil.example/".into(),
                ..c.clone()
            }
            .encode()
            .unwrap_or_default(),
            &Cursor { pages: 0, ..c }.encode().unwrap_or_default(),
        ] {
            let e = Cursor::decode(bad);
            assert!(
                matches!(&e, Err(PluginError::InvalidInput(m)) if m.contains("start the sync again")),
                "{bad}: {e:?}"
            );
        }
    }

    /// A page's users as a chunk stores them.
    fn stored_json(page: &str) -> String {
        let page: QueryPage<SfUser<'_>> = match serde_json::from_str(page) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let mut part = PartWriter::new(0);
        for user in &page.records {
            assert!(part.push(&user.stored()).is_ok());
        }
        String::from_utf8(part.finish().json).unwrap_or_default()
    }

    #[test]
    fn salesforce_records_become_compact_user_records() {
        let json = stored_json(
            r#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"User","url":"/x"},
            "Id":"005A","Name":"Ann","Username":"ann@acme","Email":"","IsActive":true,
            "UserType":"Standard","Title":null,"Phone":" ","Extension":"12"}]}"#,
        );
        assert_eq!(
            json,
            r#"[{"id":"005A","name":"Ann","username":"ann@acme","type":"Standard","extension":"12"}]"#
        );
        let users: Result<Vec<UserRecord>, _> = serde_json::from_str(&json);
        assert_eq!(users.ok().map(|u| u[0].email.is_none()), Some(true));
    }

    #[test]
    fn the_stored_form_is_user_records_json_escapes_included() {
        // Escaped text cannot be borrowed from the body: it is unescaped
        // into its own string, and written escaped again.
        let json = stored_json(
            r#"{"totalSize":1,"done":true,"records":[{"Id":"005B","Name":"Zo\u00eb \"Z\" O'Neil",
            "Username":"z@acme","Email":"z@acme.org","IsActive":false,"UserType":"Standard",
            "Title":"Head\\of","Department":"Vertrieb Süd","Phone":"+1 555","MobilePhone":"+1 556",
            "Extension":"12","LastModifiedDate":"2024-01-02T03:04:05.000+0000"}]}"#,
        );
        let record = UserRecord {
            id: "005B".into(),
            name: "Zoë \"Z\" O'Neil".into(),
            username: "z@acme".into(),
            email: Some("z@acme.org".into()),
            active: false,
            kind: Some("Standard".into()),
            title: Some("Head\\of".into()),
            department: Some("Vertrieb Süd".into()),
            phone: Some("+1 555".into()),
            mobile: Some("+1 556".into()),
            extension: Some("12".into()),
            modified: Some("2024-01-02T03:04:05.000+0000".into()),
        };
        assert_eq!(
            Ok(json),
            serde_json::to_string(&[record]).map_err(|e| e.to_string())
        );
    }

    #[test]
    fn odd_ids_stay_out_of_the_id_map() {
        let mut part = PartWriter::new(7);
        for id in ["005A", "x,005B:1", "", "005C"] {
            let out = |text| Out { text, plain: false };
            let user = StoredUser {
                id: out(id),
                name: out(""),
                username: out(""),
                email: None,
                active: true,
                kind: None,
                title: None,
                department: None,
                phone: None,
                mobile: None,
                extension: None,
                modified: None,
            };
            assert!(part.push(&user).is_ok());
        }
        let part = part.finish();
        assert_eq!(part.ids.ids, "005A:7,005C:7,");
        assert_eq!(part.ids.count, 4);
        let users: Result<Vec<UserRecord>, _> = serde_json::from_slice(&part.json);
        assert_eq!(users.map(|u| u.len()).ok(), Some(4));
    }
}
