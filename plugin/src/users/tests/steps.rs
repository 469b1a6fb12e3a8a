//! A sync from start to end: pages, steps, chunks, the swap, pruning,
//! concurrent syncs, a deactivated user, and 50,000 users.

use crate::associations::AssociationSet;
use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::integration::AssociationState;
use crate::plugin::Plugin;
use crate::store::{Store, keys};
use crate::testing::user_list::*;
use crate::testing::{FakeHost, sf_user_id};
use crate::testing::{NOW, err as kind};
use crate::users::{MAX_PAGES_PER_STEP, STEP_BUDGET_MS, UserRecord, ids_part_key, page_key};

use super::*;

#[test]
fn a_sync_pages_through_salesforce_and_swaps_the_list_in_at_the_end() {
    let (host, sf) = connected(5_000);
    // Salesforce is slow: each step reads one page.
    let net = slow(&host);
    let first = step(&net, None);
    assert_eq!((first.fetched, first.total), (2_000, 5_000));
    let Some(cursor) = first.cursor.clone() else {
        panic!("a cursor after the first of three pages");
    };
    assert!(
        cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{cursor}"
    );
    // Nothing is the list yet.
    assert_eq!(index(&host), None);
    assert!(
        Plugin::new(&host)
            .list_users()
            .is_ok_and(|l| l.entries.is_empty())
    );

    let second = step(&net, Some(&cursor));
    assert_eq!((second.fetched, second.total), (4_000, 5_000));
    assert_eq!(index(&host), None);
    let third = step(&net, second.cursor.as_deref());
    assert_eq!(
        (third.fetched, third.total, third.cursor),
        (5_000, 5_000, None)
    );
    assert_eq!(sf.user_pages(), 3);

    let requests = host.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[0]
            .url
            .contains("/services/data/v67.0/query?q=SELECT%20Id%2C%20Name")
    );
    assert!(requests[0].url.contains(
        "WHERE%20IsActive%20%3D%20true%20AND%20UserType%20%3D%20%27Standard%27%20ORDER%20BY%20Name"
    ));
    assert!(
        requests[1]
            .url
            .ends_with("/services/data/v67.0/query/01gUSERS-2000-5000")
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("sforce-query-options") == Some("batchSize=2000"))
    );

    let Some(idx) = index(&host) else {
        panic!("no index after the last step");
    };
    assert_eq!(
        (idx.pages, idx.count, idx.synced_at_ms),
        (10, 5_000, NOW + 3 * STEP_BUDGET_MS)
    );
    // Each step (a page of 2,000) wrote its four chunks with their id lists
    // in one batch; the index was written once, by the last step's batch,
    // which also wrote the last chunks and the id map and deleted the
    // staged id lists.
    let batches = sync_batches(&host);
    let sync_id = idx.sync_id.clone();
    assert_eq!(idx.id_shards, Some(5));
    let id_map: Vec<String> = (0..5)
        .map(|s| crate::users::id_shard_key(&sync_id, s))
        .collect();
    let staged = |pages: std::ops::Range<u32>| -> Vec<String> {
        pages
            .flat_map(|p| [ids_part_key(&sync_id, p), page_key(&sync_id, p)])
            .collect()
    };
    let mut last: Vec<String> = (0..8).map(|p| ids_part_key(&sync_id, p)).collect();
    last.extend([page_key(&sync_id, 8), page_key(&sync_id, 9)]);
    last.extend(id_map.iter().cloned());
    last.extend([
        keys::USERS_INDEX.to_string(),
        keys::USERS_LAST_SYNC.to_string(),
    ]);
    assert_eq!(batches, [staged(0..4), staged(4..8), last]);
    let mut current: Vec<String> = (0..10).map(|p| page_key(&sync_id, p)).collect();
    current.extend(id_map);
    assert_eq!(sync_keys(&host), current);

    let list = entries(&host);
    assert_eq!(list.len(), 5_000);
    assert_eq!(list[0].user.name, "User 00000");
    assert_eq!(list[4_999].user.name, "User 04999");
    assert!(
        list.iter()
            .all(|e| e.state == AssociationState::Unassociated)
    );
    assert_eq!(list[7].user.kind.as_deref(), Some("Standard"));
    assert_eq!(
        Plugin::new(&host).list_users().map(|l| l.synced_at_ms).ok(),
        Some(Some(NOW + 3 * STEP_BUDGET_MS))
    );
    assert_eq!(last_sync(&host).map(|l| l.ok), Some(true));
    // Lookups by id find users of every chunk through the id map.
    for i in [0, 1_999, 2_000, 4_999] {
        let found = crate::users::Users::new(&host).find(&sf_user_id(i));
        assert_eq!(found.ok().flatten().map(|u| u.id), Some(sf_user_id(i)));
    }
}

