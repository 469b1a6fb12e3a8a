use super::lookup::{event, with_agent};
use crate::bindings::exports::pbx::crm::calls::{AfterCallWork, EventAction, Phase};
use crate::bindings::pbx::crm::http_fetch::Method;
use crate::calls::journal::reference;
use crate::plugin::Plugin;
use crate::settings::LOG_CALLS;
use crate::testing::*;
use pbx_crm_sdk::outbox::RETRY_FIRST_MS as FIRST_RETRY_MS;

fn actions(
    done: &Result<
        Vec<crate::bindings::exports::pbx::crm::calls::EventOutcome>,
        crate::error::PluginError,
    >,
) -> Vec<EventAction> {
    done.as_ref()
        .map(|d| d.iter().map(|o| o.action).collect())
        .unwrap_or_default()
}

fn creates(host: &FakeHost) -> usize {
    host.requests()
        .iter()
        .filter(|r| r.method == Method::Post && r.url.ends_with("/crm/v3/objects/calls"))
        .count()
}

#[test]
fn an_ended_call_is_logged_once_with_its_properties() {
    let (host, hs) = with_agent();
    let contact = hs.add(
        "contacts",
        &[("firstname", "Ada"), ("phone", "+14155550100")],
    );
    let plugin = Plugin::new(host);
    let done = plugin.on_call_event(&event("c1", Phase::Ended, "(415) 555-0100"));
    assert_eq!(actions(&done), vec![EventAction::Logged], "{done:?}");
    let calls = hs.records("calls");
    assert_eq!(calls.len(), 1);
    let p = &calls[0].props;
    let get = |k: &str| p.get(k).map(String::as_str);
    assert_eq!(get("hs_timestamp"), Some("1700000000000"));
    assert_eq!(get("hs_call_direction"), Some("INBOUND"));
    assert_eq!(get("hs_call_duration"), Some("60000"));
    assert_eq!(get("hs_call_from_number"), Some("+14155550100"));
    assert_eq!(get("hs_call_to_number"), Some("1001"));
    assert_eq!(get("hs_call_status"), Some("COMPLETED"));
    assert_eq!(get("hubspot_owner_id"), Some("77"));
    assert!(get("hs_call_body").is_some_and(|b| b.contains(&reference("c1"))));
    assert_eq!(calls[0].associations, vec![(194, contact)]);
    // The same event again: nothing new.
    let again = plugin.on_call_event(&event("c1", Phase::Ended, "(415) 555-0100"));
    assert_eq!(actions(&again), vec![EventAction::Skipped]);
    assert_eq!(hs.records("calls").len(), 1);
    assert_eq!(plugin.run_pending().ok(), Some(0));
}

#[test]
fn a_missed_call_is_no_answer_and_can_be_left_out() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    let mut missed = event("m1", Phase::Ended, "4155550100");
    missed.answered_at_ms = None;
    missed.disposition = Some("no-answer".into());
    let _ = plugin.on_call_event(&missed);
    let calls = hs.records("calls");
    assert_eq!(
        calls
            .first()
            .and_then(|c| c.props.get("hs_call_status"))
            .map(String::as_str),
        Some("NO_ANSWER")
    );
    assert_eq!(
        calls
            .first()
            .and_then(|c| c.props.get("hs_call_duration"))
            .map(String::as_str),
        Some("0")
    );
    let _ = plugin.save_settings(&[input(LOG_CALLS, "answered")]);
    missed.call_id = "m2".into();
    let done = plugin.on_call_event(&missed);
    assert_eq!(actions(&done), vec![EventAction::Skipped]);
    assert_eq!(hs.records("calls").len(), 1);
}

#[test]
fn an_outage_queues_the_call_and_a_retry_after_backoff_logs_it_once() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    hs.fail("/crm/v3/objects/calls", 503, 1, None);
    let done = plugin.on_call_event(&event("c1", Phase::Ended, "4155550100"));
    assert_eq!(actions(&done), vec![EventAction::Queued]);
    assert!(hs.records("calls").is_empty());
    assert_eq!(plugin.run_pending().ok(), Some(1));
    assert!(
        plugin
            .status()
            .problem
            .is_some_and(|p| p.contains("1 call log"))
    );
    // Not yet due: nothing is sent.
    host.clear_requests();
    assert_eq!(plugin.run_pending().ok(), Some(1));
    assert_eq!(creates(host), 0);
    host.advance_ms(FIRST_RETRY_MS);
    assert_eq!(plugin.run_pending().ok(), Some(0));
    assert_eq!(hs.records("calls").len(), 1);
    assert_eq!(plugin.run_pending().ok(), Some(0));
    assert_eq!(hs.records("calls").len(), 1);
}

#[test]
fn a_create_whose_answer_was_lost_is_found_not_repeated() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    hs.lose_answer("/crm/v3/objects/calls");
    let done = plugin.on_call_event(&event("c1", Phase::Ended, "4155550100"));
    assert_eq!(actions(&done), vec![EventAction::Queued]);
    assert_eq!(hs.records("calls").len(), 1, "HubSpot did create it");
    host.advance_ms(FIRST_RETRY_MS);
    host.clear_requests();
    assert_eq!(plugin.run_pending().ok(), Some(0));
    assert_eq!(creates(host), 0);
    assert!(
        host.requests()
            .iter()
            .any(|r| r.url.ends_with("/crm/v3/objects/calls/search"))
    );
    assert_eq!(hs.records("calls").len(), 1);
}

