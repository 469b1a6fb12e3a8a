//! The org's daily API use through the real host against the emulated org:
//! the plugin reads `Sforce-Limit-Info` from the org's answers, the status
//! (which the portal shows) says the figures, and above 90 % of the limit a
//! user sync and records for unknown callers wait while calls are still
//! looked up and logged; when the use falls they resume.

use std::time::Duration;

use e2e_tests::org::{Setup, World, call_event, calls_world, drain, send_event, tasks_of};
use serde_json::{Map, Value, json};

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

/// An ended call from `number` to 1001; what the plugin said it did.
async fn ended_call(world: &World, call_id: &str, number: &str) -> String {
    let (status, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event(call_id, "ended", number, "1001", NOON),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    drain(&world.api, Duration::from_secs(30)).await;
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_daily_limit_syncs_and_new_records_wait_and_calls_are_still_logged() {
    let world = calls_world(Setup::default()).await;
    let known = world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Known", "Phone": "+1 212 555 0161"})),
        )
        .expect("contact");

    // Plenty left: the status shows the figures the org's answers carry.
    world.org.faults().set_api_usage(7_000, 15_000);
    ended_call(&world, "calm-0", "+1 212 555 0161").await;
    let status = world.status().await;
    let (used, limit) = world.org.api_usage();
    assert_eq!(limit, 15_000);
    // The figures travel as numbers (status.api-usage, contract 0.5.0): the
    // org's count when the call's last answer left it, a request or two
    // behind the emulator's count now.
    let reported = status["api_usage"]["used"].as_u64().unwrap_or_default();
    assert!(
        (7_000..=used).contains(&reported),
        "{status} (the org counts {used})"
    );
    assert_eq!(status["api_usage"]["limit"], 15_000, "{status}");
    assert_eq!(status["message"], "Connected to Salesforce", "{status}");
    assert_eq!(status["problem"], Value::Null, "{status}");

    // 13,600 of 15,000 is above 90 %.
    world.org.faults().set_api_usage(13_600, 15_000);
    let contacts_before = world.org.contacts().len();
    let said = ended_call(&world, "busy-1", "+1 303 555 0162").await;
    assert_eq!(
        world.org.contacts().len(),
        contacts_before,
        "no new Contact"
    );
    let tasks = tasks_of(&world, "busy-1");
    assert_eq!(tasks.len(), 1, "the call is logged: {said}");
    assert_eq!(tasks[0]["WhoId"], Value::Null, "{tasks:?}");
    assert!(
        said.contains("none was created") && said.contains("above 90 % of the org's daily limit"),
        "{said}"
    );
    ended_call(&world, "busy-2", "+1 212 555 0161").await;
    assert_eq!(tasks_of(&world, "busy-2")[0]["WhoId"], known.as_str());

    let status = world.status().await;
    let problem = status["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("above 90 % of the org's daily limit")
            && problem.contains("user syncs and new records for unknown callers wait")
            && problem.contains("calls are still logged"),
        "{status}"
    );
    let reported = status["api_usage"]["used"].as_u64().unwrap_or_default();
    assert!(reported > 13_500, "{status}");

    let queries_before = world.org.request_counts().get("GET query").copied();
    let job = world.sync_users().await;
    assert_eq!(job["ok"], false, "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the user sync waits until it falls below 90 %"),
        "{job}"
    );
    assert_eq!(
        world.org.request_counts().get("GET query").copied(),
        queries_before,
        "the refused sync sent no query"
    );

    // The use falls (the 24 hours roll on): everything resumes.
    world.org.faults().set_api_usage(2_000, 15_000);
    ended_call(&world, "calm-1", "+1 212 555 0161").await;
    let status = world.status().await;
    assert_eq!(status["problem"], Value::Null, "{status}");
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    ended_call(&world, "calm-2", "+1 303 555 0163").await;
    assert_eq!(world.org.contacts().len(), contacts_before + 1);
    assert_ne!(tasks_of(&world, "calm-2")[0]["WhoId"], Value::Null);
}