#[test]
fn a_fast_salesforce_is_read_several_pages_per_step_each_step_one_batch() {
    let (host, sf) = connected(12_000);
    sf.set_user_page_size(500);
    let steps = sync(&host);
    // At most MAX_PAGES_PER_STEP pages per step: 10 pages of 500.
    assert_eq!(MAX_PAGES_PER_STEP, 10);
    let fetched: Vec<(u32, u32)> = steps.iter().map(|s| (s.fetched, s.total)).collect();
    assert_eq!(
        fetched,
        [(5_000, 12_000), (10_000, 12_000), (12_000, 12_000)]
    );
    assert_eq!(sf.user_pages(), 24);
    // Chunks of 500, closed inside a page: ten per full step of 5,000,
    // four in the last.
    let Some(idx) = index(&host) else {
        panic!("no index");
    };
    assert_eq!((idx.pages, idx.count), (24, 12_000));
    let sizes: Vec<usize> = (0..idx.pages)
        .map(|p| {
            host.kv_json(&page_key(&idx.sync_id, p))
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sizes, [500; 24]);
    // One batch per step: three batches in all.
    let batches = sync_batches(&host);
    assert_eq!(batches.len(), 3, "{batches:?}");
    assert_eq!(batches[0].len(), 20, "10 chunks and their id lists");
    assert!(batches[2].iter().any(|k| k == keys::USERS_INDEX));
    assert_listed_in_order(&host, 12_000);
    for i in [0, 4_999, 5_000, 11_999] {
        let found = crate::users::Users::new(&host).find(&sf_user_id(i));
        assert_eq!(found.ok().flatten().map(|u| u.id), Some(sf_user_id(i)));
    }
}

#[test]
fn a_step_starts_no_page_once_it_holds_enough_bytes() {
    let (host, sf) = connected(0);
    // Users with 1.5 KB titles: a page of 2,000 is over 3 MB stored.
    let users: Vec<serde_json::Value> = org(7_000)
        .into_iter()
        .map(|mut u| {
            u["Title"] = "T".repeat(1_500).into();
            u
        })
        .collect();
    sf.set_users(users);
    let steps = sync(&host);
    let fetched: Vec<u32> = steps.iter().map(|s| s.fetched).collect();
    // Three pages reach STEP_MAX_BYTES: 6,000 users, then the rest.
    const { assert!(3 * 2_000 * 1_500 > crate::users::STEP_MAX_BYTES) };
    const { assert!(2 * 2_000 * 1_800 < crate::users::STEP_MAX_BYTES) };
    assert_eq!(fetched, [6_000, 7_000]);
    let list = entries(&host);
    assert_eq!(list.len(), 7_000);
}

#[test]
fn a_step_starts_no_page_after_its_time_budget() {
    let (host, sf) = connected(9_000);
    // Each page takes 40% of the budget: a step starts a third page (at
    // 80%), but no fourth (at 120%).
    let net = Net {
        ms: STEP_BUDGET_MS * 2 / 5,
        ..slow(&host)
    };
    let steps = sync(&net);
    let fetched: Vec<u32> = steps.iter().map(|s| s.fetched).collect();
    assert_eq!(fetched, [6_000, 9_000]);
    assert_eq!(sf.user_pages(), 5);
    assert_eq!(entries(&host).len(), 9_000);
}

#[test]
fn small_pages_are_gathered_into_chunks_of_five_hundred() {
    let (host, sf) = connected(2_100);
    sf.set_user_page_size(150);
    let steps = sync(&host);
    // Fourteen pages are two steps (ten pages at most each): 1,500 users in
    // three chunks, then 600 in a chunk of 500 and the rest.
    let fetched: Vec<u32> = steps.iter().map(|s| s.fetched).collect();
    assert_eq!(fetched, [1_500, 2_100]);
    assert_eq!(sf.user_pages(), 14);
    assert_eq!(index(&host).map(|i| (i.pages, i.count)), Some((5, 2_100)));
    assert_eq!(entries(&host).len(), 2_100);
}

#[test]
fn an_empty_org_gives_an_empty_list() {
    let (host, _sf) = connected(0);
    let steps = sync(&host);
    assert_eq!(steps.len(), 1);
    assert_eq!((steps[0].fetched, steps[0].total), (0, 0));
    assert_eq!(index(&host).map(|i| i.count), Some(0));
    let list = Plugin::new(&host).list_users();
    assert!(list.is_ok_and(|l| l.entries.is_empty() && l.synced_at_ms == Some(NOW)));
}

#[test]
fn a_new_sync_replaces_the_previous_list_and_deletes_it() {
    let (host, sf) = connected(3_000);
    sync(&host);
    let old = index(&host).map(|i| i.sync_id).unwrap_or_default();
    sf.set_users(org(2_500));
    host.advance_ms(60_000);
    let net = slow(&host);
    let first = step(&net, None);
    // While the new sync runs, the old list is the list.
    assert_eq!(index(&host).map(|i| i.sync_id), Some(old.clone()));
    assert_eq!(entries(&host).len(), 3_000);
    step(&net, first.cursor.as_deref());
    let new = index(&host).map(|i| i.sync_id).unwrap_or_default();
    assert_ne!(new, old);
    assert_eq!(entries(&host).len(), 2_500);
    let keys = host.kv_keys();
    assert!(
        keys.iter()
            .all(|k| !k.starts_with(&format!("{}{old}", keys::USERS_SYNC_PREFIX))),
        "{keys:?}"
    );
    let user_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with("users/")).collect();
    // Five chunks, the id map's two shards, the index, the last sync (no
    // staged id lists).
    assert_eq!(user_keys.len(), 9, "{user_keys:?}");
}

