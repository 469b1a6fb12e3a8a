//! The calls feature against the fake host and the fake Salesforce: lookup
//! in every format, the winner, SOSL escaping, the cache, bad numbers,
//! pop-ups, the Task's fields, the logging rules and owner, unknown callers,
//! exactly-once delivery through crashes, outages and races, click-to-call.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::bindings::exports::pbx::crm::calls::{CallEvent, Direction, Phase};
use crate::bindings::exports::pbx::crm::integration::{Association, SettingInput};
use crate::bindings::{ErrorKind, WitError};
use crate::calls::Calls;
use crate::calls::ledger::outbox_key;
use crate::calls::lookup::CACHE_MS;
use crate::error::PluginError;
use crate::plugin::Plugin;
use crate::settings::{self, CONSUMER_KEY, CONSUMER_SECRET};
use crate::store::keys;
use crate::testing::{
    CALLBACK, FakeHost, FakeSalesforce, INSTANCE, KEY, SECRET, TaskFault, extension, sf_user,
    sf_user_id,
};

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

fn input(key: &str, value: &str) -> SettingInput {
    SettingInput {
        key: key.into(),
        value: Some(value.into()),
    }
}

/// Connected, two users synced, user 0 associated with 1001; extensions
/// 1001, 1002 (nobody's) and 1003 exist.
fn connected() -> (FakeHost, Arc<FakeSalesforce>) {
    let host = FakeHost::default();
    host.set_now_ms(NOON);
    let sf = FakeSalesforce::new();
    sf.serve(&host);
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

fn kind<T>(r: Result<T, PluginError>) -> (ErrorKind, String) {
    match r {
        Ok(_) => (ErrorKind::Internal, "unexpectedly succeeded".into()),
        Err(e) => {
            let w = WitError::from(e);
            (w.kind, w.message)
        }
    }
}

const FORMATS: [&str; 6] = [
    "(415) 555-0100",
    "+1 415-555-0100",
    "415.555.0100",
    "4155550100",
    "+14155550100",
    "1 (415) 555 0100",
];

// --- lookup --------------------------------------------------------------

#[test]
fn one_number_stored_in_six_formats_is_found_from_each() {
    let (host, sf) = connected();
    let ids: Vec<String> = FORMATS
        .iter()
        .enumerate()
        .map(|(i, phone)| {
            sf.add_record(
                "Contact",
                json!({"LastName": format!("Format{i}"), "Phone": phone,
                       "LastModifiedDate": format!("2025-01-0{}T10:00:00.000+0000", i + 1)}),
            )
        })
        .collect();
    for query in FORMATS {
        // Past the cache, so each query searches.
        host.advance_ms(CACHE_MS + 1);
        let caller = lookup(&host, query);
        assert_eq!(caller.number, "+14155550100", "{query}");
        let best = caller.best.as_ref().map(|b| b.id.clone());
        assert_eq!(
            best.as_deref(),
            Some(ids[5].as_str()),
            "newest wins: {query}"
        );
        assert_eq!(caller.best.map(|b| b.name).as_deref(), Some("Format5"));
        let mut found: Vec<String> = caller.others.iter().map(|r| r.id.clone()).collect();
        found.extend(best);
        found.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(found, want, "{query} finds all six");
    }
}

#[test]
fn the_winner_is_a_contact_then_a_lead_then_an_account_newest_first() {
    let (host, sf) = connected();
    let at = |d: u32| format!("2025-03-{d:02}T08:00:00.000+0000");
    let account = sf.add_record(
        "Account",
        json!({"Name": "Shared Line Inc", "Phone": "+1 (646) 555-0190", "LastModifiedDate": at(9)}),
    );
    let old_lead = sf.add_record(
        "Lead",
        json!({"LastName": "Old", "Company": "L", "Phone": "646.555.0190", "LastModifiedDate": at(2)}),
    );
    let new_lead = sf.add_record(
        "Lead",
        json!({"LastName": "New", "Company": "N", "Phone": "+16465550190", "LastModifiedDate": at(8)}),
    );
    let _converted = sf.add_record(
        "Lead",
        json!({"LastName": "Converted", "Company": "C", "Phone": "6465550190", "IsConverted": true, "LastModifiedDate": at(9)}),
    );
    let old_contact = sf.add_record(
        "Contact",
        json!({"LastName": "Older", "Phone": "6465550190", "LastModifiedDate": at(1)}),
    );
    let contact = sf.add_record(
        "Contact",
        json!({"FirstName": "Ann", "LastName": "Newer", "MobilePhone": "646 555 0190", "LastModifiedDate": at(3)}),
    );
    let caller = lookup(&host, "646-555-0190");
    let best = caller
        .best
        .clone()
        .map(|b| (b.object_type, b.id, b.name, b.url));
    assert_eq!(
        best,
        Some((
            "Contact".to_string(),
            contact.clone(),
            "Ann Newer".to_string(),
            format!("{INSTANCE}/lightning/r/Contact/{contact}/view")
        ))
    );
    let others: Vec<(String, String)> = caller
        .others
        .iter()
        .map(|r| (r.object_type.clone(), r.id.clone()))
        .collect();
    assert_eq!(
        others,
        vec![
            ("Contact".to_string(), old_contact),
            ("Lead".to_string(), new_lead),
            ("Lead".to_string(), old_lead),
            ("Account".to_string(), account.clone()),
        ],
        "converted Leads are left out"
    );
    assert_eq!(
        caller.others[3].url,
        format!("{INSTANCE}/lightning/r/Account/{account}/view")
    );
}

#[test]
fn sosl_reserved_characters_are_escaped_in_the_search() {
    let (host, sf) = connected();
    let caller = lookup(&host, "+1 (415) 555-0100");
    assert_eq!(caller.number, "+14155550100");
    let searches = sf.searches();
    assert_eq!(
        searches.first().map(String::as_str),
        Some(
            r"FIND {\+14155550100} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, MobilePhone, OtherPhone, AccountId, LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT 20), Lead(Id, Name, Phone, MobilePhone, LastModifiedDate WHERE IsConverted = false ORDER BY LastModifiedDate DESC LIMIT 20), Account(Id, Name, Phone, LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT 20)"
        )
    );
    // Nothing matched the E.164 form: the national number is tried too.
    assert_eq!(searches.len(), 2, "{searches:?}");
    assert!(searches[1].starts_with("FIND {4155550100} IN PHONE FIELDS"));
    // On the wire: percent-encoded, spaces as %20, the backslash and plus encoded.
    let url = host.requests()[0].url.clone();
    assert!(
        url.starts_with(&format!(
            "{INSTANCE}/services/data/v67.0/search/?q=FIND%20%7B%5C%2B14155550100%7D%20IN%20PHONE%20FIELDS"
        )),
        "{url}"
    );
}

#[test]
fn answers_are_cached_for_a_minute() {
    let (host, sf) = connected();
    let id = sf.add_record(
        "Contact",
        json!({"LastName": "Cached", "Phone": "4155550100"}),
    );
    assert_eq!(
        lookup(&host, "4155550100").best.map(|b| b.id),
        Some(id.clone())
    );
    assert_eq!(sf.searches().len(), 1);
    host.advance_ms(CACHE_MS - 1_000);
    assert_eq!(
        lookup(&host, "(415) 555-0100").best.map(|b| b.id),
        Some(id.clone())
    );
    assert_eq!(sf.searches().len(), 1, "the cache answered");
    assert!(host.kv_text("calls/lookup/+14155550100").is_some());
    host.advance_ms(2_000);
    assert_eq!(lookup(&host, "+14155550100").best.map(|b| b.id), Some(id));
    assert_eq!(sf.searches().len(), 2, "expired: searched again");
}

#[test]
fn bad_numbers_give_no_match_and_the_number_as_given_without_panicking() {
    let (host, sf) = connected();
    let long = "1".repeat(10_000);
    for bad in [
        "",
        "   ",
        "+",
        "anonymous",
        "1-800-FLOWERS",
        "12345678901234567890",
        &long,
        "41+55",
        "☎",
        "911",
        "+999 1234",
    ] {
        let caller = lookup(&host, bad);
        assert_eq!(caller.number, bad);
        assert!(caller.best.is_none() && caller.others.is_empty(), "{bad}");
    }
    assert!(sf.searches().is_empty(), "nothing is sent for bad numbers");
    assert!(
        host.logs().iter().any(|l| l.contains("contains letters")),
        "the reason is logged"
    );
    // A call from a bad number is still logged, without a name.
    send(&host, &event("bad-1", Phase::Ended, "anonymous", "1001"));
    let t = tasks(&sf, "bad-1");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["Subject"], "Inbound call from anonymous");
    assert!(t[0].get("WhoId").is_none());
    assert!(
        sf.records("Contact").is_empty(),
        "no Contact for a bad number"
    );
}

