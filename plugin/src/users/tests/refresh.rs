//! The incremental refresh against the fake Salesforce (which answers the
//! changes query by `SystemModstamp`): one request for the changes, each
//! applied where the user is; and the cases that make a sync a full one
//! (another `user-types`, a day since the last full sync, too many
//! changes).

use serde_json::{Value, json};

use super::*;
use crate::plugin::Plugin;
use crate::settings::{USER_TYPES, UserTypes};
use crate::testing::{NOW, input, sf_user, sf_user_id};
use crate::time;
use crate::users::{FULL_SYNC_EVERY_MS, Users, id_shard_key, ids_key, page_key};

const DAY: u64 = 86_400_000;

/// User `i` named `name`, last changed at `at`.
fn stamped(i: usize, name: &str, at: u64) -> Value {
    let mut user = sf_user(i, name, Some(&format!("user{i}@acme.example.org")));
    user["SystemModstamp"] = json!(time::datetime(at));
    user
}

/// An org of `n` users changed a day ago or earlier, synced in full.
fn synced(
    n: usize,
) -> (
    FakeHost,
    std::sync::Arc<crate::testing::FakeSalesforce>,
    Vec<Value>,
) {
    let (host, sf) = connected(0);
    let org: Vec<Value> = (0..n)
        .map(|i| stamped(i, &format!("User {i:05}"), NOW - DAY + i as u64 * 1000))
        .collect();
    sf.set_users(org.clone());
    sync(&host);
    (host, sf, org)
}

fn index(host: &FakeHost) -> UsersIndex {
    match Users::new(host).index() {
        Ok(Some(index)) => index,
        other => panic!("no index: {other:?}"),
    }
}

fn names(host: &FakeHost) -> Vec<String> {
    entries(host).into_iter().map(|e| e.user.name).collect()
}

#[test]
fn a_refresh_reads_the_changes_in_one_request_and_applies_each() {
    let (host, sf, mut org) = synced(2_500);
    let before = index(&host);
    assert_eq!((before.pages, before.count), (5, 2_500));
    assert_eq!(before.user_types, Some(UserTypes::Standard));
    assert_eq!(before.high_water_ms, Some(NOW - DAY + 2_499_000));

    host.advance_ms(60_000);
    let later = NOW + 60_000;
    org[1]["Name"] = json!("Renamed Person");
    org[1]["SystemModstamp"] = json!(time::datetime(later));
    org[2]["IsActive"] = json!(false);
    org[2]["SystemModstamp"] = json!(time::datetime(later));
    org[3]["UserType"] = json!("CsnOnly");
    org[3]["SystemModstamp"] = json!(time::datetime(later));
    org.push(stamped(9_999, "Zed Newcomer", later + 1_000));
    sf.set_users(org.clone());
    host.clear_requests();
    let pages = sf.user_pages();

    let batches = host.batches().len();
    let steps = sync(&host);
    assert_eq!(steps.len(), 1, "one step");
    assert_eq!((steps[0].fetched, steps[0].total), (2_499, 2_499));
    // One batch: the chunks of the changed users (the first) and of the
    // newcomer (a new sixth), and only the id map's shards where users
    // left or came.
    let mut written = host.batches()[batches..].concat();
    written.sort();
    let mut expected = vec![
        page_key(&before.sync_id, 0),
        page_key(&before.sync_id, 5),
        keys::USERS_INDEX.to_string(),
        keys::USERS_LAST_SYNC.to_string(),
    ];
    expected.extend([2, 3, 9_999].map(|i| before.id_map_key(&sf_user_id(i))));
    expected.sort();
    expected.dedup();
    assert_eq!(written, expected);
    assert_eq!(before.id_shards, Some(2));
    assert_eq!(sf.user_pages() - pages, 1, "one query");
    assert_eq!(host.requests().len(), 1, "one request");
    let after = index(&host);
    assert_eq!(after.sync_id, before.sync_id, "the same list, edited");
    // The newcomer opens a sixth chunk: the fifth is full.
    assert_eq!((after.pages, after.count), (6, 2_499));
    assert_eq!(after.high_water_ms, Some(later + 1_000));
    assert_eq!(after.full_at_ms, before.full_at_ms);

    let users = Users::new(&host);
    let found = |i: usize| users.find(&sf_user_id(i)).ok().flatten();
    assert_eq!(found(1).map(|u| u.name), Some("Renamed Person".into()));
    assert!(found(2).is_none(), "deactivated");
    assert!(found(3).is_none(), "Chatter Free");
    assert_eq!(found(9_999).map(|u| u.name), Some("Zed Newcomer".into()));
    // Typed in its 15-character form, the same user.
    assert!(
        users
            .find(&sf_user_id(9_999)[..15])
            .ok()
            .flatten()
            .is_some()
    );
    let listed = names(&host);
    assert_eq!(listed.len(), 2_499);
    assert_eq!(listed[1], "Renamed Person", "in its place");
    assert_eq!(listed.last().map(String::as_str), Some("Zed Newcomer"));

    // Nothing new: the overlap reads the same changes again, harmlessly,
    // and writes no chunk and no id map (only the index and the last sync).
    let batches = host.batches().len();
    let again = sync(&host);
    assert_eq!(again.len(), 1);
    assert_eq!(names(&host), listed);
    assert_eq!(index(&host).count, 2_499);
    let written: Vec<Vec<String>> = host.batches()[batches..].to_vec();
    assert_eq!(
        written,
        vec![vec![
            keys::USERS_INDEX.to_string(),
            keys::USERS_LAST_SYNC.to_string()
        ]],
        "{written:?}"
    );
}