#[test]
fn abandoned_syncs_are_pruned_after_an_hour() {
    let (host, _sf) = connected(5_000);
    let net = slow(&host);
    let abandoned = step(&net, None);
    let staged = |host: &FakeHost| sync_keys(host).len();
    // A page of 2,000: four chunks and their id lists.
    let abandoned_keys = sync_keys(&host);
    assert_eq!(abandoned_keys.len(), 8);
    // Within the hour a new sync leaves it alone (it may still be running).
    host.advance_ms(30 * 60 * 1000);
    let other = step(&net, None);
    assert_eq!(staged(&host), 16);
    host.advance_ms(31 * 60 * 1000);
    let (k, message) = kind(Plugin::new(&net).sync_users(abandoned.cursor.as_deref()));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(message.contains("over an hour ago"), "{message}");
    // The next sync start prunes the abandoned one, not the younger one.
    step(&net, None);
    assert_eq!(staged(&host), 16);
    assert!(sync_keys(&host).iter().all(|k| !abandoned_keys.contains(k)));
    let _ = sync_from(&host, other.cursor);
    // Finishing prunes nothing it should not: the current list stays.
    let current = index(&host).map(|i| i.sync_id).unwrap_or_default();
    assert!(
        host.kv_keys()
            .iter()
            .any(|k| k.starts_with(&format!("{}{current}/", keys::USERS_SYNC_PREFIX)))
    );
    assert_eq!(entries(&host).len(), 5_000);
}

#[test]
fn two_interleaved_syncs_leave_one_list_and_no_leftovers() {
    let (host, _sf) = connected(3_000);
    let net = slow(&host);
    let a = step(&net, None);
    let b = step(&net, None);
    assert_eq!(sync_from(&net, a.cursor.clone()), 3_000);
    let after_a = index(&host);
    assert_eq!(sync_from(&net, b.cursor), 3_000);
    let after_b = index(&host);
    assert_ne!(after_a, after_b);
    // A's cursor is refused now that B replaced A's list.
    let replay = Plugin::new(&host).sync_users(a.cursor.as_deref());
    let (k, _) = kind(replay);
    assert_eq!(k, ErrorKind::InvalidInput);
    assert_eq!(index(&host), after_b);
    let chunks = host
        .kv_keys()
        .into_iter()
        .filter(|k| k.starts_with(keys::USERS_SYNC_PREFIX))
        .count();
    assert_eq!(
        chunks, 9,
        "six chunks and the id map's three shards of the current list"
    );
    assert_eq!(entries(&host).len(), 3_000);
}

