use super::lookup::{event, with_agent};
use crate::bindings::exports::pbx::crm::calls::Phase;
use crate::plugin::Plugin;
use crate::settings::UNKNOWN_CALLERS;
use crate::testing::*;

#[test]
fn an_unknown_caller_gets_one_contact_despite_search_lag() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    let _ = plugin.save_settings(&[input(UNKNOWN_CALLERS, "create-contact")]);
    hs.set_search_lag(true);
    let _ = plugin.on_call_event(&event("u1", Phase::Ended, "4155550123"));
    let _ = plugin.on_call_event(&event("u2", Phase::Ended, "+1 415 555 0123"));
    let contacts = hs.records("contacts");
    assert_eq!(contacts.len(), 1, "one contact for the number");
    assert_eq!(
        contacts[0].props.get("phone").map(String::as_str),
        Some("+14155550123")
    );
    let calls = hs.records("calls");
    assert_eq!(calls.len(), 2);
    for call in calls {
        assert_eq!(call.associations, vec![(194, contacts[0].id.clone())]);
    }
    // Once search shows it, it is found there: still one contact.
    hs.settle();
    let _ = plugin.on_call_event(&event("u3", Phase::Ended, "4155550123"));
    assert_eq!(hs.records("contacts").len(), 1);
    hs.set_search_lag(false);
    // Lookup finds it.
    let best = plugin
        .lookup_caller("4155550123", "US")
        .ok()
        .and_then(|c| c.best);
    assert_eq!(best.map(|b| b.id), Some(contacts[0].id.clone()));
}

#[test]
fn by_default_an_unknown_caller_is_logged_without_a_contact() {
    let (host, hs) = with_agent();
    let _ = Plugin::new(host).on_call_event(&event("u1", Phase::Ended, "4155550123"));
    assert!(hs.records("contacts").is_empty());
    let calls = hs.records("calls");
    assert_eq!(calls.len(), 1);
    assert!(calls[0].associations.is_empty());
}
