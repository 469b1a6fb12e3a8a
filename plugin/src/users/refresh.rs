//! The incremental refresh: after a full sync, read only the users changed
//! since the list's high-water mark and apply them to the stored chunks in
//! one batch (see the module above for when a sync is a refresh). Anything
//! that makes the stored list unusable for editing, or too many changes,
//! answers "do a full sync" instead of an error.

use std::collections::BTreeMap;

use super::chunks::{SfUser, parse_page};
use super::sync::{Step, query_page};
use super::{
    CHUNK_TARGET, FULL_SYNC_EVERY_MS, LastSync, REFRESH_MAX_CHANGES, REFRESH_OVERLAP_MS,
    UserRecord, Users, UsersIndex, ids_key, page_key,
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

/// Where a user's entry is in the id map (`,<id>:<page>,`): the byte range
/// of `<id>:<page>,` and the page.
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
        let map_key = ids_key(sync);
        let mut map: String = store
            .get(&map_key)?
            .ok_or_else(|| store::unreadable(&map_key, "the user list's id map is missing"))?;
        let damaged = || store::unreadable(&map_key, "the user list's id map is damaged");
        let mut chunks: BTreeMap<u32, Vec<UserRecord>> = BTreeMap::new();
        // Chunks whose content changed: the refresh's overlap re-reads users
        // already applied, and an unchanged chunk is not written again.
        let mut dirty: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
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
            match locate(&map, &id).map_err(|()| damaged())? {
                Some((range, page)) => {
                    let chunk = self.edited(&mut chunks, sync, page)?;
                    let Some(at) = chunk.iter().position(|u| u.id == id) else {
                        return Err(damaged());
                    };
                    if keep {
                        let mut record = user.record()?;
                        record.id = id;
                        if chunk[at] != record {
                            chunk[at] = record;
                            dirty.insert(page);
                            tally.updated += 1;
                        }
                    } else {
                        chunk.remove(at);
                        dirty.insert(page);
                        map.replace_range(range, "");
                        count = count.saturating_sub(1);
                        tally.removed += 1;
                    }
                }
                None if keep => {
                    let mut page = pages - 1;
                    if self.edited(&mut chunks, sync, page)?.len() >= CHUNK_TARGET {
                        page = pages;
                        pages += 1;
                        chunks.insert(page, Vec::new());
                    }
                    let mut record = user.record()?;
                    record.id = id;
                    map.push_str(&format!("{}:{page},", record.id));
                    self.edited(&mut chunks, sync, page)?.push(record);
                    dirty.insert(page);
                    count = count.saturating_add(1);
                    tally.added += 1;
                }
                None => {}
            }
        }

        let mut batch = Batch::new().expect_raw(keys::USERS_INDEX, Some(index_raw));
        for (page, chunk) in chunks.iter().filter(|(page, _)| dirty.contains(page)) {
            batch = batch.set(&page_key(sync, *page), chunk)?;
        }
        // The id map changes only when users came or went.
        if tally.added > 0 || tally.removed > 0 {
            batch = batch.set(&map_key, &map)?;
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

    /// Chunk `page` of `sync` for editing, read once.
    fn edited<'c>(
        &self,
        chunks: &'c mut BTreeMap<u32, Vec<UserRecord>>,
        sync: &str,
        page: u32,
    ) -> Result<&'c mut Vec<UserRecord>, PluginError> {
        Ok(match chunks.entry(page) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(self.chunk(sync, page)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_entries_are_found_with_their_page() {
        let map = ",005A:0,005B:12,005AB:3,";
        assert_eq!(locate(map, "005B"), Ok(Some((8..16, 12))));
        assert_eq!(locate(map, "005A"), Ok(Some((1..8, 0))));
        assert_eq!(locate(map, "005AB"), Ok(Some((16..24, 3))));
        assert_eq!(locate(map, "005C"), Ok(None));
        assert_eq!(locate(",005A:x,", "005A"), Err(()));
        assert_eq!(locate(",005A:1", "005A"), Err(()));
    }
}