#[test]
fn a_deactivated_user_leaves_the_list_and_its_association_turns_stale() {
    let (host, sf) = connected(3);
    directory(&host, &[("1001", None), ("1002", None), ("1003", None)]);
    sync(&host);
    let saved = save(
        &host,
        0,
        &[assoc(0, "1001"), assoc(1, "1002"), assoc(2, "1003")],
    );
    assert_eq!(saved.map_err(|e| e.to_string()), Ok(1));

    // User 1 is deactivated in Salesforce.
    let mut users = org(3);
    users.remove(1);
    sf.set_users(users);
    sync(&host);

    let list = entries(&host);
    assert_eq!(list.len(), 3);
    let stale = entry(&host, &sf_user_id(1));
    let Some(stale) = stale else {
        panic!("the stale user is not shown");
    };
    assert_eq!(stale.state, AssociationState::StaleUser);
    assert_eq!(stale.user.name, "User 00001");
    assert_eq!(stale.user.username, "user1@acme.example.org");
    assert!(!stale.user.active);
    assert_eq!(stale.extension.as_deref(), Some("1002"));
    // Shown after the active users.
    assert_eq!(list[2].user.id, sf_user_id(1));
    // Kept in the store until the administrator saves.
    let set: Option<AssociationSet> = Store::new(&host).get(keys::ASSOCIATIONS).ok().flatten();
    assert_eq!(set.map(|s| s.entries.len()), Some(3));
    // The call features no longer attribute calls to them.
    let plugin = Plugin::new(&host);
    assert!(plugin.user_for_extension("1002").is_ok_and(|u| u.is_none()));
    assert_eq!(plugin.extension_for_user(&sf_user_id(1)).ok(), Some(None));
    assert_eq!(
        plugin.extension_for_user(&sf_user_id(0)).ok(),
        Some(Some("1001".into()))
    );

    // Saving it again is refused, naming them; dropping it works.
    let (k, message) = kind(save(
        &host,
        1,
        &[assoc(0, "1001"), assoc(1, "1002"), assoc(2, "1003")],
    ));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(
        message.contains("User 00001 (005000000000001AAA) is no longer an active Salesforce user"),
        "{message}"
    );
    assert_eq!(
        save(&host, 1, &[assoc(0, "1001"), assoc(2, "1002")]).ok(),
        Some(2)
    );
    assert_eq!(entries(&host).len(), 2);
    assert_eq!(
        plugin
            .user_for_extension("1002")
            .ok()
            .flatten()
            .map(|u| u.id),
        Some(sf_user_id(2))
    );
}

// --- scale -----------------------------------------------------------------------

#[test]
fn fifty_thousand_users_sync_in_chunks_within_the_quota() {
    const N: usize = 50_000;
    let (host, sf) = connected(N);
    let started = std::time::Instant::now();
    let steps = sync(&host);
    let sync_took = started.elapsed();
    // Ten pages per step (the fake answers at once), progress after each.
    assert_eq!(sf.user_pages(), 25);
    let fetched: Vec<u32> = steps.iter().map(|s| s.fetched).collect();
    assert_eq!(fetched, [20_000, 40_000, 50_000]);
    assert!(steps.iter().all(|s| s.total == N as u32));
    assert_eq!(sync_batches(&host).len(), 3);
    let Some(idx) = index(&host) else {
        panic!("no index");
    };
    assert_eq!((idx.pages, idx.count), (100, N as u32));

    let keys = host.kv_keys();
    let dump_bytes: usize = keys
        .iter()
        .map(|k| host.kv_text(k).map_or(0, |v| v.len()))
        .sum();
    let chunk = host.kv_text(&page_key(&idx.sync_id, 0)).unwrap_or_default();
    let shards = idx.id_shards.unwrap_or(0);
    let ids: usize = (0..shards)
        .map(|s| {
            host.kv_text(&crate::users::id_shard_key(&idx.sync_id, s))
                .map_or(0, |v| v.len())
        })
        .sum();
    println!(
        "50,000 users: {} keys, {} bytes in all; a 500-user chunk is {} bytes ({} per user); the id map {} bytes in {shards} shards; sync took {:.2} s ({} build, fake Salesforce)",
        keys.len(),
        dump_bytes,
        chunk.len(),
        chunk.len() / 500,
        ids,
        sync_took.as_secs_f64(),
        BUILD
    );
    // 100 chunks, 50 id-map shards, the index and the plugin's own keys.
    assert!(keys.len() < 170, "{} keys", keys.len());
    assert!(ids < 30 * N, "the id map is {ids} bytes");
    assert!(
        chunk.len() < 16 * 1024 * 1024 / 8,
        "a chunk is {} bytes",
        chunk.len()
    );
    assert!(dump_bytes < 32 * 1024 * 1024, "{dump_bytes} bytes");
    let stored: Result<Vec<UserRecord>, _> = serde_json::from_str(&chunk);
    assert_eq!(stored.map(|c| c.len()).ok(), Some(500));

    let started = std::time::Instant::now();
    let list = entries(&host);
    println!(
        "list_users of 50,000: {:.1} ms ({BUILD} build)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(list.len(), N);
    assert_eq!(list[N - 1].user.name, format!("User {:05}", N - 1));

    // A lookup reads one chunk, not the list.
    directory(&host, &[("4711", None)]);
    assert_eq!(save(&host, 0, &[assoc(43_210, "4711")]).ok(), Some(1));
    let started = std::time::Instant::now();
    let user = Plugin::new(&host).user_for_extension("4711");
    println!(
        "user_for_extension among 50,000: {:.1} ms ({BUILD} build)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(user.ok().flatten().map(|u| u.id), Some(sf_user_id(43_210)));
}