#[test]
fn a_429_is_honoured_until_retry_after() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    hs.fail("/crm/v3/objects/calls", 429, 1, Some(120));
    let done = plugin.on_call_event(&event("c1", Phase::Ended, "4155550100"));
    assert_eq!(actions(&done), vec![EventAction::Queued]);
    host.advance_ms(60_000);
    host.clear_requests();
    assert_eq!(plugin.run_pending().ok(), Some(1));
    assert!(
        host.requests().is_empty(),
        "nothing is sent before Retry-After"
    );
    // Interactive calls are refused as rate limited meanwhile, unsent.
    assert!(matches!(
        plugin.lookup_caller("4155550100", "US"),
        Err(crate::error::PluginError::RateLimited(_))
    ));
    assert!(host.requests().is_empty());
    host.advance_ms(61_000);
    assert_eq!(plugin.run_pending().ok(), Some(0));
    assert_eq!(hs.records("calls").len(), 1);
}

#[test]
fn after_call_work_updates_the_same_call() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    let _ = plugin.on_call_event(&event("c1", Phase::Ended, "4155550100"));
    let work = AfterCallWork {
        call_id: "c1".into(),
        extension: "1001".into(),
        notes: Some("Wants a quote".into()),
        disposition: Some("Left voicemail".into()),
    };
    let done = plugin.save_after_call_work(&work);
    assert_eq!(actions(&done), vec![EventAction::Updated], "{done:?}");
    let mut recording = event("c1", Phase::RecordingReady, "4155550100");
    recording.recording_url = Some("https://pbx.test/rec/c1.mp3".into());
    let done = plugin.on_call_event(&recording);
    assert_eq!(actions(&done), vec![EventAction::Updated]);
    let calls = hs.records("calls");
    assert_eq!(calls.len(), 1);
    let p = &calls[0].props;
    assert!(
        p.get("hs_call_body")
            .is_some_and(|b| b.contains("Wants a quote"))
    );
    assert_eq!(
        p.get("hs_call_disposition").map(String::as_str),
        Some("b2cf5968-551e-4856-9783-52b3da59a7d0")
    );
    assert_eq!(
        p.get("hs_call_recording_url").map(String::as_str),
        Some("https://pbx.test/rec/c1.mp3")
    );
    assert_eq!(creates(host), 1);
}

#[test]
fn work_before_the_log_goes_out_with_the_create() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    let work = AfterCallWork {
        call_id: "c9".into(),
        extension: "1001".into(),
        notes: Some("Early notes".into()),
        disposition: None,
    };
    let done = plugin.save_after_call_work(&work);
    assert_eq!(actions(&done), vec![EventAction::Queued]);
    assert!(hs.records("calls").is_empty());
    let _ = plugin.on_call_event(&event("c9", Phase::Ended, "4155550100"));
    let calls = hs.records("calls");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]
            .props
            .get("hs_call_body")
            .is_some_and(|b| b.contains("Early notes"))
    );
    assert_eq!(creates(host), 1);
}

#[test]
fn a_lost_create_waits_for_search_lag_rather_than_create_twice() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    hs.set_search_lag(true);
    hs.lose_answer("/crm/v3/objects/calls");
    let _ = plugin.on_call_event(&event("c1", Phase::Ended, "4155550100"));
    host.advance_ms(FIRST_RETRY_MS);
    host.clear_requests();
    // Search does not show it yet: no second create.
    assert_eq!(plugin.run_pending().ok(), Some(1));
    assert_eq!(creates(host), 0);
    hs.settle();
    host.advance_ms(FIRST_RETRY_MS);
    assert_eq!(plugin.run_pending().ok(), Some(0));
    assert_eq!(creates(host), 0);
    assert_eq!(hs.records("calls").len(), 1);
}

#[test]
fn work_during_an_outage_goes_out_with_the_one_create() {
    let (host, hs) = with_agent();
    let plugin = Plugin::new(host);
    hs.fail("/crm/v3/objects/calls", 500, 1, None);
    let done = plugin.on_call_event(&event("c1", Phase::Ended, "4155550100"));
    assert_eq!(actions(&done), vec![EventAction::Queued]);
    let work = AfterCallWork {
        call_id: "c1".into(),
        extension: "1001".into(),
        notes: Some("Call back Monday".into()),
        disposition: None,
    };
    let done = plugin.save_after_call_work(&work);
    assert_eq!(actions(&done), vec![EventAction::Queued], "{done:?}");
    assert_eq!(plugin.run_pending().ok(), Some(2));
    host.advance_ms(10 * FIRST_RETRY_MS);
    assert_eq!(plugin.run_pending().ok(), Some(0));
    let calls = hs.records("calls");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]
            .props
            .get("hs_call_body")
            .is_some_and(|b| b.contains("Call back Monday"))
    );
    assert_eq!(
        creates(host),
        2,
        "the failed create and the one that made it"
    );
}

#[test]
fn concurrent_deliveries_of_one_call_create_one_call() {
    let (host, hs) = with_agent();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let plugin = Plugin::new(host);
                let _ = plugin.on_call_event(&event("c1", Phase::Ended, "4155550100"));
                let _ = plugin.run_pending();
            });
        }
    });
    host.advance_ms(60_000);
    let _ = Plugin::new(host).run_pending();
    assert_eq!(hs.records("calls").len(), 1);
}