// --- pop-up --------------------------------------------------------------

#[test]
fn the_record_pops_up_once_for_the_associated_extension_only() {
    let (host, sf) = connected();
    let id = sf.add_record(
        "Contact",
        json!({"LastName": "Popup", "Phone": "+1 (212) 555-0170"}),
    );
    let url = format!("{INSTANCE}/lightning/r/Contact/{id}/view");
    send(
        &host,
        &event("pop-1", Phase::Ringing, "212-555-0170", "1001"),
    );
    send(
        &host,
        &event("pop-1", Phase::Ringing, "212-555-0170", "1001"),
    );
    send(
        &host,
        &event("pop-1", Phase::Answered, "212-555-0170", "1001"),
    );
    assert_eq!(popups(&host), vec![(url.clone(), "1001".to_string())]);
    // 1002 has no associated user: nothing.
    send(
        &host,
        &event("pop-2", Phase::Ringing, "212-555-0170", "1002"),
    );
    assert_eq!(popups(&host).len(), 1);
    // Unknown numbers pop nothing up.
    send(
        &host,
        &event("pop-3", Phase::Ringing, "212-555-0999", "1001"),
    );
    assert_eq!(popups(&host).len(), 1);

    set(&host, settings::POPUP_ON, "answered");
    send(
        &host,
        &event("pop-4", Phase::Ringing, "212-555-0170", "1001"),
    );
    assert_eq!(popups(&host).len(), 1, "not on ringing any more");
    send(
        &host,
        &event("pop-4", Phase::Answered, "212-555-0170", "1001"),
    );
    send(
        &host,
        &event("pop-4", Phase::Answered, "212-555-0170", "1001"),
    );
    assert_eq!(popups(&host).len(), 2);

    set(&host, settings::POPUP_ON, "ended");
    send(&host, &event("pop-5", Phase::Ended, "212-555-0170", "1001"));
    send(&host, &event("pop-5", Phase::Ended, "212-555-0170", "1001"));
    assert_eq!(popups(&host).len(), 3);

    set(&host, settings::POPUP_ON, "never");
    for phase in [Phase::Ringing, Phase::Answered, Phase::Ended] {
        send(&host, &event("pop-6", phase, "212-555-0170", "1001"));
    }
    assert_eq!(popups(&host).len(), 3);
    assert!(popups(&host).iter().all(|(_, who)| who == "1001"));
}

