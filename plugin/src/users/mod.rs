//! The synced list of Salesforce users: what a user record is, where the
//! list is stored and how it is read. The sync that writes it is in `sync`,
//! turning Salesforce's pages into chunks in `chunks`, and the sync's id and
//! cursor in `cursor`.
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
//! # Full sync and refresh
//! A sync started without a cursor is a **refresh** when the current list
//! allows it (`refresh`): it was made by a full sync less than
//! [`FULL_SYNC_EVERY_MS`] ago, with today's `user-types` setting, and
//! carries a high-water mark (the newest `SystemModstamp` read). Then one
//! query reads the users changed since the mark (less
//! [`REFRESH_OVERLAP_MS`]), active or not, of any type: in Salesforce a
//! deactivation, a rename and a change of `UserType` all bump
//! `SystemModstamp`, and users are never deleted. Each changed user
//! replaces its entry in its chunk, or leaves the list (inactive, or a type
//! the setting leaves out), or joins the last chunk; the chunks it touched,
//! the id map and the index are written in one batch guarded by the index.
//! Otherwise (the first sync, a changed setting, a day since the last full
//! one, more than [`REFRESH_MAX_CHANGES`] changes, an unreadable list) the
//! sync is a full one, in steps as below.
//!
//! # Storage (kv keys)
//! - `users/sync/<sync>/<page>` (`00000`, `00001`, ...): a JSON array of
//!   [`UserRecord`], about 2,000 per key (see `sizes` in the tests: ~0.5 MB).
//! - `users/sync/<sync>/ids-<page>`: the ids of that chunk in the id map's
//!   form, written with it, so the last step builds the id map without
//!   reading any chunk; folded into the id map and deleted by the swap.
//! - `users/sync/<sync>/ids/<shard>` (`0000`, `0001`, ...): the id map, a
//!   JSON string `",<id>:<page>,<id>:<page>,"` naming the chunk of every
//!   user, so a lookup by id reads one chunk. It is cut into shards of
//!   about [`IDS_PER_SHARD`] users by a hash of the id ([`id_shard`]), so a
//!   lookup or a refresh reads and writes only the shards of its ids. The
//!   index says how many shards; a list stored before the map was sharded
//!   has one map under `users/sync/<sync>/ids`, which lookups and refreshes
//!   still read.
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
//! Sizes: 50,000 users are 100 chunks, 50 id-map shards and 2 keys (plus an id list per
//! chunk while staging), twice that while a sync runs: far inside the
//! default quota of 10,000 keys and 64 MiB.

mod chunks;
mod cursor;
mod refresh;
mod sync;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::bindings::exports::pbx::crm::integration::CrmUser;
use crate::error::PluginError;
use crate::host::Host;
use crate::salesforce::ids;
use crate::settings::UserTypes;
use crate::store::{self, Store, keys};

/// The users query, under the name the sync benchmark knows it by.
pub use crate::salesforce::query::USERS_SOQL;
pub use chunks::page_chunk;
/// Users per stored chunk: a chunk is closed once it holds this many (a
/// lookup by id reads one chunk, so chunks stay small).
pub const CHUNK_TARGET: usize = 500;
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
/// A full sync at least this often, even when refreshes could go on: a
/// refresh trusts `SystemModstamp`, and a daily full read bounds how long
/// anything it missed stays wrong.
pub const FULL_SYNC_EVERY_MS: u64 = 24 * 60 * 60 * 1000;
/// A refresh asks for changes since its high-water mark less this much:
/// Salesforce stamps a change when its transaction starts, so a change
/// committed late can carry a stamp older than one already read. Users
/// read twice are the same update, applied twice.
pub const REFRESH_OVERLAP_MS: u64 = 5 * 60 * 1000;
/// Most changed users a refresh applies (one page of the changes query);
/// more changes than this make a full sync.
pub const REFRESH_MAX_CHANGES: usize = 2_000;
/// Users per shard of the id map: a lookup by id, or a refresh, reads
/// only the shards of the ids it needs (about 24 KB each) instead of one
/// map of every user (1 MB for 50,000).
pub const IDS_PER_SHARD: u32 = 1_000;
/// Most shards of one id map.
const MAX_ID_SHARDS: u32 = 1_024;
/// Most chunks one sync may write (4,000 chunks of 500 are 2 million
/// users: past that something is wrong).
const MAX_CHUNKS: u32 = 4_000;

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

impl crate::matching::UserEmail for UserRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn email(&self) -> Option<&str> {
        self.email.as_deref()
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
    /// When the sync (or the last refresh) finished, ms since the Unix
    /// epoch.
    pub synced_at_ms: u64,
    /// Which users the list holds (`None`: a list from before the setting,
    /// which the next sync replaces whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_types: Option<UserTypes>,
    /// The newest `SystemModstamp` read (ms since the Unix epoch): a
    /// refresh asks for the users changed after it (less an overlap).
    /// `None`: Salesforce sent none, so every sync is a full one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water_ms: Option<u64>,
    /// When the last full sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_at_ms: Option<u64>,
    /// How many shards the id map has (`users/sync/<sync>/ids/<shard>`).
    /// `None`: a list stored before the map was sharded, whose map is the
    /// single key `users/sync/<sync>/ids`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_shards: Option<u32>,
}

