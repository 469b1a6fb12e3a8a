//! Test support: the SDK's fake host, a fake HubSpot behind its HTTP side,
//! and helpers that bring a plugin to a connected state.

mod fake_hubspot;

pub use fake_hubspot::*;
pub use pbx_crm_sdk::testing::*;

use crate::bindings::exports::pbx::crm::integration::SettingInput;
use crate::plugin::Plugin;
use crate::settings::{API_BASE, APP_BASE, CLIENT_ID, CLIENT_SECRET};

pub const CALLBACK: &str = "https://pbx.test/crm/callback";
pub const API: &str = "https://api.hs.test";
pub const APP: &str = "https://app.hs.test";

pub fn input(key: &str, value: &str) -> SettingInput {
    SettingInput {
        key: key.into(),
        value: Some(value.into()),
    }
}

/// The settings every connected test uses.
pub fn configure(plugin: &Plugin<&FakeHost>) {
    let saved = plugin.save_settings(&[
        input(CLIENT_ID, CLIENT),
        input(CLIENT_SECRET, SECRET),
        input(API_BASE, API),
        input(APP_BASE, APP),
    ]);
    assert!(saved.is_ok(), "{saved:?}");
}

/// The `state` of an install URL.
pub fn state_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

/// A host with a fake HubSpot, configured and connected as the
/// administrator (HubSpot user 9001).
pub fn connected() -> (&'static FakeHost, std::sync::Arc<FakeHubSpot>) {
    // Leaked: each test's host lives as long as the test process, which
    // keeps the borrows simple.
    let host: &'static FakeHost = Box::leak(Box::default());
    host.set_now_ms(1_700_000_000_000);
    let hs = FakeHubSpot::install(host);
    let plugin = Plugin::new(host);
    configure(&plugin);
    let auth = plugin.begin_authorization(CALLBACK);
    let url = auth.map(|a| a.url).unwrap_or_default();
    let code = hs.grant_code(CALLBACK, ADMIN_USER_ID);
    let query = format!("code={code}&state={}", state_of(&url));
    let status = plugin.complete_authorization(CALLBACK, &query);
    assert!(status.is_ok(), "{status:?}");
    host.clear_requests();
    (host, hs)
}
