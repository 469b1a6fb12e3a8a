//! The user sync, step by step: read pages until the step's budget, write
//! their chunks in one batch, and in the last step swap the new list in
//! (see the module above for the whole design). A failed step writes
//! nothing and records what happened for the status.

use std::collections::BTreeMap;

use super::chunks::{ChunkIds, Part, PartWriter, parse_page};
use super::cursor::{Cursor, new_sync_id, sync_started_ms};
use super::{
    CHUNK_TARGET, LastSync, MAX_CHUNKS, MAX_PAGES_PER_STEP, STAGING_TTL_MS, STEP_BUDGET_MS,
    STEP_MAX_BYTES, Users, UsersIndex, id_shard_key, id_shards_for, ids_part_key, page_key,
    shard_id_map, sync_prefix, thousands,
};
use crate::bindings::exports::pbx::crm::integration::SyncProgress;
use crate::bindings::pbx::crm::http_fetch::Method;
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::http;
use crate::salesforce::query::{query_path, users_soql};
use crate::salesforce::{ApiResponse, Salesforce, SalesforceError};
use crate::settings::{Settings, UserTypes};
use crate::store::{self, Batch, keys};

/// Salesforce's largest page.
const BATCH_OPTION: &str = "batchSize=2000";

/// `e` with `message` instead of its own text, keeping its kind (the host
/// reacts to the kind: back off, show "re-authorize", ...).
pub(super) fn reworded(e: PluginError, message: String) -> PluginError {
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

impl<H: Host> Users<'_, H> {
    /// One step of a sync: start one with `None`, continue with the cursor
    /// the previous step returned. A failed step leaves the previous list in
    /// place and records what happened for the status; the same cursor may
    /// be tried again (within an hour), or a new sync started.
    pub fn sync_step(&self, cursor: Option<&str>) -> Result<SyncProgress, PluginError> {
        let started = self.host.now_ms();
        let mut state = match cursor {
            None => {
                self.prune();
                let types = self.user_types()?;
                if let Some(done) = self.refresh(types)? {
                    return Ok(done);
                }
                let sync = new_sync_id(self.host);
                self.host
                    .log(Level::Info, &format!("user sync {sync} started"));
                Step {
                    sync,
                    next: None,
                    pages: 0,
                    fetched: 0,
                    total: 0,
                    types,
                    high: None,
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
                    types: cursor.types,
                    high: cursor.high,
                }
            }
        };

        let sf = Salesforce::new(self.host);
        let mut parts: Vec<Part> = Vec::new();
        let mut open = PartWriter::new(state.pages);
        let mut pages_read = 0;
        loop {
            let response = match self.fetch_page(&sf, state.types, state.next.as_deref()) {
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
                state.high = state.high.max(user.modstamp_ms());
                // Chunks close at the target, not at Salesforce's page
                // boundaries (2,000 records), so a refresh that edits a few
                // users rewrites small chunks.
                if open.count as usize >= CHUNK_TARGET {
                    let next = PartWriter::new(open.page + 1);
                    parts.push(std::mem::replace(&mut open, next).finish());
                }
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
            types: state.types,
            high: state.high,
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
        types: UserTypes,
        next: Option<&str>,
    ) -> Result<ApiResponse, PluginError> {
        let path = match next {
            None => query_path(&users_soql(types)),
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
        query_page(sf, &path)
    }

    /// The `user-types` setting: which users the list holds.
    fn user_types(&self) -> Result<UserTypes, PluginError> {
        Ok(self
            .store()
            .get::<Settings>(keys::SETTINGS)?
            .unwrap_or_default()
            .user_types)
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
    pub(super) fn failed(&self, state: &Step, error: PluginError) -> PluginError {
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
        // The id lists of every chunk, in order, then cut into the map's
        // shards once the count is known.
        let mut lists: Vec<String> = Vec::with_capacity(state.pages as usize + parts.len());
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
                let e = store::unreadable(&key, "a staged part of the user list is damaged");
                return Err(self.failed(state, e));
            };
            lists.push(part.ids);
            count = count.saturating_add(part.count);
            // Guarded by the id lists it folds: if this sync's staging area
            // was pruned meanwhile, it must not become the list.
            batch = batch.expect_raw(&key, Some(raw)).delete(&key);
        }
        let pages = state.pages + parts.len() as u32;
        for part in parts {
            lists.push(part.ids.ids);
            count = count.saturating_add(part.ids.count);
            batch = batch.set_raw(&page_key(&state.sync, part.page), part.json);
        }
        let id_shards = id_shards_for(count);
        for (shard, map) in shard_id_map(&lists, id_shards).iter().enumerate() {
            batch = batch.set(&id_shard_key(&state.sync, shard as u32), map)?;
        }
        drop(lists);

        let now = self.host.now_ms();
        let index = UsersIndex {
            sync_id: state.sync.clone(),
            pages,
            count,
            synced_at_ms: now,
            user_types: Some(state.types),
            high_water_ms: state.high,
            full_at_ms: Some(now),
            id_shards: Some(id_shards),
        };
        let done = LastSync::finished(now, count);
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
pub(super) struct Step {
    pub(super) sync: String,
    /// `None` before the first page.
    pub(super) next: Option<String>,
    pub(super) pages: u32,
    pub(super) fetched: u32,
    pub(super) total: u32,
    /// Which users the sync's query lists.
    pub(super) types: UserTypes,
    /// The newest `SystemModstamp` read so far.
    pub(super) high: Option<u64>,
}

/// A page of a users query (the first one's path, or a `nextRecordsUrl`).
pub(super) fn query_page<H: Host>(
    sf: &Salesforce<'_, H>,
    path: &str,
) -> Result<ApiResponse, PluginError> {
    let options = [http::header("sforce-query-options", BATCH_OPTION)];
    sf.send(Method::Get, path, None, &options)
        .map_err(query_error)
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
