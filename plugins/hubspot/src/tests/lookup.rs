use crate::bindings::exports::pbx::crm::calls::{CallEvent, Direction, EventAction, Phase};
use crate::bindings::exports::pbx::crm::integration::Association;
use crate::plugin::Plugin;
use crate::testing::*;

pub fn event(call_id: &str, phase: Phase, number: &str) -> CallEvent {
    CallEvent {
        call_id: call_id.into(),
        phase,
        direction: Direction::Inbound,
        external_number: number.into(),
        extension: "1001".into(),
        started_at_ms: 1_700_000_000_000,
        answered_at_ms: Some(1_700_000_005_000),
        ended_at_ms: Some(1_700_000_065_000),
        disposition: Some("answered".into()),
        recording_url: None,
        default_region: "US".into(),
        utc_offset_minutes: -480,
    }
}

/// Connected, with owner 77 associated with extension 1001.
pub fn with_agent() -> (&'static FakeHost, std::sync::Arc<FakeHubSpot>) {
    let (host, hs) = connected();
    hs.add_owner("77", "ann@acme.test", "Ann", 1);
    host.set_extensions(vec![extension("1001", Some("ann@acme.test"))]);
    let plugin = Plugin::new(host);
    assert!(plugin.sync_users(None).is_ok());
    let saved = plugin.save_associations(
        0,
        &[Association {
            user_id: "77".into(),
            extension: "1001".into(),
        }],
    );
    assert!(saved.is_ok(), "{saved:?}");
    host.clear_requests();
    (host, hs)
}

#[test]
fn a_number_stored_in_e164_is_found_from_a_national_form() {
    let (host, hs) = connected();
    let id = hs.add(
        "contacts",
        &[
            ("firstname", "Ada"),
            ("lastname", "Lovelace"),
            ("phone", "+14155550100"),
            ("company", "Analytical"),
        ],
    );
    let caller = Plugin::new(host).lookup_caller("(415) 555-0100", "US");
    let Ok(caller) = caller else {
        panic!("{caller:?}");
    };
    assert_eq!(caller.number, "+14155550100");
    let best = caller.best.unwrap_or_else(|| panic!("no match"));
    assert_eq!(best.id, id);
    assert_eq!(best.name, "Ada Lovelace");
    assert_eq!(best.object_type, "Contact");
    assert_eq!(best.account.as_deref(), Some("Analytical"));
    assert_eq!(best.url, format!("{APP}/contacts/{HUB_ID}/record/0-1/{id}"));
}

#[test]
fn a_number_stored_as_typed_is_found_from_e164() {
    for typed in [
        "(415) 555-0100",
        "415-555-0100",
        "4155550100",
        "+1 415 555 0100",
    ] {
        let (host, hs) = connected();
        let id = hs.add(
            "contacts",
            &[("firstname", "Typed"), ("mobilephone", typed)],
        );
        let caller = Plugin::new(host).lookup_caller("+14155550100", "US");
        assert_eq!(
            caller.ok().and_then(|c| c.best).map(|b| b.id),
            Some(id),
            "stored as {typed}"
        );
    }
}

#[test]
fn companies_are_searched_when_no_contact_matches() {
    let (host, hs) = connected();
    let id = hs.add(
        "companies",
        &[("name", "Acme"), ("phone", "+44 20 7946 0958")],
    );
    let caller = Plugin::new(host).lookup_caller("020 7946 0958", "GB");
    let best = caller.ok().and_then(|c| c.best);
    assert_eq!(
        best.as_ref().map(|b| b.object_type.as_str()),
        Some("Company")
    );
    assert_eq!(
        best.map(|b| b.url),
        Some(format!("{APP}/contacts/{HUB_ID}/record/0-2/{id}"))
    );
    let searched: Vec<String> = host.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(
        searched,
        vec![
            format!("{API}/crm/v3/objects/contacts/search"),
            format!("{API}/crm/v3/objects/companies/search")
        ]
    );
}

