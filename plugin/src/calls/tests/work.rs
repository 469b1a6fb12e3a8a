//! Call logs reports can use: `Type`, the PBX's day as `ActivityDate`, open
//! or completed or no Task per call type (voicemail its own), the open Case
//! as `WhatId`, and after-call work and recording links updating the one
//! Task of a call whenever they arrive.

use serde_json::json;

use crate::bindings::exports::pbx::crm::calls::{AfterCallWork, EventAction, Phase};
use crate::plugin::Plugin;
use crate::settings;

use super::*;

fn work(call_id: &str, notes: Option<&str>, disposition: Option<&str>) -> AfterCallWork {
    AfterCallWork {
        call_id: call_id.into(),
        extension: "1001".into(),
        notes: notes.map(str::to_string),
        disposition: disposition.map(str::to_string),
    }
}

fn save(host: &FakeHost, w: &AfterCallWork) -> EventAction {
    match Plugin::new(host).save_after_call_work(w) {
        Ok(outcomes) => outcomes[0].action,
        Err(e) => panic!("save_after_call_work: {e}"),
    }
}

#[test]
fn tasks_have_type_call_and_the_pbx_day() {
    let (host, sf) = connected();
    // 20:30 in San Francisco (UTC-8) on the 15th is 04:30 UTC on the 16th.
    let mut e = event("sf-evening", Phase::Ended, "415-555-0100", "1001");
    e.started_at_ms = NOON + 16 * 3_600_000 + 30 * 60_000;
    e.answered_at_ms = Some(e.started_at_ms + 1_000);
    e.ended_at_ms = Some(e.started_at_ms + 61_000);
    e.utc_offset_minutes = -480;
    send(&host, &e);
    let t = &tasks(&sf, "sf-evening")[0];
    assert_eq!(t["Type"], "Call");
    assert_eq!(t["TaskSubtype"], "Call");
    assert_eq!(
        t["ActivityDate"], "2026-01-15",
        "the PBX's day, not UTC's 16th"
    );
}

#[test]
fn each_call_type_is_logged_completed_open_or_not_at_all() {
    let (host, sf) = connected();
    set(&host, settings::LOG_INBOUND_MISSED, "open");
    set(&host, settings::LOG_VOICEMAIL, "skip");
    // "log", as stored and sent before Open existed, is Completed.
    set(&host, settings::LOG_INBOUND_ANSWERED, "log");

    send(
        &host,
        &event("answered", Phase::Ended, "4155550100", "1001"),
    );
    assert_eq!(tasks(&sf, "answered")[0]["Status"], "Completed");

    let mut missed = event("missed", Phase::Ended, "4155550100", "1001");
    missed.answered_at_ms = None;
    missed.disposition = Some("no-answer".into());
    send(&host, &missed);
    assert_eq!(tasks(&sf, "missed")[0]["Status"], "Not Started");

    let mut voicemail = missed.clone();
    voicemail.call_id = "voicemail".into();
    voicemail.disposition = Some("voicemail".into());
    let out = Plugin::new(&host).on_call_event(&voicemail);
    let Ok(out) = out else {
        panic!("{:?}", out.err());
    };
    assert!(tasks(&sf, "voicemail").is_empty());
    assert!(
        out.iter().any(|o| o.detail.contains("voicemail")),
        "{out:?}"
    );

    set(&host, settings::LOG_VOICEMAIL, "open");
    voicemail.call_id = "voicemail-2".into();
    send(&host, &voicemail);
    assert_eq!(tasks(&sf, "voicemail-2")[0]["Status"], "Not Started");
}

#[test]
fn after_call_work_updates_the_one_task_whenever_it_arrives() {
    let (host, sf) = connected();
    // Before the call ends: kept, then the Task is created with it.
    assert_eq!(
        save(&host, &work("early", Some("Wants a quote"), Some("Sale"))),
        EventAction::Queued
    );
    assert!(tasks(&sf, "early").is_empty());
    send(&host, &event("early", Phase::Ended, "4155550100", "1001"));
    let all = tasks(&sf, "early");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["CallDisposition"], "Sale");
    let d = all[0]["Description"].as_str().unwrap_or_default();
    assert!(d.ends_with("\n\nAgent notes:\nWants a quote"), "{d}");
    assert!(host.kv_keys().iter().all(|k| !k.starts_with("calls/work/")));

    // After the Task exists: the same Task is updated, also when repeated.
    send(&host, &event("late", Phase::Ended, "4155550100", "1001"));
    for _ in 0..2 {
        assert_eq!(
            save(
                &host,
                &work("late", Some("Called back"), Some("Left message"))
            ),
            EventAction::Updated
        );
    }
    let all = tasks(&sf, "late");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["CallDisposition"], "Left message");
    let d = all[0]["Description"].as_str().unwrap_or_default();
    assert_eq!(d.matches("Agent notes:").count(), 1, "{d}");
    assert!(
        d.ends_with("Called back") && d.contains("PBX call id: late"),
        "{d}"
    );

    // A recording link after the call: the same Task, once.
    let mut ready = event("late", Phase::RecordingReady, "4155550100", "1001");
    ready.recording_url = Some("https://pbx.example/rec/late.wav".into());
    for _ in 0..2 {
        let out = Plugin::new(&host).on_call_event(&ready);
        let Ok(out) = out else {
            panic!("{:?}", out.err());
        };
        assert_eq!(out[0].action, EventAction::Updated, "{out:?}");
    }
    let all = tasks(&sf, "late");
    assert_eq!(all.len(), 1);
    let d = all[0]["Description"].as_str().unwrap_or_default();
    assert_eq!(
        d.matches("Recording: https://pbx.example/rec/late.wav")
            .count(),
        1,
        "{d}"
    );
    assert!(d.ends_with("Called back"), "the notes stay: {d}");

    // Refusals change nothing.
    let long = "x".repeat(4001);
    assert!(
        Plugin::new(&host)
            .save_after_call_work(&work("late", Some(&long), None))
            .is_err()
    );
    assert!(
        Plugin::new(&host)
            .save_after_call_work(&work("late", None, None))
            .is_err()
    );
    ready.recording_url = None;
    assert!(Plugin::new(&host).on_call_event(&ready).is_err());
    assert_eq!(tasks(&sf, "late")[0]["CallDisposition"], "Left message");
}

#[test]
fn the_open_case_is_the_related_record_when_chosen() {
    let (host, sf) = connected();
    let contact = sf.add_record(
        "Contact",
        json!({"LastName": "Case", "Phone": "4155550199", "AccountId": "001000000000001AAA"}),
    );
    sf.add_record(
        "Case",
        json!({"ContactId": contact, "IsClosed": false, "Subject": "old"}),
    );
    let newest = sf.add_record(
        "Case",
        json!({"ContactId": contact, "IsClosed": false, "Subject": "new"}),
    );
    sf.add_record(
        "Case",
        json!({"ContactId": contact, "IsClosed": true, "Subject": "closed"}),
    );

    send(&host, &event("no-case", Phase::Ended, "4155550199", "1001"));
    assert_eq!(
        tasks(&sf, "no-case")[0]["WhatId"],
        "001000000000001AAA",
        "off by default"
    );

    set(&host, settings::LOG_TO_OPEN_CASE, "yes");
    send(&host, &event("on-case", Phase::Ended, "4155550199", "1001"));
    let t = &tasks(&sf, "on-case")[0];
    assert_eq!(t["WhatId"], newest.as_str());
    assert_eq!(t["WhoId"], contact.as_str());
}
