//! A connected org whose users are synced: the setups and reads the user
//! list's and the associations' tests share.

use std::sync::Arc;

use super::{
    FakeHost, FakeSalesforce, KEY, NOW, SECRET, connect, extension, fake_org, input, sf_user,
    sf_user_id,
};
use crate::bindings::exports::pbx::crm::integration::{
    Association, ConnectionState, SyncProgress, UserEntry,
};
use crate::error::PluginError;
use crate::host::Host;
use crate::plugin::Plugin;
use crate::settings::{CONSUMER_KEY, CONSUMER_SECRET};

/// A host connected to a fake Salesforce with `n` users named
/// "User 00000".. (so Salesforce's order by name is the index order).
pub fn connected(n: usize) -> (FakeHost, Arc<FakeSalesforce>) {
    let (host, sf) = fake_org(NOW);
    let plugin = Plugin::new(&host);
    let saved = plugin.save_settings(&[input(CONSUMER_KEY, KEY), input(CONSUMER_SECRET, SECRET)]);
    assert!(saved.is_ok(), "{:?}", saved.err());
    reconnect(&host, &sf);
    sf.set_users(org(n));
    host.clear_requests();
    (host, sf)
}

/// Authorize again (the fake Salesforce keeps its org).
pub fn reconnect(host: &FakeHost, sf: &FakeSalesforce) {
    let status = connect(host, sf);
    assert_eq!(
        status.map(|s| s.state).map_err(|e| e.to_string()),
        Ok(ConnectionState::Connected)
    );
}

pub fn org(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            sf_user(
                i,
                &format!("User {i:05}"),
                Some(&format!("user{i}@acme.example.org")),
            )
        })
        .collect()
}

pub fn step<H: Host>(host: H, cursor: Option<&str>) -> SyncProgress {
    match Plugin::new(host).sync_users(cursor) {
        Ok(p) => p,
        Err(e) => panic!("sync step failed: {e}"),
    }
}

/// Run a whole sync; returns the progress of every step.
pub fn sync<H: Host + Copy>(host: H) -> Vec<SyncProgress> {
    let mut steps = vec![step(host, None)];
    while let Some(cursor) = steps.last().and_then(|s| s.cursor.clone()) {
        // A fresh instance per step, as the host makes them.
        steps.push(step(host, Some(&cursor)));
        assert!(steps.len() < 1000, "the sync does not end");
    }
    steps
}

pub fn entries(host: &FakeHost) -> Vec<UserEntry> {
    match Plugin::new(host).list_users() {
        Ok(list) => list.entries,
        Err(e) => panic!("list_users failed: {e}"),
    }
}

/// Assert that the list holds `n` users, "User 00000" first and each in
/// its place: a sync kept every page, in Salesforce's order.
pub fn assert_listed_in_order(host: &FakeHost, n: usize) {
    let list = entries(host);
    assert_eq!(list.len(), n);
    assert!(
        list.iter()
            .enumerate()
            .all(|(i, e)| e.user.name == format!("User {i:05}"))
    );
}

pub fn entry(host: &FakeHost, id: &str) -> Option<UserEntry> {
    entries(host).into_iter().find(|e| e.user.id == id)
}

pub fn assoc(user: usize, ext: &str) -> Association {
    Association {
        user_id: sf_user_id(user),
        extension: ext.into(),
    }
}

pub fn save(host: &FakeHost, version: u64, list: &[Association]) -> Result<u64, PluginError> {
    Plugin::new(host).save_associations(version, list)
}

pub fn directory(host: &FakeHost, numbers: &[(&str, Option<&str>)]) {
    host.set_extensions(numbers.iter().map(|(n, e)| extension(n, *e)).collect());
}
