//! What the native unit tests run against, in place of the PBX: the SDK's
//! fake host and a fake Salesforce behind its HTTP side
//! (`fake_salesforce`), plus the small helpers every feature's tests share.

mod fake_salesforce;
pub mod user_list;

pub use fake_salesforce::*;
pub use pbx_crm_sdk::testing::*;

use std::sync::Arc;

use serde_json::Value;

use crate::auth::Tokens;
use crate::bindings::exports::pbx::crm::integration::{ConnectionState, SettingInput, Status};
use crate::bindings::{ErrorKind, WitError};
use crate::error::PluginError;
use crate::plugin::Plugin;
use crate::salesforce::{Salesforce, SalesforceError};
use crate::settings::{CONSUMER_KEY, CONSUMER_SECRET};
use crate::store::{Store, keys};

/// A setting as the portal sends it.
pub fn input(key: &str, value: &str) -> SettingInput {
    SettingInput {
        key: key.into(),
        value: Some(value.into()),
    }
}

/// The WIT error kind and message an export call's error becomes.
pub fn kind(e: PluginError) -> (ErrorKind, String) {
    let w = WitError::from(e);
    (w.kind, w.message)
}

/// Like `kind`, for a result that should have failed.
pub fn err<T>(r: Result<T, PluginError>) -> (ErrorKind, String) {
    match r {
        Ok(_) => (ErrorKind::Internal, "unexpectedly succeeded".into()),
        Err(e) => kind(e),
    }
}

/// The fake clock's time in most tests: 2023-11-14 22:13:20 UTC.
pub const NOW: u64 = 1_700_000_000_000;

/// Like `err`, for a REST call.
pub fn api_err<T>(r: Result<T, SalesforceError>) -> (ErrorKind, String) {
    err(r.map_err(PluginError::from))
}

/// A fake host at `now` whose HTTP side is a fresh fake Salesforce.
pub fn fake_org(now: u64) -> (FakeHost, Arc<FakeSalesforce>) {
    let host = FakeHost::default();
    host.set_now_ms(now);
    let sf = FakeSalesforce::new();
    sf.serve(&host);
    (host, sf)
}

/// A fake host and Salesforce at [`NOW`], the app's settings saved.
pub fn configured() -> (FakeHost, Arc<FakeSalesforce>) {
    let (host, sf) = fake_org(NOW);
    let saved = Plugin::new(&host)
        .save_settings(&[input(CONSUMER_KEY, KEY), input(CONSUMER_SECRET, SECRET)]);
    assert_eq!(
        saved.map(|s| s.state).map_err(|e| e.to_string()),
        Ok(ConnectionState::Configured)
    );
    (host, sf)
}

/// Authorize: begin on one plugin instance, complete on another.
pub fn connect(host: &FakeHost, sf: &FakeSalesforce) -> Result<Status, PluginError> {
    let auth = Plugin::new(host).begin_authorization(CALLBACK)?;
    let query = sf.allow(&auth.url);
    // The callback arrives at another instance.
    Plugin::new(host).complete_authorization(CALLBACK, &query)
}

/// `configured`, then `connect`ed, with no request recorded yet.
pub fn connected() -> (FakeHost, Arc<FakeSalesforce>) {
    let (host, sf) = configured();
    let status = connect(&host, &sf).map_err(|e| e.to_string());
    assert_eq!(status.map(|s| s.state), Ok(ConnectionState::Connected));
    host.clear_requests();
    (host, sf)
}

/// The stored tokens, if any.
pub fn tokens(host: &FakeHost) -> Option<Tokens> {
    Store::new(host).get(keys::TOKENS).ok().flatten()
}

/// A REST call any test can make: Salesforce's `limits`.
pub fn limits(host: &FakeHost) -> Result<Value, SalesforceError> {
    Salesforce::new(host).get::<Value>("limits")
}
