//! The component's exports (the `component` feature, on by default, in a
//! wasm build): the export impls that hand each call to [`Plugin`] over the
//! SDK's `WitHost` (the host calls through the WIT imports), and the
//! manifest section. Everything here only converts; the logic lives in
//! modules that also compile natively and are unit-tested against a fake host.

use crate::bindings::exports::pbx::crm::{calls, integration, user_sign_in};
use crate::plugin::Plugin;
use pbx_crm_sdk::wit_host::WitHost;

/// The manifest travels inside the component as a custom section; the host
/// reads it at install time (docs/ARCHITECTURE.md, "Manifest").
#[used]
#[unsafe(link_section = "pbx-crm-manifest")]
static MANIFEST: [u8; include_bytes!("../manifest.json").len()] =
    *include_bytes!("../manifest.json");

fn plugin() -> Plugin<WitHost> {
    Plugin::new(WitHost)
}

struct Component;

impl integration::Guest for Component {
    fn describe() -> integration::Info {
        crate::settings::describe()
    }
    fn get_settings() -> Result<Vec<integration::SettingValue>, integration::Error> {
        plugin().get_settings().map_err(Into::into)
    }
    fn save_settings(
        values: Vec<integration::SettingInput>,
    ) -> Result<integration::Status, integration::Error> {
        plugin().save_settings(&values).map_err(Into::into)
    }
    fn begin_authorization(
        callback_url: String,
    ) -> Result<integration::Authorization, integration::Error> {
        plugin()
            .begin_authorization(&callback_url)
            .map_err(Into::into)
    }
    fn complete_authorization(
        callback_url: String,
        query: String,
    ) -> Result<integration::Status, integration::Error> {
        plugin()
            .complete_authorization(&callback_url, &query)
            .map_err(Into::into)
    }
    fn get_status() -> integration::Status {
        plugin().status()
    }
    fn disconnect() -> Result<integration::Status, integration::Error> {
        plugin().disconnect().map_err(Into::into)
    }
    fn sync_users(cursor: Option<String>) -> Result<integration::SyncProgress, integration::Error> {
        plugin().sync_users(cursor.as_deref()).map_err(Into::into)
    }
    fn list_users() -> Result<integration::UserList, integration::Error> {
        plugin().list_users().map_err(Into::into)
    }
    fn propose_associations() -> Result<integration::Proposal, integration::Error> {
        plugin().propose_associations().map_err(Into::into)
    }
    fn save_associations(
        expected_version: u64,
        associations: Vec<integration::Association>,
    ) -> Result<u64, integration::Error> {
        plugin()
            .save_associations(expected_version, &associations)
            .map_err(Into::into)
    }
    fn user_for_extension(
        extension: String,
    ) -> Result<Option<integration::CrmUser>, integration::Error> {
        plugin().user_for_extension(&extension).map_err(Into::into)
    }
    fn extension_for_user(user_id: String) -> Result<Option<String>, integration::Error> {
        plugin().extension_for_user(&user_id).map_err(Into::into)
    }
}

impl crate::bindings::Guest for Component {
    fn wizer_initialize() {
        crate::phone::warm_up();
    }
}

impl calls::Guest for Component {
    fn lookup_caller(
        number: String,
        default_region: String,
    ) -> Result<calls::Caller, calls::Error> {
        plugin()
            .lookup_caller(&number, &default_region)
            .map_err(Into::into)
    }
    fn on_call_event(event: calls::CallEvent) -> Result<Vec<calls::EventOutcome>, calls::Error> {
        plugin().on_call_event(&event).map_err(Into::into)
    }
    fn run_pending() -> Result<u32, calls::Error> {
        plugin().run_pending().map_err(Into::into)
    }
    fn authorize_dial(
        extension: String,
        number: String,
        default_region: String,
    ) -> Result<String, calls::Error> {
        plugin()
            .authorize_dial(&extension, &number, &default_region)
            .map_err(Into::into)
    }
    fn save_after_call_work(
        work: calls::AfterCallWork,
    ) -> Result<Vec<calls::EventOutcome>, calls::Error> {
        plugin().save_after_call_work(&work).map_err(Into::into)
    }
    fn choose_record(
        call_id: String,
        extension: String,
        number: String,
        default_region: String,
        record_id: String,
    ) -> Result<calls::CrmRecord, calls::Error> {
        plugin()
            .choose_record(&call_id, &extension, &number, &default_region, &record_id)
            .map_err(Into::into)
    }
}

impl user_sign_in::Guest for Component {
    fn begin(callback_url: String) -> Result<user_sign_in::SignInRequest, user_sign_in::Error> {
        plugin()
            .begin_user_sign_in(&callback_url)
            .map_err(Into::into)
    }
    fn complete(callback_url: String, query: String) -> Result<String, user_sign_in::SignInError> {
        plugin().complete_user_sign_in(&callback_url, &query)
    }
}

pbx_crm_sdk::bindings::export!(Component with_types_in pbx_crm_sdk::bindings);
