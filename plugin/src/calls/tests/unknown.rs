//! Unknown callers: one record per number, of the kind the settings name.

use crate::bindings::exports::pbx::crm::calls::{Direction, Phase};
use crate::calls::lookup::CACHE_MS;
use crate::settings::{self};
use crate::testing::sf_user_id;

use super::*;

#[test]
fn an_unknown_caller_becomes_one_contact_even_twice_within_the_search_lag() {
    let (host, sf) = connected();
    sf.set_search_lag(true);
    send(
        &host,
        &event("new-1", Phase::Ended, "+1 (303) 555-0177", "1001"),
    );
    host.advance_ms(120_000);
    send(&host, &event("new-2", Phase::Ended, "303.555.0177", "1001"));
    let contacts = sf.records("Contact");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    let c = &contacts[0];
    assert_eq!(c["LastName"], "Caller +1 303 555 0177");
    assert_eq!(c["Phone"], "+13035550177");
    assert_eq!(c["OwnerId"], sf_user_id(0).as_str());
    for call in ["new-1", "new-2"] {
        let t = tasks(&sf, call);
        assert_eq!(t.len(), 1, "{call}");
        assert_eq!(t[0]["WhoId"], c["Id"], "{call}");
    }
    // The lookup knows it too, before Salesforce's index does.
    host.advance_ms(CACHE_MS);
    assert_eq!(
        lookup(&host, "3035550177").best.map(|b| b.id),
        c["Id"].as_str().map(str::to_string)
    );
}

#[test]
fn unknown_callers_become_leads_or_nothing_per_direction() {
    let (host, sf) = connected();
    set(&host, settings::UNKNOWN_INBOUND, "lead");
    send(
        &host,
        &event("lead-1", Phase::Ended, "+1 303 555 0178", "1001"),
    );
    let leads = sf.records("Lead");
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["LastName"], "Caller +1 303 555 0178");
    assert_eq!(leads[0]["Company"], "Unknown");
    assert_eq!(tasks(&sf, "lead-1")[0]["WhoId"], leads[0]["Id"]);
    // Outbound default: nothing is created, the Task has no name.
    let mut out = event("out-1", Phase::Ended, "+1 303 555 0179", "1001");
    out.direction = Direction::Outbound;
    send(&host, &out);
    assert_eq!(sf.records("Lead").len() + sf.records("Contact").len(), 1);
    assert!(tasks(&sf, "out-1")[0].get("WhoId").is_none());
    set(&host, settings::UNKNOWN_OUTBOUND, "contact");
    out.call_id = "out-2".into();
    send(&host, &out);
    assert_eq!(sf.records("Contact").len(), 1);
}

#[test]
fn near_the_api_limit_an_unknown_caller_gets_no_record_but_the_call_is_logged() {
    let (host, sf) = connected();
    // 13,600 of 15,000: above 90 % once the first answer says so.
    sf.set_api_usage(13_599, 15_000);
    assert!(lookup(&host, "+1 212 555 0100").best.is_none());
    let outcomes =
        Plugin::new(&host).on_call_event(&event("busy-1", Phase::Ended, "+1 303 555 0180", "1001"));
    let Ok(outcomes) = outcomes else {
        panic!("{:?}", outcomes.err());
    };
    assert!(sf.records("Contact").is_empty(), "no record is created");
    let t = tasks(&sf, "busy-1");
    assert_eq!(t.len(), 1, "the call is still logged");
    assert!(t[0].get("WhoId").is_none(), "{t:?}");
    let said: Vec<&str> = outcomes.iter().map(|o| o.detail.as_str()).collect();
    assert!(
        said.iter().any(|d| d
            .contains("no Salesforce record has +1 303 555 0180, and none was created")
            && d.contains("above 90 % of the org's daily limit")
            && d.contains("calls are still logged")),
        "{said:?}"
    );
    assert!(
        host.logs().iter().any(|l| l.contains("none was created")),
        "{:?}",
        host.logs()
    );
    // Below the threshold again: the next unknown caller gets a Contact.
    sf.set_api_usage(100, 15_000);
    assert!(lookup(&host, "+1 212 555 0101").best.is_none());
    send(
        &host,
        &event("calm-1", Phase::Ended, "+1 303 555 0181", "1001"),
    );
    assert_eq!(sf.records("Contact").len(), 1);
    assert_eq!(
        tasks(&sf, "calm-1")[0]["WhoId"],
        sf.records("Contact")[0]["Id"]
    );
}
