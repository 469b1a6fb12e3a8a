//! The calls feature end to end against the fake host and the fake
//! Salesforce, one file per part: lookup in every format, the winner, SOSL
//! escaping, the cache and bad numbers (`lookup`); pop-ups (`popup`); the
//! Task's fields, the logging rules and owner, and exactly-once delivery
//! through crashes, outages and races (`journal`); unknown callers
//! (`unknown`); Person Accounts, in orgs with and without them
//! (`person_accounts`); click-to-call (`dial`); after-call work, recording links
//! and the Task fields reports use (`work`). The call settings' own test is here.

mod choice;
mod dial;
mod journal;
mod lookup;
mod outcome;
mod person_accounts;
mod popup;
mod unknown;
mod work;

use std::sync::Arc;

use serde_json::Value;

use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::calls::{CallEvent, Direction, Phase};
use crate::bindings::exports::pbx::crm::integration::Association;
use crate::plugin::Plugin;
use crate::settings::{self, CONSUMER_KEY, CONSUMER_SECRET};
use crate::testing::{
    CALLBACK, FakeHost, FakeSalesforce, KEY, SECRET, extension, fake_org, sf_user, sf_user_id,
};
use crate::testing::{err as kind, input};

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

/// Connected, two users synced, user 0 associated with 1001; extensions
/// 1001, 1002 (nobody's) and 1003 exist.
fn connected() -> (FakeHost, Arc<FakeSalesforce>) {
    let (host, sf) = fake_org(NOON);
    let plugin = Plugin::new(&host);
    let saved = plugin.save_settings(&[input(CONSUMER_KEY, KEY), input(CONSUMER_SECRET, SECRET)]);
    assert!(saved.is_ok(), "{:?}", saved.err());
    let auth = plugin.begin_authorization(CALLBACK);
    let Ok(auth) = auth else {
        panic!("{:?}", auth.err());
    };
    let done = plugin.complete_authorization(CALLBACK, &sf.allow(&auth.url));
    assert!(done.is_ok(), "{:?}", done.err());
    sf.set_users(vec![
        sf_user(0, "Ada Agent", Some("ada@example.org")),
        sf_user(1, "Bob Other", Some("bob@example.org")),
    ]);
    host.set_extensions(vec![
        extension("1001", None),
        extension("1002", None),
        extension("1003", None),
    ]);
    let mut cursor = None;
    loop {
        let step = plugin.sync_users(cursor.as_deref());
        let Ok(step) = step else {
            panic!("{:?}", step.err());
        };
        cursor = step.cursor;
        if cursor.is_none() {
            break;
        }
    }
    let saved = plugin.save_associations(
        0,
        &[Association {
            user_id: sf_user_id(0),
            extension: "1001".into(),
        }],
    );
    assert!(saved.is_ok(), "{:?}", saved.err());
    host.clear_requests();
    (host, sf)
}

fn set(host: &FakeHost, key: &str, value: &str) {
    let saved = Plugin::new(host).save_settings(&[input(key, value)]);
    assert!(saved.is_ok(), "{:?}", saved.err());
}

fn event(call_id: &str, phase: Phase, number: &str, ext: &str) -> CallEvent {
    let answered = phase != Phase::Ringing;
    CallEvent {
        call_id: call_id.into(),
        phase,
        direction: Direction::Inbound,
        external_number: number.into(),
        extension: ext.into(),
        started_at_ms: NOON,
        answered_at_ms: answered.then_some(NOON + 3_000),
        ended_at_ms: (phase == Phase::Ended).then_some(NOON + 128_000),
        disposition: (phase == Phase::Ended).then(|| "answered".to_string()),
        recording_url: None,
        default_region: "US".into(),
        utc_offset_minutes: 0,
    }
}

/// Pages opened for extensions (the consent page went to the administrator).
fn popups(host: &FakeHost) -> Vec<(String, String)> {
    host.opened_for()
        .into_iter()
        .filter(|(_, who)| who != "administrator")
        .collect()
}

fn send(host: &FakeHost, e: &CallEvent) {
    let r = Plugin::new(host).on_call_event(e);
    assert!(r.is_ok(), "{:?}", r.err());
}

fn run_pending(host: &FakeHost) -> u32 {
    match Plugin::new(host).run_pending() {
        Ok(n) => n,
        Err(e) => panic!("run_pending: {e}"),
    }
}

fn lookup(host: &FakeHost, number: &str) -> crate::bindings::exports::pbx::crm::calls::Caller {
    match Plugin::new(host).lookup_caller(number, "US") {
        Ok(c) => c,
        Err(e) => panic!("lookup {number}: {e}"),
    }
}

fn tasks(sf: &FakeSalesforce, call_id: &str) -> Vec<Value> {
    sf.records("Task")
        .into_iter()
        .filter(|t| t["CallObject"] == call_id)
        .collect()
}

#[test]
fn the_call_settings_are_described_stored_and_shown() {
    let info = settings::describe();
    let keys: Vec<&str> = info.settings.iter().map(|f| f.key.as_str()).collect();
    for key in [
        settings::POPUP_ON,
        settings::LOG_INBOUND_ANSWERED,
        settings::LOG_INBOUND_MISSED,
        settings::LOG_OUTBOUND_ANSWERED,
        settings::LOG_OUTBOUND_UNANSWERED,
        settings::LOG_INTERNAL,
        settings::TASK_OWNER,
        settings::UNKNOWN_INBOUND,
        settings::UNKNOWN_OUTBOUND,
    ] {
        let field = info.settings.iter().find(|f| f.key == key);
        assert!(
            field
                .is_some_and(|f| !f.choices.is_empty() && f.default_value.is_some() && !f.required),
            "{key} in {keys:?}"
        );
    }
    let (host, _sf) = connected();
    set(&host, settings::POPUP_ON, "answered");
    let values = Plugin::new(&host).get_settings().ok().unwrap_or_default();
    let popup = values.iter().find(|v| v.key == settings::POPUP_ON);
    assert_eq!(popup.and_then(|v| v.value.as_deref()), Some("answered"));
    let (k, m) = kind(Plugin::new(&host).save_settings(&[input(settings::POPUP_ON, "always")]));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(m.contains("ringing, answered, ended, never"), "{m}");
    assert_eq!(
        Plugin::new(&host).status().state,
        crate::bindings::exports::pbx::crm::integration::ConnectionState::Connected,
        "call settings do not end the connection"
    );
}
