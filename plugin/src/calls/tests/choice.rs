//! Several records match a caller: the offer, the agent's pick (refusals
//! too), the choice remembered for the number, and the call's Task on the
//! chosen record whether it was written before or after the pick.

use serde_json::json;

use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::calls::Phase;
use crate::testing::INSTANCE;

use super::*;

/// Two Contacts share +1 212 555 0180; the second has an Account.
fn two_contacts(sf: &FakeSalesforce) -> (String, String) {
    let account = sf.add_record(
        "Account",
        json!({"Name": "Globex", "Phone": "+1 650 555 0001"}),
    );
    let a = sf.add_record(
        "Contact",
        json!({"LastName": "One", "Name": "Ann One", "Phone": "+1 212 555 0180"}),
    );
    let b = sf.add_record(
        "Contact",
        json!({"LastName": "Two", "Name": "Bea Two", "Phone": "(212) 555-0180", "AccountId": account}),
    );
    (a, b)
}

fn task_of(sf: &FakeSalesforce, call_id: &str) -> Value {
    sf.records("Task")
        .into_iter()
        .find(|t| t["CallObject"] == call_id)
        .unwrap_or_default()
}

fn choose(
    host: &FakeHost,
    call: &str,
    ext: &str,
    record: &str,
) -> Result<String, (ErrorKind, String)> {
    Plugin::new(host)
        .choose_record(call, ext, "212-555-0180", "US", record)
        .map(|r| r.url)
        .map_err(|e| kind::<()>(Err(e)))
}

#[test]
fn several_matches_are_offered_and_the_pick_is_remembered_for_the_number() {
    let (host, sf) = connected();
    let (a, b) = two_contacts(&sf);
    send(
        &host,
        &event("ch-1", Phase::Ringing, "212-555-0180", "1001"),
    );
    assert!(popups(&host).is_empty(), "no single record opens");
    let offers = host.offers();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].audience, "1001");
    assert_eq!(offers[0].caption.call_id.as_deref(), Some("ch-1"));
    let mut offered: Vec<(String, Option<String>)> = offers[0]
        .records
        .iter()
        .map(|r| (r.id.clone(), r.account.clone()))
        .collect();
    offered.sort();
    let mut want = vec![(a.clone(), None), (b.clone(), Some("Globex".to_string()))];
    want.sort();
    assert_eq!(offered, want);

    // Refusals change nothing.
    let (k, m) = choose(&host, "ch-1", "1003", &b)
        .err()
        .unwrap_or((ErrorKind::Internal, "accepted".into()));
    assert_eq!(k, ErrorKind::InvalidInput, "{m}");
    assert!(m.contains("offered to extension 1001"), "{m}");
    let (k, m) = choose(&host, "ch-1", "1001", "003NOTOFFERED")
        .err()
        .unwrap_or((ErrorKind::Internal, "accepted".into()));
    assert_eq!(k, ErrorKind::NotFound, "{m}");
    assert!(m.contains("pick one of the list"), "{m}");
    let (k, _) = choose(&host, "ch-unknown", "1001", &b)
        .err()
        .unwrap_or((ErrorKind::Internal, "accepted".into()));
    assert_eq!(k, ErrorKind::NotFound);
    assert!(
        !host
            .kv_keys()
            .iter()
            .any(|k| k.starts_with("calls/choice/"))
    );

    // The pick: the record's page; the call's Task goes there.
    assert_eq!(
        choose(&host, "ch-1", "1001", &b),
        Ok(format!("{INSTANCE}/lightning/r/Contact/{b}/view"))
    );
    send(&host, &event("ch-1", Phase::Ended, "212-555-0180", "1001"));
    let task = task_of(&sf, "ch-1");
    assert_eq!(task["WhoId"], json!(b));
    assert!(task["WhatId"].is_string(), "{task}");

    // The next call from the number pops the chosen one up directly.
    send(
        &host,
        &event("ch-2", Phase::Ringing, "+12125550180", "1001"),
    );
    assert_eq!(host.offers().len(), 1, "no second offer");
    assert_eq!(
        popups(&host),
        vec![(
            format!("{INSTANCE}/lightning/r/Contact/{b}/view"),
            "1001".to_string()
        )]
    );
    assert_eq!(lookup(&host, "212 555 0180").best.map(|r| r.id), Some(b));
}

#[test]
fn a_pick_after_the_call_was_logged_repoints_its_task() {
    let (host, sf) = connected();
    let (a, b) = two_contacts(&sf);
    send(
        &host,
        &event("ch-3", Phase::Ringing, "212-555-0180", "1001"),
    );
    send(&host, &event("ch-3", Phase::Ended, "212-555-0180", "1001"));
    let before = task_of(&sf, "ch-3");
    let first = before["WhoId"].as_str().unwrap_or_default().to_string();
    assert!(first == a || first == b, "{before}");
    let other = if first == a { b.clone() } else { a.clone() };
    assert!(choose(&host, "ch-3", "1001", &other).is_ok());
    let after = task_of(&sf, "ch-3");
    assert_eq!(after["WhoId"], json!(other));
    assert_eq!(after["Id"], before["Id"], "the same Task, not another");
    assert_eq!(sf.records("Task").len(), 1);
    // Contact A has no Account: the Task names none any more.
    if other == a {
        assert!(after["WhatId"].is_null(), "{after}");
    } else {
        assert!(after["WhatId"].is_string(), "{after}");
    }
}
