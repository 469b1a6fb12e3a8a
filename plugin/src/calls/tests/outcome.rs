//! What the plugin answers about each call event (pbx:crm 0.4.0): what it
//! did (a Task logged, a pop-up sent) or why not, in words for the PBX
//! administrator.

use serde_json::json;

use crate::bindings::exports::pbx::crm::calls::{EventAction, EventOutcome, Phase};
use crate::settings;

use super::*;

fn answer(host: &FakeHost, e: &CallEvent) -> Vec<EventOutcome> {
    match Plugin::new(host).on_call_event(e) {
        Ok(outcome) => outcome,
        Err(err) => panic!("{err}"),
    }
}

/// The single outcome of `e`, checked to be of `action`; its detail.
fn only(host: &FakeHost, e: &CallEvent, action: EventAction) -> String {
    let outcome = answer(host, e);
    assert_eq!(outcome.len(), 1, "{outcome:?}");
    assert_eq!(outcome[0].action, action, "{outcome:?}");
    outcome[0].detail.clone()
}

#[test]
fn a_known_callers_pop_up_and_task_name_the_record_and_the_extension() {
    let (host, sf) = connected();
    let id = sf.add_record(
        "Contact",
        json!({"FirstName": "Ada", "LastName": "Lovelace", "Phone": "+1 212 555 0180"}),
    );
    let ringing = event("out-1", Phase::Ringing, "(212) 555-0180", "1001");
    let popped = only(&host, &ringing, EventAction::PoppedUp);
    assert_eq!(
        popped,
        format!("pop-up of Contact Ada Lovelace ({id}) sent to extension 1001")
    );
    // The same event again: the pop-up was sent already.
    let again = only(&host, &ringing, EventAction::Skipped);
    assert!(again.contains("sent already"), "{again}");
    // Answered: the pop-up is at ringing.
    let answered = event("out-1", Phase::Answered, "(212) 555-0180", "1001");
    let not_now = only(&host, &answered, EventAction::Skipped);
    assert!(
        not_now.contains("no pop-up while answered") && not_now.contains("ringing"),
        "{not_now}"
    );

    let ended = event("out-1", Phase::Ended, "(212) 555-0180", "1001");
    let logged = only(&host, &ended, EventAction::Logged);
    let tasks = tasks(&sf, "out-1");
    assert_eq!(tasks.len(), 1);
    let task_id = tasks[0]["Id"].as_str().unwrap_or_default();
    assert_eq!(
        logged,
        format!("Task {task_id} logged on Contact Ada Lovelace ({id})")
    );
    let repeated = only(&host, &ended, EventAction::Skipped);
    assert!(
        repeated.contains("out-1") && repeated.contains("repeated event"),
        "{repeated}"
    );
}

#[test]
fn each_skip_says_why() {
    let (host, _sf) = connected();
    // 1002 has no associated Salesforce user.
    let unassociated = only(
        &host,
        &event("why-1", Phase::Ringing, "212-555-0181", "1002"),
        EventAction::Skipped,
    );
    assert_eq!(
        unassociated,
        "no pop-up: extension 1002 is not associated with a Salesforce user"
    );
    // Internal calls: no pop-up, and not logged by default.
    let mut internal = event("why-2", Phase::Ringing, "", "1001");
    internal.direction = Direction::Internal;
    let popup = only(&host, &internal, EventAction::Skipped);
    assert_eq!(popup, "internal call: no pop-up");
    internal.phase = Phase::Ended;
    internal.ended_at_ms = Some(NOON + 60_000);
    let not_logged = only(&host, &internal, EventAction::Skipped);
    assert_eq!(
        not_logged,
        "not logged: the call settings do not log internal calls"
    );
    // Only associated users' calls are logged: 1002's is not.
    set(&host, settings::TASK_OWNER, "associated-only");
    let owner = only(
        &host,
        &event("why-3", Phase::Ended, "212-555-0181", "1002"),
        EventAction::Skipped,
    );
    assert!(
        owner.contains("extension 1002 is not associated") && owner.contains("only associated"),
        "{owner}"
    );
    set(&host, settings::POPUP_ON, "never");
    let off = only(
        &host,
        &event("why-4", Phase::Ringing, "212-555-0181", "1001"),
        EventAction::Skipped,
    );
    assert_eq!(off, "pop-ups are off in the call settings");
}

#[test]
fn an_unknown_caller_without_record_creation_is_logged_saying_so() {
    let (host, sf) = connected();
    set(&host, settings::UNKNOWN_INBOUND, "nothing");
    let logged = only(
        &host,
        &event("unk-1", Phase::Ended, "212-555-0182", "1001"),
        EventAction::Logged,
    );
    assert_eq!(tasks(&sf, "unk-1").len(), 1);
    assert!(
        logged.contains("no Salesforce record has +1 212 555 0182")
            && logged.contains("create none for unknown callers"),
        "{logged}"
    );
}

#[test]
fn a_call_log_salesforce_cannot_take_now_is_queued() {
    let (host, sf) = connected();
    sf.script_rest(&[(
        503,
        r#"[{"message":"down","errorCode":"SERVER_UNAVAILABLE"}]"#,
    )]);
    let queued = only(
        &host,
        &event("q-1", Phase::Ended, "212-555-0183", "1001"),
        EventAction::Queued,
    );
    assert!(queued.contains("waits for Salesforce"), "{queued}");
    assert!(sf.records("Task").is_empty());
}
