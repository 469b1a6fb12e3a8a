//! Person Accounts: found, popped up and logged against like Contacts in an
//! org that has them (the Task's `WhoId` the person contact, its `WhatId`
//! the account), offered as "Person Account", and learnt from the searches
//! so an org without them keeps working at the cost of one refused search.

use serde_json::json;

use crate::bindings::exports::pbx::crm::calls::Phase;
use crate::calls::lookup::{CACHE_MS, PERSON_ACCOUNT};
use crate::salesforce::person_accounts::RECHECK_MS;
use crate::store::keys;
use crate::testing::INSTANCE;

use super::*;

/// Searches naming the person account fields, and all searches, so far.
fn searches(sf: &FakeSalesforce) -> (usize, usize) {
    let all = sf.searches();
    let person = all.iter().filter(|q| q.contains("IsPersonAccount")).count();
    (person, all.len())
}

#[test]
fn a_person_account_is_found_popped_up_and_logged_with_its_person_contact() {
    let (host, sf) = connected();
    let (account, person_contact) = sf.add_person_account(json!({
        "FirstName": "Pia", "LastName": "Person", "Name": "Pia Person",
        "PersonMobilePhone": "+1 (415) 555-0177",
    }));
    let caller = lookup(&host, "415-555-0177");
    let best = caller.best.map(|b| (b.object_type, b.id, b.name, b.url));
    assert_eq!(
        best,
        Some((
            PERSON_ACCOUNT.to_string(),
            account.clone(),
            "Pia Person".to_string(),
            format!("{INSTANCE}/lightning/r/Account/{account}/view"),
        )),
        "the hidden Contact the search finds too folds into its Account"
    );
    assert!(caller.others.is_empty(), "{:?}", caller.others);

    send(
        &host,
        &event("pa-1", Phase::Ringing, "415-555-0177", "1001"),
    );
    assert_eq!(
        popups(&host),
        vec![(
            format!("{INSTANCE}/lightning/r/Account/{account}/view"),
            "1001".to_string()
        )],
        "the pop-up opens the person account"
    );
    let caption = host.captions().into_iter().flatten().last();
    let record_type = caption.and_then(|c| {
        c.details
            .into_iter()
            .find(|d| d.label == "Record type")
            .map(|d| d.value)
    });
    assert_eq!(record_type.as_deref(), Some(PERSON_ACCOUNT));

    send(&host, &event("pa-1", Phase::Ended, "415-555-0177", "1001"));
    let logged = tasks(&sf, "pa-1");
    assert_eq!(logged.len(), 1);
    assert_eq!(
        logged[0]["WhoId"],
        json!(person_contact),
        "a Task's WhoId is a Contact"
    );
    assert_eq!(logged[0]["WhatId"], json!(account));
    assert_eq!(searches(&sf), (1, 1), "one search, with the person fields");
    assert!(host.kv_keys().iter().any(|k| k == keys::PERSON_ACCOUNTS));
}

#[test]
fn a_person_account_ranks_with_contacts_and_is_offered_as_a_person_account() {
    let (host, sf) = connected();
    let business = sf.add_record(
        "Account",
        json!({"Name": "Shared Line Inc", "Phone": "+1 646 555 0190",
               "LastModifiedDate": "2025-03-09T08:00:00.000+0000"}),
    );
    let lead = sf.add_record(
        "Lead",
        json!({"LastName": "Lee", "Company": "L", "Phone": "646.555.0190",
               "LastModifiedDate": "2025-03-08T08:00:00.000+0000"}),
    );
    let (person, _) = sf.add_person_account(json!({
        "FirstName": "Pat", "LastName": "Home", "Name": "Pat Home",
        "PersonHomePhone": "(646) 555-0190",
        "LastModifiedDate": "2025-03-01T08:00:00.000+0000",
    }));
    let caller = lookup(&host, "646-555-0190");
    let order: Vec<(String, String)> = caller
        .best
        .iter()
        .chain(&caller.others)
        .map(|r| (r.object_type.clone(), r.id.clone()))
        .collect();
    assert_eq!(
        order,
        vec![
            (PERSON_ACCOUNT.to_string(), person.clone()),
            ("Lead".to_string(), lead),
            ("Account".to_string(), business),
        ],
        "a person before a Lead, a business Account last"
    );
    send(
        &host,
        &event("pa-2", Phase::Ringing, "646-555-0190", "1001"),
    );
    let offers = host.offers();
    assert_eq!(offers.len(), 1);
    let offered: Vec<(String, String, Option<String>)> = offers[0]
        .records
        .iter()
        .map(|r| (r.object_type.clone(), r.name.clone(), r.account.clone()))
        .collect();
    assert_eq!(
        offered[0],
        (PERSON_ACCOUNT.to_string(), "Pat Home".to_string(), None)
    );
    assert_eq!(offered[2].0, "Account");
}

#[test]
fn an_org_without_person_accounts_pays_one_refused_search_and_keeps_working() {
    let (host, sf) = connected();
    let account = sf.add_record(
        "Account",
        json!({"Name": "Globex", "Phone": "+1 415 555 0100"}),
    );
    let contact = sf.add_record(
        "Contact",
        json!({"LastName": "Simpson", "Phone": "(415) 555-0100", "AccountId": account}),
    );
    send(&host, &event("np-1", Phase::Ended, "415-555-0100", "1001"));
    let logged = tasks(&sf, "np-1");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["WhoId"], json!(contact));
    assert_eq!(logged[0]["WhatId"], json!(account));
    assert_eq!(
        searches(&sf),
        (1, 2),
        "refused with the person fields, answered without"
    );
    assert!(Plugin::new(&host).status().problem.is_none());

    // Remembered: later searches leave the fields out.
    host.advance_ms(CACHE_MS + 1);
    assert_eq!(
        lookup(&host, "415-555-0100").best.map(|b| b.id),
        Some(contact.clone())
    );
    assert_eq!(searches(&sf), (1, 3));

    // A day on, it is asked again (Person Accounts may have been turned
    // on), and learnt from the answer.
    host.advance_ms(RECHECK_MS);
    sf.set_person_accounts(true);
    assert_eq!(
        lookup(&host, "415-555-0100").best.map(|b| b.id),
        Some(contact)
    );
    assert_eq!(searches(&sf), (2, 4));
    host.advance_ms(RECHECK_MS + CACHE_MS);
    let _ = lookup(&host, "415-555-0100");
    assert_eq!(searches(&sf), (3, 5), "an org with them is not asked again");
}

#[test]
fn another_refusal_of_the_search_is_an_error_not_a_missing_feature() {
    let (host, sf) = connected();
    sf.script_rest(&[
        (400, r#"[{"message":"bad","errorCode":"INVALID_FIELD"}]"#),
        (
            400,
            r#"[{"message":"still bad","errorCode":"INVALID_FIELD"}]"#,
        ),
    ]);
    let found = Plugin::new(&host).lookup_caller("415-555-0100", "US");
    assert!(found.is_err(), "{found:?}");
    assert!(
        !host.kv_keys().iter().any(|k| k == keys::PERSON_ACCOUNTS),
        "nothing learnt from a search that fails either way"
    );
}
