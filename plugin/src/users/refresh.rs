//! The incremental refresh: after a full sync, read only the users changed
//! since the list's high-water mark and apply them to the stored chunks in
//! one batch (see the module above for when a sync is a refresh). Anything
//! that makes the stored list unusable for editing, or too many changes,
//! answers "do a full sync" instead of an error.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::chunks::{SfUser, parse_page};
use super::sync::{Step, query_page};
use super::{
    CHUNK_TARGET, FULL_SYNC_EVERY_MS, LastSync, REFRESH_MAX_CHANGES, REFRESH_OVERLAP_MS, Users,
    UsersIndex, locate, page_key,
};
use crate::bindings::exports::pbx::crm::integration::SyncProgress;
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::salesforce::Salesforce;
use crate::salesforce::ids;
use crate::salesforce::query::{query_path, users_changed_soql};
use crate::settings::UserTypes;
use crate::store::{self, Batch, keys};

/// What a refresh did, for the log.
#[derive(Default)]
struct Tally {
    added: u32,
    updated: u32,
    removed: u32,
}

impl<H: Host> Users<'_, H> {
    /// A refresh, when the current list allows one: `Some` with the
    /// finished progress, or `None` when this sync must be a full one.
    pub(super) fn refresh(&self, types: UserTypes) -> Result<Option<SyncProgress>, PluginError> {
        let store = self.store();
        let (index, index_raw) = match store.get_with_raw::<UsersIndex>(keys::USERS_INDEX) {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Ok(self.full_because(&format!("the user list's index is unreadable ({e})")));
            }
        };
        let now = self.host.now_ms();
        let Some(high) = index.high_water_ms else {
            return Ok(None);
        };
        if index.user_types != Some(types) {
            return Ok(self.full_because("the users to list (user-types) changed"));
        }
        if index
            .full_at_ms
            .is_none_or(|at| now.saturating_sub(at) >= FULL_SYNC_EVERY_MS)
        {
            return Ok(self.full_because("the last full sync is a day old"));
        }
        let state = Step {
            sync: index.sync_id.clone(),
            next: None,
            pages: index.pages,
            fetched: 0,
            total: 0,
            types,
            high: Some(high),
        };
        let sf = Salesforce::new(self.host);
        let since = high.saturating_sub(REFRESH_OVERLAP_MS);
        let response = query_page(&sf, &query_path(&users_changed_soql(since)))
            .map_err(|e| self.failed(&state, e))?;
        let page = parse_page(&response).map_err(|e| self.failed(&state, e))?;
        if !page.done || page.records.len() > REFRESH_MAX_CHANGES {
            return Ok(self.full_because(&format!(
                "{} users changed since the last sync",
                page.total_size
            )));
        }
        match self.apply(&index, index_raw, types, &page.records, now) {
            Ok(progress) => Ok(Some(progress)),
            Err(e @ PluginError::Corrupt { .. }) => {
                Ok(self.full_because(&format!("the stored list cannot be edited ({e})")))
            }
            Err(e) => Err(self.failed(&state, e)),
        }
    }

    /// Log why this sync is a full one; `None` (do a full sync).
    fn full_because(&self, why: &str) -> Option<SyncProgress> {
        self.host
            .log(Level::Info, &format!("user sync: a full sync, as {why}"));
        None
    }

    /// Apply the changed users to the list: edit the chunks they are in (or
    /// the last one, for newcomers), the id map and the index, in one batch
    /// guarded by the index read.
    fn apply(
        &self,
        index: &UsersIndex,
        index_raw: Vec<u8>,
        types: UserTypes,
        changed: &[SfUser<'_>],
        now: u64,
    ) -> Result<SyncProgress, PluginError> {
        let store = self.store();
        let sync = index.sync_id.as_str();
        // The id map's shards this refresh reads, by key; those whose
        // entries changed (users came or went) are written back.
        let mut maps: BTreeMap<String, String> = BTreeMap::new();
        let mut dirty_maps: BTreeSet<String> = BTreeSet::new();
        let mut chunks: BTreeMap<u32, RawChunk> = BTreeMap::new();
        // Chunks whose content changed: the refresh's overlap re-reads users
        // already applied, and an unchanged chunk is not written again.
        let mut dirty: BTreeSet<u32> = BTreeSet::new();
        let mut pages = index.pages.max(1);
        let mut count = index.count;
        let mut high = index.high_water_ms;
        let mut tally = Tally::default();
        for user in changed {
            high = high.max(user.modstamp_ms());
            // Salesforce sends 18-character ids; anything else is no user
            // of the list.
            let Ok(id) = ids::normalize(user.id(), "user id") else {
                continue;
            };
            let keep = user.is_active() && types.includes(user.user_type());
            let map_key = index.id_map_key(&id);
            let map = self.id_map(&mut maps, &map_key)?;
            let damaged = || store::unreadable(&map_key, "the user list's id map is damaged");
            match locate(map, &id).map_err(|()| damaged())? {
                Some((range, page)) => {
                    let chunk = self.edited(&mut chunks, sync, page)?;
                    let Some(at) = chunk.position(&id) else {
                        return Err(damaged());
                    };
                    if keep {
                        let record = stored_json(user, &id)?;
                        if chunk.0[at].get() != record.get() {
                            chunk.0[at] = record;
                            dirty.insert(page);
                            tally.updated += 1;
                        }
                    } else {
                        chunk.0.remove(at);
                        dirty.insert(page);
                        map.replace_range(range, "");
                        dirty_maps.insert(map_key);
                        count = count.saturating_sub(1);
                        tally.removed += 1;
                    }
                }
                None if keep => {
                    let mut page = pages - 1;
                    if self.edited(&mut chunks, sync, page)?.0.len() >= CHUNK_TARGET {
                        page = pages;
                        pages += 1;
                        chunks.insert(page, RawChunk(Vec::new()));
                    }
                    map.push_str(&format!("{id}:{page},"));
                    dirty_maps.insert(map_key);
                    let record = stored_json(user, &id)?;
                    self.edited(&mut chunks, sync, page)?.0.push(record);
                    dirty.insert(page);
                    count = count.saturating_add(1);
                    tally.added += 1;
                }
                None => {}
            }
        }

        let mut batch = Batch::new().expect_raw(keys::USERS_INDEX, Some(index_raw));
        for (page, chunk) in chunks.iter().filter(|(page, _)| dirty.contains(page)) {
            batch = batch.set_raw(&page_key(sync, *page), chunk.encode());
        }
        // The id map changes only where users came or went.
        for key in &dirty_maps {
            if let Some(map) = maps.get(key) {
                batch = batch.set(key, map)?;
            }
        }
        let next = UsersIndex {
            pages,
            count,
            synced_at_ms: now,
            high_water_ms: high,
            ..index.clone()
        };
        let done = LastSync::finished(now, count);
        batch = batch
            .set(keys::USERS_INDEX, &next)?
            .set(keys::USERS_LAST_SYNC, &done)?;
        match store.commit(&batch) {
            Ok(()) => {}
            Err(PluginError::Conflict(_)) => {
                return Err(PluginError::Conflict(
                    "the user list changed while this refresh ran (another sync finished); sync again".into(),
                ));
            }
            Err(e) => return Err(e),
        }
        self.host.log(
            Level::Info,
            &format!(
                "user refresh: {} changed users read ({} added, {} updated, {} removed, {} chunks written); {count} users listed",
                changed.len(),
                tally.added,
                tally.updated,
                tally.removed,
                dirty.len()
            ),
        );
        Ok(SyncProgress {
            fetched: count,
            total: count,
            cursor: None,
        })
    }

    /// The id map's shard under `key` for editing, read once.
    fn id_map<'m>(
        &self,
        maps: &'m mut BTreeMap<String, String>,
        key: &str,
    ) -> Result<&'m mut String, PluginError> {
        Ok(match maps.entry(key.to_string()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let map: String = self
                    .store()
                    .get(key)?
                    .ok_or_else(|| store::unreadable(key, "the user list's id map is missing"))?;
                e.insert(map)
            }
        })
    }

    /// Chunk `page` of `sync` for editing, read once.
    fn edited<'c>(
        &self,
        chunks: &'c mut BTreeMap<u32, RawChunk>,
        sync: &str,
        page: u32,
    ) -> Result<&'c mut RawChunk, PluginError> {
        Ok(match chunks.entry(page) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let key = page_key(sync, page);
                let chunk: Vec<Box<RawValue>> = self
                    .store()
                    .get(&key)?
                    .ok_or_else(|| store::unreadable(&key, "a part of the user list is missing"))?;
                e.insert(RawChunk(chunk))
            }
        })
    }
}