#[test]
fn another_user_types_setting_a_day_or_many_changes_make_a_full_sync() {
    let (host, sf, _org) = synced(300);
    let first = index(&host).sync_id;

    // The setting changed: the next sync reads every user again.
    let saved = Plugin::new(&host).save_settings(&[input(USER_TYPES, "all")]);
    assert!(saved.is_ok(), "{:?}", saved.err());
    host.advance_ms(1_000);
    sync(&host);
    let second = index(&host);
    assert_ne!(second.sync_id, first);
    assert_eq!(second.user_types, Some(UserTypes::All));
    assert!(
        host.logs()
            .iter()
            .any(|l| l.contains("the users to list (user-types) changed")),
        "{:?}",
        host.logs()
    );

    // A refresh now; a day after the full sync, a full one.
    sync(&host);
    assert_eq!(index(&host).sync_id, second.sync_id);
    host.advance_ms(FULL_SYNC_EVERY_MS);
    sync(&host);
    let third = index(&host);
    assert_ne!(third.sync_id, second.sync_id);

    // More changes than a refresh applies.
    host.advance_ms(1_000);
    let later = NOW + FULL_SYNC_EVERY_MS + 10_000;
    let org = (0..2_100)
        .map(|i| stamped(i, &format!("User {i:05}"), later + i as u64))
        .collect();
    sf.set_users(org);
    sync(&host);
    let fourth = index(&host);
    assert_ne!(fourth.sync_id, third.sync_id);
    assert_eq!(fourth.count, 2_100);
}

#[test]
fn users_without_a_modstamp_are_always_synced_in_full() {
    // The fake's default users carry no SystemModstamp: no high-water mark.
    let (host, _sf) = connected(10);
    sync(&host);
    let first = index(&host);
    assert_eq!(first.high_water_ms, None);
    host.advance_ms(1_000);
    sync(&host);
    assert_ne!(index(&host).sync_id, first.sync_id);
}

#[test]
fn a_list_stored_with_one_id_map_is_still_read_and_refreshed() {
    // A list as plugin versions before the sharded map stored it: one map
    // under `ids` and no shard count in the index.
    let (host, sf, mut org) = synced(2_500);
    let sharded = index(&host);
    let store = Store::new(&host);
    let mut map = String::from(",");
    for shard in 0..sharded.id_shards.unwrap_or(0) {
        let key = id_shard_key(&sharded.sync_id, shard);
        let part: Option<String> = store.get(&key).ok().flatten();
        map.push_str(part.as_deref().unwrap_or_default().trim_start_matches(','));
        assert!(store.delete(&key).is_ok());
    }
    let legacy = UsersIndex {
        id_shards: None,
        ..sharded.clone()
    };
    assert!(store.put(&ids_key(&legacy.sync_id), &map).is_ok());
    assert!(store.put(keys::USERS_INDEX, &legacy).is_ok());

    let users = Users::new(&host);
    let found = |i: usize| users.find(&sf_user_id(i)).ok().flatten();
    assert_eq!(found(7).map(|u| u.name), Some("User 00007".into()));

    host.advance_ms(60_000);
    org[7]["IsActive"] = json!(false);
    org[7]["SystemModstamp"] = json!(time::datetime(NOW + 60_000));
    sf.set_users(org);
    let pages = sf.user_pages();
    sync(&host);
    assert_eq!(sf.user_pages() - pages, 1, "a refresh, not a full sync");
    let after = index(&host);
    assert_eq!(
        (after.sync_id.as_str(), after.id_shards),
        (legacy.sync_id.as_str(), None)
    );
    assert_eq!(after.count, 2_499);
    assert!(found(7).is_none(), "deactivated");
    let map: Option<String> = store.get(&ids_key(&legacy.sync_id)).ok().flatten();
    assert!(!map.unwrap_or_default().contains(&sf_user_id(7)));
    assert_eq!(found(8).map(|u| u.name), Some("User 00008".into()));
}
