//! Caller lookup: every format, the winner, SOSL escaping, the cache, bad
//! numbers.

use serde_json::json;

use crate::bindings::exports::pbx::crm::calls::Phase;
use crate::calls::lookup::CACHE_MS;
use crate::testing::INSTANCE;
use crate::testing::US_NUMBER_FORMATS as FORMATS;

use super::*;

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
    // A record of `object` last modified on March `day`, 2025.
    let add = |object, mut fields: Value, day: u32| {
        fields["LastModifiedDate"] = format!("2025-03-{day:02}T08:00:00.000+0000").into();
        sf.add_record(object, fields)
    };
    let account = add(
        "Account",
        json!({"Name": "Shared Line Inc", "Phone": "+1 (646) 555-0190"}),
        9,
    );
    let old_lead = add(
        "Lead",
        json!({"LastName": "Old", "Company": "L", "Phone": "646.555.0190"}),
        2,
    );
    let new_lead = add(
        "Lead",
        json!({"LastName": "New", "Company": "N", "Phone": "+16465550190"}),
        8,
    );
    let _converted = add(
        "Lead",
        json!({"LastName": "Converted", "Company": "C", "Phone": "6465550190", "IsConverted": true}),
        9,
    );
    let old_contact = add(
        "Contact",
        json!({"LastName": "Older", "Phone": "6465550190"}),
        1,
    );
    let contact = add(
        "Contact",
        json!({"FirstName": "Ann", "LastName": "Newer", "MobilePhone": "646 555 0190"}),
        3,
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
    // The first search asked for the person account fields, which this
    // org (without Person Accounts) refused; the second is without them.
    assert_eq!(
        searches.get(1).map(String::as_str),
        Some(
            r"FIND {\+14155550100} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, MobilePhone, OtherPhone, AccountId, LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT 20), Lead(Id, Name, Phone, MobilePhone, LastModifiedDate WHERE IsConverted = false ORDER BY LastModifiedDate DESC LIMIT 20), Account(Id, Name, Phone, LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT 20)"
        )
    );
    // Nothing matched the E.164 form: the national number is tried too.
    assert_eq!(searches.len(), 3, "{searches:?}");
    assert!(searches[2].starts_with("FIND {4155550100} IN PHONE FIELDS"));
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
    sf.set_person_accounts(true);
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