#[test]
fn a_late_ringing_after_the_end_pops_nothing_up() {
    let (host, sf) = connected();
    sf.add_record(
        "Contact",
        json!({"LastName": "Late", "Phone": "2125550171"}),
    );
    send(&host, &event("late-1", Phase::Ended, "2125550171", "1001"));
    send(
        &host,
        &event("late-1", Phase::Ringing, "2125550171", "1001"),
    );
    assert!(popups(&host).is_empty());
}

// --- the Task --------------------------------------------------------------

#[test]
fn an_ended_call_is_one_task_with_every_field() {
    let (host, sf) = connected();
    let account = sf.add_record(
        "Account",
        json!({"Name": "Globex", "Phone": "+1 (415) 555-0100"}),
    );
    let contact = sf.add_record(
        "Contact",
        json!({"FirstName": "Homer", "LastName": "Simpson", "Phone": "(415) 555-0100", "AccountId": account}),
    );
    let mut e = event("task-1", Phase::Ended, "415-555-0100", "1001");
    e.recording_url = Some("https://pbx.example.com/recordings/task-1.wav".into());
    send(&host, &e);
    let all = tasks(&sf, "task-1");
    assert_eq!(all.len(), 1);
    let t = &all[0];
    assert_eq!(t["Subject"], "Inbound call from +1 415 555 0100");
    assert_eq!(t["TaskSubtype"], "Call");
    assert_eq!(t["CallType"], "Inbound");
    assert_eq!(t["CallDurationInSeconds"], 125, "answered to ended");
    assert_eq!(t["CallDisposition"], "answered");
    assert_eq!(t["CallObject"], "task-1");
    assert_eq!(t["WhoId"], contact.as_str());
    assert_eq!(t["WhatId"], account.as_str(), "the Contact's Account");
    assert_eq!(t["OwnerId"], sf_user_id(0).as_str());
    assert_eq!(t["ActivityDate"], "2026-01-15");
    assert_eq!(t["Status"], "Completed");
    let d = t["Description"].as_str().unwrap_or_default();
    for part in [
        "https://pbx.example.com/recordings/task-1.wav",
        "+14155550100",
        "extension 1001",
        "2 min 5 s",
        "Disposition: answered",
    ] {
        assert!(d.contains(part), "{part} in {d}");
    }
    assert_eq!(run_pending(&host), 0);
    assert!(
        host.kv_keys()
            .iter()
            .all(|k| !k.starts_with("calls/outbox/"))
    );
    assert!(Plugin::new(&host).status().problem.is_none());

    // An Account alone is the WhatId; a Lead the WhoId.
    let acct = sf.add_record(
        "Account",
        json!({"Name": "Solo", "Phone": "+1 212 555 0111"}),
    );
    let lead = sf.add_record(
        "Lead",
        json!({"LastName": "L", "Company": "C", "Phone": "2125550112"}),
    );
    let mut out = event("task-2", Phase::Ended, "2125550111", "1001");
    out.direction = Direction::Outbound;
    out.answered_at_ms = None;
    out.disposition = Some("no-answer".into());
    send(&host, &out);
    send(&host, &event("task-3", Phase::Ended, "2125550112", "1001"));
    let t2 = &tasks(&sf, "task-2")[0];
    assert_eq!(t2["WhatId"], acct.as_str());
    assert!(t2.get("WhoId").is_none());
    assert_eq!(t2["CallType"], "Outbound");
    assert_eq!(t2["CallDurationInSeconds"], 0, "unanswered");
    assert_eq!(t2["CallDisposition"], "no-answer");
    assert_eq!(t2["Subject"], "Unanswered outbound call to +1 212 555 0111");
    let t3 = &tasks(&sf, "task-3")[0];
    assert_eq!(t3["WhoId"], lead.as_str());
    assert!(t3.get("WhatId").is_none());
}