impl UsersIndex {
    /// The key of the id map's shard that holds (or would hold) `id`.
    pub fn id_map_key(&self, id: &str) -> String {
        match self.id_shards {
            Some(shards) => id_shard_key(&self.sync_id, id_shard(id, shards)),
            None => ids_key(&self.sync_id),
        }
    }
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

impl LastSync {
    /// A sync (full or refresh) that ended at `at_ms` with `count` users.
    pub fn finished(at_ms: u64, count: u32) -> Self {
        Self {
            ok: true,
            at_ms,
            message: None,
            fetched: count,
            total: count,
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

/// The key of the single id map of `sync`, as lists stored before the map
/// was sharded have it.
pub fn ids_key(sync: &str) -> String {
    format!("{}{sync}/ids", keys::USERS_SYNC_PREFIX)
}

/// The key of shard `shard` of the id map of `sync`.
pub fn id_shard_key(sync: &str, shard: u32) -> String {
    format!("{}{sync}/ids/{shard:04}", keys::USERS_SYNC_PREFIX)
}

/// How many shards the id map of a list of `count` users gets.
pub fn id_shards_for(count: u32) -> u32 {
    (count / IDS_PER_SHARD).clamp(1, MAX_ID_SHARDS)
}

/// Which of `shards` shards holds `id`: FNV-1a, stable across builds and
/// platforms (std's hasher is neither), and even over Salesforce's ids,
/// whose characters are base-62 digits.
pub fn id_shard(id: &str, shards: u32) -> u32 {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % shards.max(1)
}

/// The id map's `shards` shards made of chunks' id lists (`<id>:<page>,`
/// per user), each in the map's form `,<id>:<page>,...`.
fn shard_id_map(lists: &[String], shards: u32) -> Vec<String> {
    let total: usize = lists.iter().map(String::len).sum();
    let even = total / shards.max(1) as usize;
    let each = even + even / 4 + 64;
    let mut out: Vec<String> = (0..shards.max(1))
        .map(|_| {
            let mut map = String::with_capacity(each);
            map.push(',');
            map
        })
        .collect();
    for entry in lists.iter().flat_map(|l| l.split(',')) {
        let Some((id, _page)) = entry.split_once(':') else {
            continue;
        };
        let map = &mut out[id_shard(id, shards) as usize];
        map.push_str(entry);
        map.push(',');
    }
    out
}

/// Where `id`'s entry is in an id map (`,<id>:<page>,`): the byte range of
/// `<id>:<page>,` and the page. `Err` when the entry is damaged.
fn locate(map: &str, id: &str) -> Result<Option<(std::ops::Range<usize>, u32)>, ()> {
    let needle = format!(",{id}:");
    let Some(at) = map.find(&needle) else {
        return Ok(None);
    };
    let start = at + 1;
    let digits_at = at + needle.len();
    let len = map[digits_at..].find(',').ok_or(())?;
    let page = map[digits_at..digits_at + len].parse().map_err(|_| ())?;
    Ok(Some((start..digits_at + len + 1, page)))
}

/// The prefix of every key of `sync`.
fn sync_prefix(sync: &str) -> String {
    format!("{}{sync}/", keys::USERS_SYNC_PREFIX)
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
    /// name; users a refresh added come last until the next full sync),
    /// with its index; `None` before the first sync.
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
        self.store()
            .get(&key)?
            .ok_or_else(|| store::unreadable(&key, "a part of the user list is missing"))
    }

    /// The active synced user with `id`, reading only its chunk. `None`
    /// when the user is not in the current list (deactivated, removed, or
    /// never synced).
    pub fn find(&self, id: &str) -> Result<Option<UserRecord>, PluginError> {
        // The list holds 18-character ids; a 15-character one is the same
        // user. Anything else cannot be in the list and must not confuse
        // the ",id:page," search below.
        let Ok(id) = ids::normalize(id, "user id") else {
            return Ok(None);
        };
        let id = id.as_str();
        let Some(index) = self.index()? else {
            return Ok(None);
        };
        let key = index.id_map_key(id);
        let Some(map) = self.store().get::<String>(&key)? else {
            return Err(store::unreadable(&key, "the user list's id map is missing"));
        };
        let page = match locate(&map, id) {
            Ok(Some((_, page))) => page,
            Ok(None) => return Ok(None),
            Err(()) => return Err(store::unreadable(&key, "the user list's id map is damaged")),
        };
        Ok(self
            .chunk(&index.sync_id, page)?
            .into_iter()
            .find(|u| u.id == id && u.active))
    }
}
