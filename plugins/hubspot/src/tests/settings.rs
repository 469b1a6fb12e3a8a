use crate::bindings::exports::pbx::crm::integration::{ConnectionState, SettingKind};
use crate::error::PluginError;
use crate::keys;
use crate::plugin::Plugin;
use crate::settings::*;
use crate::testing::*;

#[test]
fn the_form_has_the_app_credentials_with_a_write_only_secret() {
    let info = describe();
    assert_eq!(info.crm_name, "HubSpot");
    let secret = info.settings.iter().find(|f| f.key == CLIENT_SECRET);
    assert_eq!(secret.map(|f| f.kind), Some(SettingKind::Secret));
    let api = info.settings.iter().find(|f| f.key == API_BASE);
    assert_eq!(
        api.and_then(|f| f.default_value.clone()).as_deref(),
        Some(DEFAULT_API_BASE)
    );
}

#[test]
fn settings_round_trip_and_the_secret_is_never_shown() {
    let host = FakeHost::default();
    let plugin = Plugin::new(&host);
    assert_eq!(plugin.status().state, ConnectionState::NotConfigured);
    configure(&plugin);
    assert_eq!(plugin.status().state, ConnectionState::Configured);
    let values = plugin.get_settings().unwrap_or_default();
    let secret = values.iter().find(|v| v.key == CLIENT_SECRET);
    assert_eq!(
        secret.map(|v| (v.value.clone(), v.is_set)),
        Some((None, true))
    );
    let api = values.iter().find(|v| v.key == API_BASE);
    assert_eq!(api.and_then(|v| v.value.clone()).as_deref(), Some(API));
    assert!(host.logs().iter().all(|l| !l.contains(SECRET)));
    // Keeping the secret: `None` leaves it.
    let kept = plugin.save_settings(&[
        crate::bindings::exports::pbx::crm::integration::SettingInput {
            key: CLIENT_SECRET.into(),
            value: None,
        },
    ]);
    assert!(kept.is_ok());
    let stored: Option<Settings> = pbx_crm_sdk::store::Store::<_>::new(&host)
        .get(keys::SETTINGS)
        .ok()
        .flatten();
    assert_eq!(
        stored.and_then(|s| s.client_secret).as_deref(),
        Some(SECRET)
    );
}

#[test]
fn invalid_settings_store_nothing_and_say_which() {
    let host = FakeHost::default();
    let plugin = Plugin::new(&host);
    for bad in [
        input(API_BASE, "http://api.hubapi.com"),
        input(APP_BASE, "not a url"),
        input(CLIENT_ID, "has space"),
        input(LOG_CALLS, "sometimes"),
        input("nope", "x"),
    ] {
        let err = plugin.save_settings(&[input(CLIENT_ID, "ok"), bad.clone()]);
        assert!(
            matches!(err, Err(PluginError::InvalidInput(_))),
            "{bad:?}: {err:?}"
        );
    }
    assert!(host.kv_keys().is_empty());
}

#[test]
fn a_new_client_id_ends_the_connection() {
    let (host, _hs) = connected();
    let plugin = Plugin::new(host);
    assert_eq!(plugin.status().state, ConnectionState::Connected);
    let _ = plugin.save_settings(&[input(CLIENT_ID, "another-app")]);
    assert_eq!(plugin.status().state, ConnectionState::Configured);
    assert!(host.kv_text(keys::CONNECTION).is_none());
}

#[test]
fn call_settings_are_choices() {
    let host = FakeHost::default();
    let plugin = Plugin::new(&host);
    let saved = plugin.save_settings(&[
        input(LOG_CALLS, "answered"),
        input(UNKNOWN_CALLERS, "create-contact"),
        input(POPUP, "never"),
    ]);
    assert!(saved.is_ok());
    let values = plugin.get_settings().unwrap_or_default();
    let get = |k: &str| {
        values
            .iter()
            .find(|v| v.key == k)
            .and_then(|v| v.value.clone())
    };
    assert_eq!(get(LOG_CALLS).as_deref(), Some("answered"));
    assert_eq!(get(UNKNOWN_CALLERS).as_deref(), Some("create-contact"));
    assert_eq!(get(POPUP).as_deref(), Some("never"));
}
