//! The pop-up: once, for the associated extension only, never after the
//! end; its caption says who is calling.

use serde_json::json;

use crate::bindings::exports::pbx::crm::calls::Phase;
use crate::settings::{self};
use crate::testing::INSTANCE;

use super::*;

#[test]
fn the_record_pops_up_once_for_the_associated_extension_only() {
    let (host, sf) = connected();
    let id = sf.add_record(
        "Contact",
        json!({"LastName": "Popup", "Phone": "+1 (212) 555-0170"}),
    );
    let url = format!("{INSTANCE}/lightning/r/Contact/{id}/view");
    // A call from the Contact's number, written otherwise than it is stored.
    let ring = |call_id, phase, ext| send(&host, &event(call_id, phase, "212-555-0170", ext));
    ring("pop-1", Phase::Ringing, "1001");
    ring("pop-1", Phase::Ringing, "1001");
    ring("pop-1", Phase::Answered, "1001");
    assert_eq!(popups(&host), vec![(url.clone(), "1001".to_string())]);
    // 1002 has no associated user: nothing.
    ring("pop-2", Phase::Ringing, "1002");
    assert_eq!(popups(&host).len(), 1);
    // An unknown number pops up a new Contact with the number, once.
    for _ in 0..2 {
        send(
            &host,
            &event("pop-3", Phase::Ringing, "212-555-0999", "1001"),
        );
    }
    assert_eq!(
        popups(&host)[1..],
        [(
            format!("{INSTANCE}/lightning/o/Contact/new?defaultFieldValues=Phone=%2B12125550999"),
            "1001".to_string()
        )]
    );

    set(&host, settings::POPUP_ON, "answered");
    ring("pop-4", Phase::Ringing, "1001");
    assert_eq!(popups(&host).len(), 2, "not on ringing any more");
    ring("pop-4", Phase::Answered, "1001");
    ring("pop-4", Phase::Answered, "1001");
    assert_eq!(popups(&host).len(), 3);

    set(&host, settings::POPUP_ON, "ended");
    ring("pop-5", Phase::Ended, "1001");
    ring("pop-5", Phase::Ended, "1001");
    assert_eq!(popups(&host).len(), 4);

    set(&host, settings::POPUP_ON, "never");
    for phase in [Phase::Ringing, Phase::Answered, Phase::Ended] {
        ring("pop-6", phase, "1001");
    }
    assert_eq!(popups(&host).len(), 4);
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

/// The captions of the pop-ups, as (title, [(label, value)], action, call id).
type Shown = (String, Vec<(String, String)>, String, Option<String>);

fn captions(host: &FakeHost) -> Vec<Shown> {
    host.captions()
        .into_iter()
        .flatten()
        .map(|c| {
            let details = c.details.into_iter().map(|d| (d.label, d.value)).collect();
            (c.title, details, c.action, c.call_id)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(l, v)| (l.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_pop_up_says_who_is_calling_with_the_contacts_account() {
    let (host, sf) = connected();
    let account = sf.add_record(
        "Account",
        json!({"Name": "Acme Corp", "Phone": "+1 650 555 0000"}),
    );
    sf.add_record(
        "Contact",
        json!({"LastName": "Lovelace", "Name": "Ada Lovelace", "Phone": "+1 (212) 555-0172", "AccountId": account}),
    );
    send(
        &host,
        &event("cap-1", Phase::Ringing, "212-555-0172", "1001"),
    );
    assert_eq!(
        captions(&host),
        vec![(
            "Incoming call from +1 212 555 0172".to_string(),
            pairs(&[
                ("Number", "+1 212 555 0172"),
                ("Name", "Ada Lovelace"),
                ("Record type", "Contact"),
                ("Account", "Acme Corp"),
            ]),
            "Open in Salesforce".to_string(),
            Some("cap-1".to_string()),
        )]
    );
}

#[test]
fn an_unknown_caller_gets_a_caption_with_the_number() {
    let (host, _sf) = connected();
    send(
        &host,
        &event("cap-2", Phase::Ringing, "212-555-0998", "1001"),
    );
    assert_eq!(
        captions(&host),
        vec![(
            "Incoming call from +1 212 555 0998".to_string(),
            pairs(&[("Number", "+1 212 555 0998")]),
            "Open in Salesforce".to_string(),
            Some("cap-2".to_string()),
        )]
    );
}

#[test]
fn an_unknown_callers_page_follows_the_call_settings() {
    let (host, _sf) = connected();
    set(&host, settings::UNKNOWN_INBOUND, "lead");
    send(
        &host,
        &event("unk-1", Phase::Ringing, "212-555-0997", "1001"),
    );
    assert_eq!(
        popups(&host),
        vec![(
            format!("{INSTANCE}/lightning/o/Lead/new?defaultFieldValues=Phone=%2B12125550997"),
            "1001".to_string()
        )]
    );
    set(&host, settings::UNKNOWN_INBOUND, "nothing");
    let done =
        Plugin::new(&host).on_call_event(&event("unk-2", Phase::Ringing, "212-555-0996", "1001"));
    let detail = done
        .ok()
        .and_then(|d| d.into_iter().next())
        .map(|o| o.detail);
    assert!(
        detail
            .as_deref()
            .is_some_and(|d| d.contains("create none for unknown callers")),
        "{detail:?}"
    );
    assert_eq!(popups(&host).len(), 1, "no new-record page");
}
