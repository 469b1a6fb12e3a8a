//! The user sync end to end against the fake host and the fake Salesforce:
//! paging, steps of several pages in one batch (or one page when Salesforce
//! is slow), the swap at the end, stale users and scale (`steps`); failures
//! part-way and refused cursors (`failures`); the incremental refresh
//! (`refresh`); and the list's own helpers.

mod failures;
mod refresh;
mod steps;

use std::sync::atomic::{AtomicU32, Ordering};

use crate::bindings::pbx::crm::{directory, http_fetch, kv_store, log, open_browser};
use crate::host::Host;
use crate::store::{Store, keys};
use crate::testing::user_list::*;
use crate::testing::{FakeHost, response};
use crate::users::{LastSync, STEP_BUDGET_MS, UsersIndex};

use super::*;

/// For timings printed by the tests.
const BUILD: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The fake host behind a network where every request takes `ms` of the
/// fake clock, and request number `fail_at.0` (counted from 1) is answered
/// with `fail_at.1` instead of reaching Salesforce.
struct Net<'a> {
    host: &'a FakeHost,
    ms: u64,
    sent: AtomicU32,
    fail_at: Option<(u32, (u16, &'static str))>,
}

/// A Salesforce so slow that a step reads one page: each request takes the
/// whole step budget.
fn slow(host: &FakeHost) -> Net<'_> {
    Net {
        host,
        ms: STEP_BUDGET_MS,
        sent: AtomicU32::new(0),
        fail_at: None,
    }
}

/// A fast Salesforce (no time passes) whose request number `n` fails.
fn failing_at<'a>(host: &'a FakeHost, n: u32, answer: (u16, &'static str)) -> Net<'a> {
    Net {
        host,
        ms: 0,
        sent: AtomicU32::new(0),
        fail_at: Some((n, answer)),
    }
}

impl Host for Net<'_> {
    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, kv_store::Error> {
        self.host.kv_get(key)
    }
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), kv_store::Error> {
        self.host.kv_set(key, value)
    }
    fn kv_delete(&self, key: &str) -> Result<(), kv_store::Error> {
        self.host.kv_delete(key)
    }
    fn kv_list(&self, prefix: &str) -> Result<Vec<String>, kv_store::Error> {
        self.host.kv_list(prefix)
    }
    fn kv_batch(
        &self,
        preconditions: &[kv_store::Precondition],
        writes: &[kv_store::Write],
    ) -> Result<(), kv_store::Error> {
        self.host.kv_batch(preconditions, writes)
    }
    fn fetch(
        &self,
        request: &http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        self.host.advance_ms(self.ms);
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fail_at {
            Some((at, (status, body))) if at == n => Ok(response(status, body)),
            _ => self.host.fetch(request),
        }
    }
    fn open_page(
        &self,
        url: &str,
        audience: &open_browser::Audience,
        caption: Option<&open_browser::Caption>,
    ) -> Result<(), String> {
        self.host.open_page(url, audience, caption)
    }
    fn offer_records(
        &self,
        audience: &open_browser::Audience,
        caption: &open_browser::Caption,
        records: &[crate::bindings::pbx::crm::types::CrmRecord],
    ) -> Result<(), String> {
        self.host.offer_records(audience, caption, records)
    }
    fn extensions(&self) -> Vec<directory::Extension> {
        self.host.extensions()
    }
    fn log(&self, level: log::Level, message: &str) {
        self.host.log(level, message)
    }
    fn now_ms(&self) -> u64 {
        self.host.now_ms()
    }
    fn random_bytes(&self, len: usize) -> Vec<u8> {
        self.host.random_bytes(len)
    }
    fn sleep_ms(&self, ms: u64) {
        self.host.sleep_ms(ms)
    }
}

/// The keys each batch of the user sync wrote (set or deleted).
fn sync_batches(host: &FakeHost) -> Vec<Vec<String>> {
    host.batches()
        .into_iter()
        .filter(|b| b.iter().any(|k| k.starts_with("users/")))
        .collect()
}

/// Keys of the staging areas and id maps of all syncs.
fn sync_keys(host: &FakeHost) -> Vec<String> {
    host.kv_keys()
        .into_iter()
        .filter(|k| k.starts_with(keys::USERS_SYNC_PREFIX))
        .collect()
}

fn index(host: &FakeHost) -> Option<UsersIndex> {
    Store::new(host).get(keys::USERS_INDEX).ok().flatten()
}

fn last_sync(host: &FakeHost) -> Option<LastSync> {
    Store::new(host).get(keys::USERS_LAST_SYNC).ok().flatten()
}

/// Finish the sync at `cursor`; the users it stored.
fn sync_from<H: Host + Copy>(host: H, mut cursor: Option<String>) -> u32 {
    let mut fetched = 0;
    while let Some(c) = cursor {
        let p = step(host, Some(&c));
        fetched = p.fetched;
        cursor = p.cursor;
    }
    fetched
}

#[test]
fn thousands_are_grouped() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(4_000), "4,000");
    assert_eq!(thousands(50_000), "50,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
}

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

#[test]
fn the_id_map_is_cut_into_even_shards_each_entry_where_its_hash_says() {
    const N: usize = 50_000;
    let shards = id_shards_for(N as u32);
    assert_eq!(shards, 50);
    assert_eq!((id_shards_for(0), id_shards_for(999)), (1, 1));
    assert_eq!(id_shards_for(u32::MAX), 1_024);
    // Chunks' id lists as a sync stages them: 500 users a chunk.
    let lists: Vec<String> = (0..N / 500)
        .map(|page| {
            (page * 500..(page + 1) * 500)
                .map(|i| format!("{}:{page},", crate::testing::sf_user_id(i)))
                .collect()
        })
        .collect();
    let maps = shard_id_map(&lists, shards);
    assert_eq!(maps.len(), shards as usize);
    let mut seen = 0;
    for (shard, map) in maps.iter().enumerate() {
        let entries: Vec<&str> = map.split(',').filter(|e| !e.is_empty()).collect();
        // Even within a fifth of 1,000 each.
        assert!(
            (800..=1_200).contains(&entries.len()),
            "shard {shard}: {}",
            entries.len()
        );
        for entry in entries {
            let Some((id, page)) = entry.split_once(':') else {
                panic!("{entry}");
            };
            assert_eq!(id_shard(id, shards), shard as u32, "{id}");
            let found = locate(map, id).map(|f| f.map(|(_, p)| p.to_string()));
            assert_eq!(found, Ok(Some(page.to_string())), "{id}");
            seen += 1;
        }
    }
    assert_eq!(seen, N);
}
