//! Person Accounts through the real host: a call from a person account's
//! number pops the account up for the agent as a "Person Account" and is
//! logged with the Task's `WhoId` its person contact and `WhatId` the
//! account; in an org without Person Accounts (which refuses their fields)
//! the same flow keeps logging against a business Account.

use e2e_tests::org::{Setup, World, call_event, calls_world, send_event, tasks_of};
use serde_json::{Map, Value, json};

use crate::popups::requests_for;

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

async fn ended(world: &World, call_id: &str, number: &str) {
    let (status, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event(call_id, "ended", number, "1001", NOON),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_a_person_account_is_logged_on_its_person_contact_and_account() {
    let world = calls_world(Setup::default()).await;
    world.org.set_person_accounts(true);
    let account = world
        .org
        .insert(
            "Account",
            fields(json!({"FirstName": "Pia", "LastName": "Person",
                          "PersonMobilePhone": "+1 (415) 555-0177"})),
        )
        .expect("a person account");
    let person_contact = world
        .org
        .accounts()
        .into_iter()
        .find(|a| a["Id"] == account.as_str())
        .and_then(|a| a["PersonContactId"].as_str().map(str::to_string))
        .expect("a person contact");
    // Ringing: the agent at 1001 gets the account's page, named a
    // Person Account.
    let (status, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event("pa-e2e-1", "ringing", "+14155550177", "1001", NOON),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let popped = requests_for(&world, "1001", "pa-e2e-1");
    assert_eq!(popped.len(), 1, "{popped:?}");
    assert!(
        popped[0].url.ends_with(&format!("/Account/{account}/view")),
        "{}",
        popped[0].url
    );
    let details: Vec<(&str, &str)> = popped[0]
        .caption
        .iter()
        .flat_map(|c| c.details.iter())
        .map(|d| (d.label.as_str(), d.value.as_str()))
        .collect();
    assert!(
        details.contains(&("Record type", "Person Account")),
        "{details:?}"
    );
    assert!(details.contains(&("Name", "Pia Person")), "{details:?}");

    ended(&world, "pa-e2e-1", "+14155550177").await;
    let tasks = tasks_of(&world, "pa-e2e-1");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["WhoId"], person_contact.as_str());
    assert_eq!(tasks[0]["WhatId"], account.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_without_person_accounts_keeps_logging_calls() {
    let world = calls_world(Setup::default()).await;
    let account = world
        .org
        .insert(
            "Account",
            fields(json!({"Name": "Globex", "Phone": "+1 (415) 555-0178"})),
        )
        .expect("an account");
    ended(&world, "pa-e2e-2", "+14155550178").await;
    let tasks = tasks_of(&world, "pa-e2e-2");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["WhatId"], account.as_str());
    assert!(tasks[0]["WhoId"].is_null(), "{}", tasks[0]);
}