#[test]
fn each_call_type_is_logged_or_skipped_by_its_rule() {
    let (host, sf) = connected();
    sf.add_record(
        "Contact",
        json!({"LastName": "Known", "Phone": "2125550150"}),
    );
    let call = |id: &str, direction: Direction, answered: bool| {
        let mut e = event(id, Phase::Ended, "2125550150", "1001");
        e.direction = direction;
        if !answered {
            e.answered_at_ms = None;
        }
        send(&host, &e);
        tasks(&sf, id).len()
    };
    // Defaults: everything but internal calls.
    assert_eq!(call("d-in", Direction::Inbound, true), 1);
    assert_eq!(call("d-missed", Direction::Inbound, false), 1);
    assert_eq!(call("d-out", Direction::Outbound, true), 1);
    assert_eq!(call("d-unans", Direction::Outbound, false), 1);
    assert_eq!(call("d-int", Direction::Internal, true), 0);
    assert_eq!(
        tasks(&sf, "d-missed")[0]["Subject"],
        "Missed inbound call from +1 212 555 0150"
    );

    for key in [
        settings::LOG_INBOUND_ANSWERED,
        settings::LOG_INBOUND_MISSED,
        settings::LOG_OUTBOUND_ANSWERED,
        settings::LOG_OUTBOUND_UNANSWERED,
    ] {
        set(&host, key, "skip");
    }
    set(&host, settings::LOG_INTERNAL, "log");
    assert_eq!(call("s-in", Direction::Inbound, true), 0);
    assert_eq!(call("s-missed", Direction::Inbound, false), 0);
    assert_eq!(call("s-out", Direction::Outbound, true), 0);
    assert_eq!(call("s-unans", Direction::Outbound, false), 0);
    assert_eq!(call("s-int", Direction::Internal, true), 1);
    let t = &tasks(&sf, "s-int")[0];
    assert_eq!(t["CallType"], "Internal");
    assert!(t.get("WhoId").is_none(), "no lookup for internal calls");
    assert_eq!(run_pending(&host), 0, "skipped calls wait for nothing");
    // A skipped call stays skipped when its rule changes later.
    set(&host, settings::LOG_INBOUND_ANSWERED, "log");
    assert_eq!(call("s-in", Direction::Inbound, true), 0);
}

