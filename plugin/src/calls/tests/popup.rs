//! The pop-up: once, for the associated extension only, never after the end.

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
    // Unknown numbers pop nothing up.
    send(
        &host,
        &event("pop-3", Phase::Ringing, "212-555-0999", "1001"),
    );
    assert_eq!(popups(&host).len(), 1);

    set(&host, settings::POPUP_ON, "answered");
    ring("pop-4", Phase::Ringing, "1001");
    assert_eq!(popups(&host).len(), 1, "not on ringing any more");
    ring("pop-4", Phase::Answered, "1001");
    ring("pop-4", Phase::Answered, "1001");
    assert_eq!(popups(&host).len(), 2);

    set(&host, settings::POPUP_ON, "ended");
    ring("pop-5", Phase::Ended, "1001");
    ring("pop-5", Phase::Ended, "1001");
    assert_eq!(popups(&host).len(), 3);

    set(&host, settings::POPUP_ON, "never");
    for phase in [Phase::Ringing, Phase::Answered, Phase::Ended] {
        ring("pop-6", phase, "1001");
    }
    assert_eq!(popups(&host).len(), 3);
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