/// A stored chunk as one JSON text per user: a refresh edits a few users
/// of a chunk of 500, and reading and writing every field of every user
/// was most of its own time.
struct RawChunk(Vec<Box<RawValue>>);

impl RawChunk {
    /// Where the user with `id` is. Chunks are written in
    /// [`UserRecord`](super::UserRecord)'s compact form, which starts with
    /// the id; a user in another form is read for its id.
    fn position(&self, id: &str) -> Option<usize> {
        #[derive(Deserialize)]
        struct Id<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let head = format!("{{\"id\":\"{id}\"");
        self.0.iter().position(|user| {
            let text = user.get();
            if text.starts_with("{\"id\":\"") {
                text.starts_with(&head)
            } else {
                serde_json::from_str::<Id<'_>>(text).is_ok_and(|u| u.id == id)
            }
        })
    }

    /// The chunk's JSON array.
    fn encode(&self) -> Vec<u8> {
        let len = self.0.iter().map(|u| u.get().len() + 1).sum::<usize>() + 2;
        let mut out = Vec::with_capacity(len);
        out.push(b'[');
        for (i, user) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(user.get().as_bytes());
        }
        out.push(b']');
        out
    }
}

/// `user` as a chunk stores it, under its 18-character `id`.
fn stored_json(user: &SfUser<'_>, id: &str) -> Result<Box<RawValue>, PluginError> {
    let mut record = user.record()?;
    record.id = id.to_string();
    serde_json::to_string(&record)
        .and_then(RawValue::from_string)
        .map_err(|e| PluginError::Store(format!("cannot encode a user: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_chunk_finds_users_in_any_form_and_writes_them_back_as_read() {
        let text =
            r#"[{"id":"005A","name":"A"},{"id":"005AB","name":"B"},{ "name": "C", "id": "005C" }]"#;
        let Ok(users) = serde_json::from_str::<Vec<Box<RawValue>>>(text) else {
            panic!("not a chunk");
        };
        let chunk = RawChunk(users);
        assert_eq!(chunk.position("005A"), Some(0));
        assert_eq!(chunk.position("005AB"), Some(1));
        assert_eq!(chunk.position("005C"), Some(2));
        assert_eq!(chunk.position("005"), None);
        assert_eq!(
            String::from_utf8(chunk.encode()).ok().as_deref(),
            Some(text)
        );
        assert_eq!(RawChunk(Vec::new()).encode(), b"[]");
    }
}
