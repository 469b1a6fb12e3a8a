//! Call logs reports can use, through the real host against the emulated
//! org: `Type = 'Call'`, the PBX's day as `ActivityDate` (`--time-zone`),
//! Completed / Open / not logged per call type with voicemail its own,
//! a recording link that arrives after the call updating the same Task,
//! and the caller's open Case as the Task's `WhatId`. Assertions are on the
//! org's state.

use std::time::Duration;

use e2e_tests::Options;
use e2e_tests::org::{Setup, World, call_event, calls_world, drain, send_event, tasks_of};
use serde_json::{Map, Value, json};

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;
/// 2026-01-16 04:30:00 UTC: 20:30 on the 15th in San Francisco (PST).
const SF_EVENING: u64 = 1_768_537_800_000;

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

async fn event(world: &World, event: &Value) -> (u16, Value) {
    send_event(&world.host.url(), &world.host.admin_token, event).await
}

/// Save plugin settings; the answer or the error text.
async fn settings(world: &World, pairs: &[(&str, &str)]) -> Result<Value, String> {
    let list: Vec<Value> = pairs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    world
        .api
        .put("/crm/salesforce/settings", &json!({"settings": list}))
        .await
        .map_err(|e| format!("{e:#}"))
}

/// An ended call's event with `answered`, `disposition` and `direction`.
fn ended(call_id: &str, number: &str, answered: bool, disposition: &str) -> Value {
    let mut e = call_event(call_id, "ended", number, "1001", NOON);
    if !answered {
        e.as_object_mut().map(|m| m.remove("answered_at_ms"));
    }
    e["disposition"] = json!(disposition);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_type_is_call_and_its_date_the_pbxs_day() {
    let world = calls_world(Setup {
        host: Options {
            time_zone: Some("America/Los_Angeles".into()),
            ..Options::default()
        },
        ..Setup::default()
    })
    .await;
    let e = call_event("sf-evening", "ended", "+1 212 555 0170", "1001", SF_EVENING);
    let (status, body) = event(&world, &e).await;
    assert_eq!(status, 200, "{body}");
    let report = drain(&world.api, Duration::from_secs(30)).await;
    let tasks = tasks_of(&world, "sf-evening");
    assert_eq!(tasks.len(), 1, "{report}");
    assert_eq!(tasks[0]["Type"], "Call", "{}", tasks[0]);
    assert_eq!(
        tasks[0]["ActivityDate"], "2026-01-15",
        "20:30 in San Francisco is the 15th there (the 16th in UTC): {}",
        tasks[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_type_is_logged_completed_open_or_not_at_all() {
    let world = calls_world(Setup::default()).await;
    let saved = settings(
        &world,
        &[
            ("log-inbound-answered", "completed"),
            ("log-inbound-missed", "open"),
            ("log-voicemail", "skip"),
        ],
    )
    .await;
    assert!(saved.is_ok(), "{saved:?}");
    let bad = settings(&world, &[("log-voicemail", "maybe")]).await;
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.contains("completed, open, skip")),
        "{bad:?}"
    );

    let number = "+1 212 555 0171";
    for e in [
        ended("answered-1", number, true, "answered"),
        ended("missed-1", number, false, "no-answer"),
        ended("voicemail-1", number, false, "voicemail"),
    ] {
        let (status, body) = event(&world, &e).await;
        assert_eq!(status, 200, "{body}");
    }
    drain(&world.api, Duration::from_secs(30)).await;
    let answered = tasks_of(&world, "answered-1");
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["Status"], "Completed");
    assert_eq!(answered[0]["IsClosed"], true);
    let missed = tasks_of(&world, "missed-1");
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0]["Status"], "Not Started", "an open Task");
    assert_eq!(missed[0]["IsClosed"], false);
    assert!(
        tasks_of(&world, "voicemail-1").is_empty(),
        "voicemails are not logged"
    );

    // Voicemail is its own type: open now, while missed calls stay open.
    let saved = settings(&world, &[("log-voicemail", "open")]).await;
    assert!(saved.is_ok(), "{saved:?}");
    let (status, body) = event(&world, &ended("voicemail-2", number, false, "voicemail")).await;
    assert_eq!(status, 200, "{body}");
    drain(&world.api, Duration::from_secs(30)).await;
    let voicemail = tasks_of(&world, "voicemail-2");
    assert_eq!(voicemail.len(), 1);
    assert_eq!(voicemail[0]["Status"], "Not Started");
    assert_eq!(voicemail[0]["CallDisposition"], "voicemail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_ready_after_the_call_updates_the_same_task() {
    let world = calls_world(Setup::default()).await;
    let number = "+1 212 555 0172";
    let (status, body) = event(&world, &ended("rec-1", number, true, "answered")).await;
    assert_eq!(status, 200, "{body}");
    drain(&world.api, Duration::from_secs(30)).await;
    assert_eq!(tasks_of(&world, "rec-1").len(), 1);

    let url = "https://pbx.example.com/recordings/rec-1.wav";
    let mut ready = ended("rec-1", number, true, "answered");
    ready["phase"] = json!("recording-ready");
    ready["recording_url"] = json!(url);
    for _ in 0..2 {
        let (status, body) = event(&world, &ready).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["delivered"], true, "{body}");
    }
    drain(&world.api, Duration::from_secs(30)).await;
    let tasks = tasks_of(&world, "rec-1");
    assert_eq!(tasks.len(), 1, "an update, never a second Task");
    let d = tasks[0]["Description"].as_str().unwrap_or_default();
    assert_eq!(d.matches(url).count(), 1, "{d}");

    // Without its link the event is refused and changes nothing.
    ready.as_object_mut().map(|m| m.remove("recording_url"));
    let (status, body) = event(&world, &ready).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(tasks_of(&world, "rec-1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_open_case_is_the_tasks_related_record_when_chosen() {
    let world = calls_world(Setup::default()).await;
    let account = world
        .org
        .insert("Account", fields(json!({"Name": "Initech"})))
        .expect("account");
    let contact = world
        .org
        .insert(
            "Contact",
            fields(
                json!({"LastName": "Lumbergh", "Phone": "(212) 555-0173", "AccountId": account}),
            ),
        )
        .expect("contact");
    let open = world
        .org
        .insert(
            "Case",
            fields(json!({"Subject": "Stapler", "ContactId": contact, "AccountId": account})),
        )
        .expect("case");
    world
        .org
        .insert(
            "Case",
            fields(json!({"Subject": "Old", "ContactId": contact, "Status": "Closed"})),
        )
        .expect("closed case");

    let number = "+1 212 555 0173";
    let (status, body) = event(&world, &ended("case-off", number, true, "answered")).await;
    assert_eq!(status, 200, "{body}");
    drain(&world.api, Duration::from_secs(30)).await;
    let off = tasks_of(&world, "case-off");
    assert_eq!(
        off[0]["WhatId"],
        account.as_str(),
        "off by default: the Account"
    );

    let saved = settings(&world, &[("log-to-open-case", "yes")]).await;
    assert!(saved.is_ok(), "{saved:?}");
    let (status, body) = event(&world, &ended("case-on", number, true, "answered")).await;
    assert_eq!(status, 200, "{body}");
    drain(&world.api, Duration::from_secs(30)).await;
    let on = tasks_of(&world, "case-on");
    assert_eq!(on.len(), 1);
    assert_eq!(
        on[0]["WhatId"],
        open.as_str(),
        "the open Case, not the closed one"
    );
    assert_eq!(on[0]["WhoId"], contact.as_str());
}
