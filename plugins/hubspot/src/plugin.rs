//! The plugin's exports as plain Rust over a `Host`. Instances may be made
//! per call: every piece of state lives in the host's kv-store.

use crate::associations::associations;
use crate::bindings::exports::pbx::crm::calls::{
    AfterCallWork, CallEvent, Caller, CrmRecord, EventOutcome,
};
use crate::bindings::exports::pbx::crm::integration::{
    Association, Authorization, CrmUser, Proposal, SettingInput, SettingValue, Status,
    SyncProgress, UserList,
};
use crate::bindings::exports::pbx::crm::user_sign_in::{SignInError, SignInRequest};
use crate::bindings::pbx::crm::log::Level;
use crate::calls::Calls;
use crate::calls::journal::Work;
use crate::connection::Connector;
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::settings::Settings;
use crate::sign_in::SignIn;
use crate::users::Users;
use pbx_crm_sdk::store::{Batch, Store};

/// The longest notes an agent may save for a call.
pub const MAX_NOTES: usize = 4000;

pub struct Plugin<H: Host> {
    host: H,
}

impl<H: Host> Plugin<H> {
    pub fn new(host: H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'_, H> {
        Store::new(&self.host)
    }

    fn connector(&self) -> Connector<'_, H> {
        Connector::new(&self.host)
    }

    fn calls(&self) -> Calls<'_, H> {
        Calls::new(&self.host)
    }

    /// The stored settings, the secret masked.
    pub fn get_settings(&self) -> Result<Vec<SettingValue>, PluginError> {
        Ok(self
            .store()
            .get::<Settings>(keys::SETTINGS)?
            .unwrap_or_default()
            .values())
    }

    /// Validate and store the settings in one atomic write; a new client id
    /// or API URL ends the connection in the same write.
    pub fn save_settings(&self, inputs: &[SettingInput]) -> Result<Status, PluginError> {
        let stored: Option<Settings> = self.store().get(keys::SETTINGS)?;
        let next = stored.clone().unwrap_or_default().apply(inputs)?;
        let batch = Batch::new()
            .expect(keys::SETTINGS, stored.as_ref())?
            .set(keys::SETTINGS, &next)?;
        let batch = Connector::<H>::on_settings_change(stored.as_ref(), &next, batch);
        self.store().commit(&batch)?;
        self.host.log(Level::Info, "HubSpot settings saved");
        Ok(self.status())
    }

    /// The status, with waiting call logs as a problem.
    pub fn status(&self) -> Status {
        let mut status = self.connector().status();
        let now = self.host.now_ms();
        let limited = self
            .store()
            .get::<u64>(keys::RATE_LIMITED_UNTIL)
            .ok()
            .flatten()
            .filter(|until| *until > now)
            .map(|until| {
                format!(
                    "HubSpot's rate limit was reached; requests wait {} s more",
                    (until - now).div_ceil(1000)
                )
            });
        let problems: Vec<String> = [limited, self.calls().problem()]
            .into_iter()
            .flatten()
            .collect();
        status.problem = (!problems.is_empty()).then(|| problems.join("; "));
        status
    }

    pub fn begin_authorization(&self, callback_url: &str) -> Result<Authorization, PluginError> {
        self.connector().begin_admin(callback_url)
    }

    pub fn complete_authorization(
        &self,
        callback_url: &str,
        query: &str,
    ) -> Result<Status, PluginError> {
        self.connector().complete_admin(callback_url, query)
    }

    pub fn disconnect(&self) -> Result<Status, PluginError> {
        self.connector().disconnect()
    }

    pub fn sync_users(&self, cursor: Option<&str>) -> Result<SyncProgress, PluginError> {
        Users::new(&self.host).sync_step(cursor)
    }

    pub fn list_users(&self) -> Result<UserList, PluginError> {
        associations(&self.host).list_users()
    }

    pub fn propose_associations(&self) -> Result<Proposal, PluginError> {
        associations(&self.host).propose()
    }

    pub fn save_associations(
        &self,
        expected_version: u64,
        list: &[Association],
    ) -> Result<u64, PluginError> {
        let version = associations(&self.host).save(expected_version, list)?;
        self.host.log(
            Level::Info,
            &format!("associations saved (version {version})"),
        );
        Ok(version)
    }

    pub fn user_for_extension(&self, extension: &str) -> Result<Option<CrmUser>, PluginError> {
        associations(&self.host).user_for_extension(extension)
    }

    pub fn extension_for_user(&self, user_id: &str) -> Result<Option<String>, PluginError> {
        associations(&self.host).extension_for_user(user_id)
    }

    pub fn lookup_caller(&self, number: &str, region: &str) -> Result<Caller, PluginError> {
        self.calls().lookup(number, region)
    }

    pub fn on_call_event(&self, event: &CallEvent) -> Result<Vec<EventOutcome>, PluginError> {
        self.calls().on_event(event)
    }

    pub fn run_pending(&self) -> Result<u32, PluginError> {
        self.calls().run_pending()
    }

    pub fn authorize_dial(&self, ext: &str, to: &str, region: &str) -> Result<String, PluginError> {
        self.calls().authorize_dial(ext, to, region)
    }

    /// The agent's notes and disposition, added to the call's HubSpot Call.
    pub fn save_after_call_work(
        &self,
        work: &AfterCallWork,
    ) -> Result<Vec<EventOutcome>, PluginError> {
        if work.call_id.trim().is_empty() || work.call_id.chars().count() > 255 {
            return Err(PluginError::InvalidInput(
                "the call id must have 1 to 255 characters".into(),
            ));
        }
        if work
            .notes
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTES)
        {
            return Err(PluginError::InvalidInput(format!(
                "the notes have more than {MAX_NOTES} characters; shorten them"
            )));
        }
        let disposition = work.disposition.as_deref().map(str::trim);
        if disposition.is_some_and(|d| d.is_empty() || d.chars().count() > 255) {
            return Err(PluginError::InvalidInput(
                "the disposition must have 1 to 255 characters".into(),
            ));
        }
        if work.notes.is_none() && disposition.is_none() {
            return Err(PluginError::InvalidInput(
                "after-call work needs notes or a disposition".into(),
            ));
        }
        let add = Work {
            notes: work.notes.clone(),
            disposition: disposition.map(str::to_string),
            recording_url: None,
        };
        Ok(vec![self.calls().add_work(&work.call_id, add)?])
    }

    pub fn choose_record(
        &self,
        call_id: &str,
        _extension: &str,
        number: &str,
        region: &str,
        record_id: &str,
    ) -> Result<CrmRecord, PluginError> {
        self.calls()
            .choose_record(call_id, number, region, record_id)
    }

    pub fn begin_user_sign_in(&self, callback_url: &str) -> Result<SignInRequest, PluginError> {
        SignIn::new(&self.host).begin(callback_url)
    }

    pub fn complete_user_sign_in(
        &self,
        callback_url: &str,
        query: &str,
    ) -> Result<String, SignInError> {
        SignIn::new(&self.host).complete(callback_url, query)
    }
}