#[test]
fn no_match_and_bad_numbers() {
    let (host, hs) = connected();
    hs.add("contacts", &[("phone", "+14155550199")]);
    let plugin = Plugin::new(host);
    let none = plugin.lookup_caller("+14155550100", "US").ok();
    assert!(none.is_some_and(|c| c.best.is_none() && c.others.is_empty()));
    host.clear_requests();
    let bad = plugin.lookup_caller("anonymous", "US").ok();
    assert_eq!(bad.map(|c| c.number).as_deref(), Some("anonymous"));
    assert!(host.requests().is_empty());
}

#[test]
fn ringing_pops_up_the_record_with_a_caption() {
    let (host, hs) = with_agent();
    let id = hs.add(
        "contacts",
        &[
            ("firstname", "Ada"),
            ("lastname", "L"),
            ("phone", "+14155550100"),
        ],
    );
    let done = Plugin::new(host).on_call_event(&event("c1", Phase::Ringing, "4155550100"));
    let actions: Vec<EventAction> = done
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.action)
        .collect();
    assert_eq!(actions, vec![EventAction::PoppedUp]);
    let for_agents: Vec<(String, String)> = host
        .opened_for()
        .into_iter()
        .filter(|(_, who)| who != "administrator")
        .collect();
    assert_eq!(
        for_agents,
        vec![(
            format!("{APP}/contacts/{HUB_ID}/record/0-1/{id}"),
            "1001".to_string()
        )]
    );
    let caption = host.captions().into_iter().flatten().next();
    assert_eq!(
        caption.as_ref().map(|c| c.title.as_str()),
        Some("Incoming call from +1 415 555 0100")
    );
    assert_eq!(caption.and_then(|c| c.call_id).as_deref(), Some("c1"));
}

#[test]
fn several_matches_are_offered_and_the_pick_is_logged() {
    let (host, hs) = with_agent();
    let _a = hs.add("contacts", &[("firstname", "A"), ("phone", "+14155550100")]);
    let b = hs.add(
        "contacts",
        &[("firstname", "B"), ("mobilephone", "415-555-0100")],
    );
    let plugin = Plugin::new(host);
    let done = plugin.on_call_event(&event("c2", Phase::Ringing, "+14155550100"));
    assert!(done.is_ok());
    assert_eq!(host.offers().first().map(|o| o.records.len()), Some(2));
    let picked = plugin.choose_record("c2", "1001", "+14155550100", "US", &b);
    assert_eq!(picked.map(|r| r.id).ok(), Some(b.clone()));
    let _ = plugin.on_call_event(&event("c2", Phase::Ended, "+14155550100"));
    let calls = hs.records("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].associations, vec![(194, b)]);
}

#[test]
fn no_popup_for_an_unassociated_extension() {
    let (host, hs) = connected();
    hs.add("contacts", &[("phone", "+14155550100")]);
    host.set_extensions(vec![extension("1001", None)]);
    let done = Plugin::new(host).on_call_event(&event("c3", Phase::Ringing, "4155550100"));
    let first = done.ok().and_then(|d| d.into_iter().next());
    assert_eq!(first.map(|o| o.action), Some(EventAction::Skipped));
    assert!(
        host.opened_for()
            .iter()
            .all(|(_, who)| who == "administrator")
    );
}

#[test]
fn a_popup_the_pbx_refuses_is_skipped_and_the_call_is_still_logged() {
    let (host, hs) = with_agent();
    hs.add(
        "contacts",
        &[("firstname", "Ada"), ("phone", "+14155550100")],
    );
    host.fail_browser();
    let plugin = Plugin::new(host);
    let done = plugin.on_call_event(&event("c4", Phase::Ringing, "4155550100"));
    let first = done.ok().and_then(|d| d.into_iter().next());
    assert_eq!(
        first.as_ref().map(|o| o.action),
        Some(EventAction::Skipped),
        "{first:?}"
    );
    assert!(
        first.is_some_and(|o| o.detail.starts_with("no pop-up: ")),
        "the outcome says why"
    );
    assert!(
        plugin
            .on_call_event(&event("c4", Phase::Ended, "4155550100"))
            .is_ok()
    );
    assert_eq!(hs.records("calls").len(), 1);
}