#[test]
fn the_owner_setting_decides_who_owns_the_task() {
    let (host, sf) = connected();
    sf.add_record(
        "Contact",
        json!({"LastName": "Owned", "Phone": "2125550151"}),
    );
    let owner = |id: &str, ext: &str| {
        send(&host, &event(id, Phase::Ended, "2125550151", ext));
        tasks(&sf, id).first().map(|t| t["OwnerId"].clone())
    };
    // Default: the associated user, else the connected user (no OwnerId).
    assert_eq!(owner("o-1", "1001"), Some(json!(sf_user_id(0))));
    assert_eq!(owner("o-2", "1002"), Some(Value::Null));
    set(&host, settings::TASK_OWNER, "connected");
    assert_eq!(owner("o-3", "1001"), Some(Value::Null));
    set(&host, settings::TASK_OWNER, "associated-only");
    assert_eq!(owner("o-4", "1001"), Some(json!(sf_user_id(0))));
    assert_eq!(owner("o-5", "1002"), None, "not logged");
    // Salesforce refuses the owner (deactivated since the last sync): the
    // call is logged for the connected user instead of waiting forever.
    sf.script_rest(&[
        (200, r#"{"searchRecords":[]}"#),
        (200, r#"{"searchRecords":[]}"#),
        (400, r#"[{"message":"operation performed with inactive user","errorCode":"INACTIVE_OWNER_OR_USER","fields":["OwnerId"]}]"#),
    ]);
    set(&host, settings::UNKNOWN_INBOUND, "nothing");
    host.advance_ms(CACHE_MS);
    assert_eq!(owner("o-6", "1001"), Some(Value::Null));
    assert!(
        host.logs()
            .iter()
            .any(|l| l.contains("refused the Task's owner"))
    );
    assert!(
        kind(Plugin::new(&host).save_settings(&[input(settings::TASK_OWNER, "boss")]))
            .1
            .contains("associated-only")
    );
}

// --- unknown callers -----------------------------------------------------

#[test]
fn an_unknown_caller_becomes_one_contact_even_twice_within_the_search_lag() {
    let (host, sf) = connected();
    sf.set_search_lag(true);
    send(
        &host,
        &event("new-1", Phase::Ended, "+1 (303) 555-0177", "1001"),
    );
    host.advance_ms(120_000);
    send(&host, &event("new-2", Phase::Ended, "303.555.0177", "1001"));
    let contacts = sf.records("Contact");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    let c = &contacts[0];
    assert_eq!(c["LastName"], "Caller +1 303 555 0177");
    assert_eq!(c["Phone"], "+13035550177");
    assert_eq!(c["OwnerId"], sf_user_id(0).as_str());
    for call in ["new-1", "new-2"] {
        let t = tasks(&sf, call);
        assert_eq!(t.len(), 1, "{call}");
        assert_eq!(t[0]["WhoId"], c["Id"], "{call}");
    }
    // The lookup knows it too, before Salesforce's index does.
    host.advance_ms(CACHE_MS);
    assert_eq!(
        lookup(&host, "3035550177").best.map(|b| b.id),
        c["Id"].as_str().map(str::to_string)
    );
}

#[test]
fn unknown_callers_become_leads_or_nothing_per_direction() {
    let (host, sf) = connected();
    set(&host, settings::UNKNOWN_INBOUND, "lead");
    send(
        &host,
        &event("lead-1", Phase::Ended, "+1 303 555 0178", "1001"),
    );
    let leads = sf.records("Lead");
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["LastName"], "Caller +1 303 555 0178");
    assert_eq!(leads[0]["Company"], "Unknown");
    assert_eq!(tasks(&sf, "lead-1")[0]["WhoId"], leads[0]["Id"]);
    // Outbound default: nothing is created, the Task has no name.
    let mut out = event("out-1", Phase::Ended, "+1 303 555 0179", "1001");
    out.direction = Direction::Outbound;
    send(&host, &out);
    assert_eq!(sf.records("Lead").len() + sf.records("Contact").len(), 1);
    assert!(tasks(&sf, "out-1")[0].get("WhoId").is_none());
    set(&host, settings::UNKNOWN_OUTBOUND, "contact");
    out.call_id = "out-2".into();
    send(&host, &out);
    assert_eq!(sf.records("Contact").len(), 1);
}

// --- exactly once ----------------------------------------------------------

#[test]
fn repeated_and_out_of_order_events_log_one_task() {
    let (host, sf) = connected();
    sf.add_record("Contact", json!({"LastName": "Dup", "Phone": "2125550161"}));
    for phase in [
        Phase::Ended,
        Phase::Ringing,
        Phase::Answered,
        Phase::Ended,
        Phase::Answered,
        Phase::Ringing,
        Phase::Ended,
    ] {
        send(&host, &event("dup-1", phase, "+1 212 555 0161", "1001"));
    }
    assert_eq!(tasks(&sf, "dup-1").len(), 1);
    assert!(
        popups(&host).is_empty(),
        "ringing after the end pops nothing up"
    );
    host.advance_ms(3_600_000);
    assert_eq!(run_pending(&host), 0);
    send(
        &host,
        &event("dup-1", Phase::Ended, "+1 212 555 0161", "1001"),
    );
    assert_eq!(tasks(&sf, "dup-1").len(), 1);
}

#[test]
fn a_create_whose_answer_is_lost_is_found_by_its_call_object() {
    for fault in [TaskFault::StoredThen500, TaskFault::StoredThenTimeout] {
        let (host, sf) = connected();
        sf.add_record(
            "Contact",
            json!({"LastName": "Crash", "Phone": "2125550162"}),
        );
        sf.fail_task_creates(&[fault]);
        send(&host, &event("crash-1", Phase::Ended, "2125550162", "1001"));
        assert_eq!(tasks(&sf, "crash-1").len(), 1, "{fault:?}: stored");
        assert_eq!(Calls::new(&host).pending(), 1, "{fault:?}");
        let problem = Plugin::new(&host).status().problem.unwrap_or_default();
        assert!(
            problem.contains("1 call log waiting for Salesforce"),
            "{problem}"
        );
        // Too early: nothing is sent.
        host.clear_requests();
        assert_eq!(run_pending(&host), 1);
        assert!(host.requests().is_empty(), "{fault:?}: back-off respected");
        host.advance_ms(6_000);
        assert_eq!(run_pending(&host), 0, "{fault:?}");
        assert_eq!(
            tasks(&sf, "crash-1").len(),
            1,
            "{fault:?}: not created twice"
        );
        assert!(
            sf.queries()
                .iter()
                .any(|q| q == "SELECT Id FROM Task WHERE CallObject = 'crash-1' LIMIT 1"),
            "{:?}",
            sf.queries()
        );
        assert!(Plugin::new(&host).status().problem.is_none());
    }
}

#[test]
fn a_host_crash_after_the_outbox_write_is_delivered_once_by_run_pending() {
    let (host, sf) = connected();
    // The instance dies right after taking the lease (before any create):
    // simulate by an item with one attempt and a lease that lapsed.
    let mut e = event("kill-'1", Phase::Ended, "2125550163", "1001");
    sf.fail_task_creates(&[TaskFault::StoredThenTimeout]);
    send(&host, &e);
    assert_eq!(tasks(&sf, "kill-'1").len(), 1);
    // The host restarts and repeats the event: nothing new.
    e.disposition = Some("answered".into());
    send(&host, &e);
    host.advance_ms(LEASE_WAIT);
    assert_eq!(run_pending(&host), 0);
    assert_eq!(tasks(&sf, "kill-'1").len(), 1);
    assert!(
        sf.queries()
            .iter()
            .any(|q| q.contains(r"CallObject = 'kill-\'1'")),
        "quotes are escaped: {:?}",
        sf.queries()
    );
}

const LEASE_WAIT: u64 = crate::calls::LEASE_MS + 1;

#[test]
fn an_outage_loses_nothing_and_backs_off() {
    let (host, sf) = connected();
    sf.add_record(
        "Contact",
        json!({"LastName": "Down", "Phone": "2125550164"}),
    );
    sf.script_rest(&[(
        503,
        r#"[{"message":"down","errorCode":"SERVER_UNAVAILABLE"}]"#,
    )]);
    for i in 0..4 {
        send(
            &host,
            &event(&format!("out-{i}"), Phase::Ended, "2125550164", "1001"),
        );
    }
    assert!(sf.records("Task").is_empty());
    assert_eq!(Calls::new(&host).pending(), 4);
    let problem = Plugin::new(&host).status().problem.unwrap_or_default();
    assert!(
        problem.contains("4 call logs waiting for Salesforce"),
        "{problem}"
    );
    // One request reached Salesforce; the others failed fast.
    assert_eq!(host.requests().len(), 1);
    host.clear_requests();
    for _ in 0..10 {
        assert_eq!(run_pending(&host), 4);
    }
    assert!(
        host.requests().is_empty(),
        "no tight loop during the back-off"
    );
    host.advance_ms(5_001);
    assert_eq!(run_pending(&host), 0);
    for i in 0..4 {
        assert_eq!(tasks(&sf, &format!("out-{i}")).len(), 1);
    }
    assert!(Plugin::new(&host).status().problem.is_none());
    assert!(
        host.kv_text(keys::CALLS_PENDING).is_none(),
        "no shared counter"
    );
    assert_eq!(Calls::new(&host).pending(), 0);
}

#[test]
fn a_rate_limit_keeps_the_logs_until_salesforce_accepts_again() {
    let (host, sf) = connected();
    sf.fail_task_creates(&[TaskFault::Unavailable]);
    sf.script_rest(&[]);
    set(&host, settings::UNKNOWN_INBOUND, "nothing");
    sf.script_rest(&[
        (200, r#"{"searchRecords":[]}"#),
        (200, r#"{"searchRecords":[]}"#),
        (
            403,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        ),
    ]);
    send(&host, &event("rl-1", Phase::Ended, "2125550165", "1001"));
    assert_eq!(Calls::new(&host).pending(), 1);
    assert_eq!(
        kind(Plugin::new(&host).lookup_caller("2125550166", "US")).0,
        ErrorKind::RateLimited
    );
    host.advance_ms(5_001);
    // The scripted 503 of the Task create: still pending, backing off more.
    assert_eq!(run_pending(&host), 1);
    host.advance_ms(5_001);
    assert_eq!(run_pending(&host), 1, "the back-off doubled");
    host.advance_ms(10_000);
    assert_eq!(run_pending(&host), 0);
    assert_eq!(tasks(&sf, "rl-1").len(), 1);
}

#[test]
fn concurrent_run_pending_calls_create_one_task() {
    let (host, sf) = connected();
    sf.add_record(
        "Contact",
        json!({"LastName": "Race", "Phone": "2125550167"}),
    );
    sf.script_rest(&[(
        503,
        r#"[{"message":"down","errorCode":"SERVER_UNAVAILABLE"}]"#,
    )]);
    send(&host, &event("race-1", Phase::Ended, "2125550167", "1001"));
    assert_eq!(Calls::new(&host).pending(), 1);
    host.advance_ms(6_000);
    sf.set_rest_delay_ms(50);
    host.use_real_sleep();
    let host = Arc::new(host);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let host = Arc::clone(&host);
            std::thread::spawn(move || Plugin::new(&*host).run_pending().ok())
        })
        .collect();
    let results: Vec<Option<u32>> = threads
        .into_iter()
        .map(|t| t.join().ok().flatten())
        .collect();
    assert!(results.iter().all(Option::is_some), "{results:?}");
    assert_eq!(tasks(&sf, "race-1").len(), 1);
    assert_eq!(run_pending(&host), 0);
    assert_eq!(tasks(&sf, "race-1").len(), 1);
}

#[test]
fn a_call_id_is_checked() {
    let (host, _sf) = connected();
    let r = Plugin::new(&host).on_call_event(&event("", Phase::Ended, "2125550168", "1001"));
    assert_eq!(kind(r).0, ErrorKind::InvalidInput);
    let long = "x".repeat(256);
    let r = Plugin::new(&host).on_call_event(&event(&long, Phase::Ended, "2125550168", "1001"));
    assert_eq!(kind(r).0, ErrorKind::InvalidInput);
    // Odd characters are fine: the key is escaped.
    send(&host, &event("a/b%c", Phase::Ringing, "2125550168", "1001"));
    assert_eq!(outbox_key("a/b%c"), "calls/outbox/a%2Fb%25c");
}

// --- click-to-call ----------------------------------------------------------

#[test]
fn click_to_call_needs_an_associated_extension_and_a_real_number() {
    let (host, _sf) = connected();
    let plugin = Plugin::new(&host);
    assert_eq!(
        plugin
            .authorize_dial("1001", "(415) 555-0100", "US")
            .ok()
            .as_deref(),
        Some("+14155550100")
    );
    assert_eq!(
        plugin
            .authorize_dial(" 1001 ", "+44 20 7946 0958", "US")
            .ok()
            .as_deref(),
        Some("+442079460958")
    );
    let (k, m) = kind(plugin.authorize_dial("1002", "(415) 555-0100", "US"));
    assert_eq!(k, ErrorKind::NotConfigured);
    assert!(
        m.contains("associate extension 1002 with a Salesforce user first"),
        "{m}"
    );
    let (k, m) = kind(plugin.authorize_dial("1999", "(415) 555-0100", "US"));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(m.contains("1999"), "{m}");
    for (bad, why) in [
        ("call mom", "letters"),
        ("", "empty"),
        ("+", "no digits"),
        ("1234567890123456789", "too long"),
        ("415+555", "\"+\""),
    ] {
        let (k, m) = kind(plugin.authorize_dial("1001", bad, "US"));
        assert_eq!(k, ErrorKind::InvalidInput, "{bad}");
        assert!(m.contains(why), "{bad}: {m}");
    }
    assert!(host.requests().is_empty(), "no Salesforce call needed");
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
