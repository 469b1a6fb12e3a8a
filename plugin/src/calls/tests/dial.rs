//! Click-to-call checks.

use crate::bindings::ErrorKind;
use crate::plugin::Plugin;
use crate::testing::err as kind;

use super::*;

#[test]
fn click_to_call_needs_an_associated_extension_and_a_real_number() {
    let (host, _sf) = connected();
    let plugin = Plugin::new(&host);
    assert_eq!(
        plugin
            .authorize_dial("1001", "(415) 555-0100", "US")
            .ok()
            .as_deref(),
        Some("+14155550100")
    );
    assert_eq!(
        plugin
            .authorize_dial(" 1001 ", "+44 20 7946 0958", "US")
            .ok()
            .as_deref(),
        Some("+442079460958")
    );
    let (k, m) = kind(plugin.authorize_dial("1002", "(415) 555-0100", "US"));
    assert_eq!(k, ErrorKind::NotConfigured);
    assert!(
        m.contains("associate extension 1002 with a Salesforce user first"),
        "{m}"
    );
    let (k, m) = kind(plugin.authorize_dial("1999", "(415) 555-0100", "US"));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(m.contains("1999"), "{m}");
    for (bad, why) in [
        ("call mom", "letters"),
        ("", "empty"),
        ("+", "no digits"),
        ("1234567890123456789", "too long"),
        ("415+555", "\"+\""),
    ] {
        let (k, m) = kind(plugin.authorize_dial("1001", bad, "US"));
        assert_eq!(k, ErrorKind::InvalidInput, "{bad}");
        assert!(m.contains(why), "{bad}: {m}");
    }
    assert!(host.requests().is_empty(), "no Salesforce call needed");
}
