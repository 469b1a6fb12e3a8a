//! The call journal: the Task's fields, the logging rules and owner, and
//! exactly-once delivery through crashes, outages and races.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::calls::{Direction, Phase};
use crate::calls::Calls;
use crate::calls::ledger::outbox_key;
use crate::calls::lookup::CACHE_MS;
use crate::plugin::Plugin;
use crate::settings::{self};
use crate::store::keys;
use crate::testing::{TaskFault, sf_user_id};
use crate::testing::{err as kind, input};

use super::*;

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

const LEASE_WAIT: u64 = crate::lease::LEASE_MS + 1;

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

/// The outbox moved into the SDK; an item stored by the plugin before
/// (these field names and order, a crashed instance's lapsed lease) still
/// loads, is delivered once, and its call id lands in its done bucket.
#[test]
fn an_item_stored_before_the_sdk_outbox_is_delivered_once() {
    let (host, sf) = connected();
    let now = crate::host::Host::now_ms(&host);
    let stored = json!({
        "call": {
            "call_id": "old-1", "direction": "inbound",
            "external_number": "2125550163", "extension": "1001",
            "started_at_ms": now - 60_000, "answered_at_ms": now - 55_000,
            "ended_at_ms": now - 5_000, "disposition": "answered",
            "recording_url": null, "default_region": "US",
            "utc_offset_minutes": 0
        },
        "owner_id": null, "attempts": 1, "next_at_ms": now - 1,
        "queued_at_ms": now - 5_000, "last_error": null,
        "lease": {"holder": "crashed", "until_ms": now - 1},
        "open": false, "work": null
    });
    host.kv_put(&outbox_key("old-1"), &stored.to_string());
    assert_eq!(run_pending(&host), 0);
    assert_eq!(tasks(&sf, "old-1").len(), 1);
    let done = crate::calls::ledger::bucket_key(keys::CALLS_DONE_PREFIX, "old-1");
    assert!(
        host.kv_json(&done)
            .is_some_and(|b| b["entries"].get("old-1").is_some()),
        "{:?}",
        host.kv_text(&done)
    );
    // Its ended event repeated later is known, and logs nothing more.
    send(&host, &event("old-1", Phase::Ended, "2125550163", "1001"));
    assert_eq!(run_pending(&host), 0);
    assert_eq!(tasks(&sf, "old-1").len(), 1);
}
