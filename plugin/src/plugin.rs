//! The plugin's exports as plain Rust over a `Host`.

use crate::associations::{Associations, associations};
use crate::bindings::exports::pbx::crm::calls::{
    AfterCallWork, CallEvent, Caller, CrmRecord, EventOutcome,
};
use crate::bindings::exports::pbx::crm::integration::{
    ApiUsage, Association, Authorization, ConnectionState, CrmUser, Proposal, SettingInput,
    SettingValue, Status, SyncProgress, UserList,
};
use crate::bindings::exports::pbx::crm::user_sign_in::{SignInError, SignInRequest};
use crate::bindings::pbx::crm::log::Level;
use crate::calls::Calls;
use crate::connection::Connector;
use crate::error::PluginError;
use crate::host::Host;
use crate::salesforce::Salesforce;
use crate::settings::Settings;
use crate::sign_in::SignIn;
use crate::store::{Batch, Store, keys};
use crate::users::Users;

/// One export call's view of the plugin. Instances may be created per call:
/// every piece of state lives in the host's kv-store.
/// The longest notes an agent may save for a call.
pub const MAX_NOTES: usize = 4000;

pub struct Plugin<H: Host> {
    host: H,
}

impl<H: Host> Plugin<H> {
    /// The plugin over `host`.
    pub fn new(host: H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'_, H> {
        Store::new(&self.host)
    }

    fn settings(&self) -> Result<Settings, PluginError> {
        Ok(self.store().get(keys::SETTINGS)?.unwrap_or_default())
    }

    /// The stored settings, secrets masked.
    pub fn get_settings(&self) -> Result<Vec<SettingValue>, PluginError> {
        Ok(self.settings()?.values())
    }

    fn connector(&self) -> Connector<'_, H> {
        Connector::new(&self.host)
    }

    /// Validate and store the settings in one atomic write. A new Consumer
    /// Key or login host ends the connection in the same write: the old
    /// tokens belong to another app or org.
    pub fn save_settings(&self, inputs: &[SettingInput]) -> Result<Status, PluginError> {
        let stored: Option<Settings> = self.store().get(keys::SETTINGS)?;
        let next = stored.clone().unwrap_or_default().apply(inputs)?;
        // Refuse to overwrite settings someone else saved since we read them.
        let batch = Batch::new()
            .expect(keys::SETTINGS, stored.as_ref())?
            .set(keys::SETTINGS, &next)?;
        let batch = Connector::<H>::on_settings_change(stored.as_ref(), &next, batch);
        self.store().commit(&batch)?;
        self.host.log(Level::Info, "Salesforce settings saved");
        Ok(self.status())
    }

    /// The current status: while connected with the org's API use, and as
    /// problems a use near the limit, a failed user sync and waiting call
    /// logs.
    pub fn status(&self) -> Status {
        let mut status = self.connector().status();
        let usage = if status.state == ConnectionState::Connected {
            Salesforce::new(&self.host).api_usage()
        } else {
            None
        };
        // The figures travel as numbers (the portal words them); only the
        // deferral above the threshold is news for the problem line.
        status.api_usage = usage.as_ref().map(|u| ApiUsage {
            used: u.used,
            limit: u.limit,
        });
        for extra in [
            usage.and_then(|u| u.problem()),
            self.users().problem(),
            self.calls().problem(),
        ]
        .into_iter()
        .flatten()
        {
            status.problem = Some(match status.problem.take() {
                Some(other) => format!("{other}; {extra}"),
                None => extra,
            });
        }
        status
    }

    /// Start an agent's sign-in (`user-sign-in.begin`).
    pub fn begin_user_sign_in(&self, callback_url: &str) -> Result<SignInRequest, PluginError> {
        SignIn::new(&self.host).begin(callback_url)
    }

    /// Finish an agent's sign-in (`user-sign-in.complete`): the Salesforce
    /// user id, with every token of the person revoked.
    pub fn complete_user_sign_in(
        &self,
        callback_url: &str,
        query: &str,
    ) -> Result<String, SignInError> {
        SignIn::new(&self.host).complete(callback_url, query)
    }

    /// Start an authorization: remember the attempt, open Salesforce's
    /// consent page for the administrator, and return its URL.
    pub fn begin_authorization(&self, callback_url: &str) -> Result<Authorization, PluginError> {
        self.connector().begin(callback_url)
    }

    /// Finish an authorization with the callback's raw query string.
    pub fn complete_authorization(
        &self,
        callback_url: &str,
        query: &str,
    ) -> Result<Status, PluginError> {
        self.connector().complete(callback_url, query)
    }

    /// Revoke the session and forget the tokens; keep settings and
    /// associations.
    pub fn disconnect(&self) -> Result<Status, PluginError> {
        self.connector().disconnect()
    }

    fn users(&self) -> Users<'_, H> {
        Users::new(&self.host)
    }

    fn associations(&self) -> Associations<'_, H> {
        associations(&self.host)
    }

    /// One step of a user sync: start with `None`, then pass back the
    /// cursor until it is `None` (see `users`).
    /// Near the org's daily API limit the sync waits (`rate-limited`).
    pub fn sync_users(&self, cursor: Option<&str>) -> Result<SyncProgress, PluginError> {
        Salesforce::new(&self.host).defer_when_near_limit("the user sync waits")?;
        self.users().sync_step(cursor)
    }

    /// The synced users with their associations and states.
    pub fn list_users(&self) -> Result<UserList, PluginError> {
        self.associations().list_users()
    }

    /// Propose associations by e-mail address; stores nothing.
    pub fn propose_associations(&self) -> Result<Proposal, PluginError> {
        self.associations().propose()
    }

    /// Replace the associations atomically if still at `expected_version`.
    pub fn save_associations(
        &self,
        expected_version: u64,
        associations: &[Association],
    ) -> Result<u64, PluginError> {
        self.associations().save(expected_version, associations)
    }

    /// The active user associated with `extension` (stale pairs: `None`).
    pub fn user_for_extension(&self, extension: &str) -> Result<Option<CrmUser>, PluginError> {
        self.associations().user_for_extension(extension)
    }

    /// The existing extension associated with `user_id` (stale pairs: `None`).
    pub fn extension_for_user(&self, user_id: &str) -> Result<Option<String>, PluginError> {
        self.associations().extension_for_user(user_id)
    }

    fn calls(&self) -> Calls<'_, H> {
        Calls::new(&self.host)
    }

    /// Look a caller up by number (see `calls`): the winner and the others.
    /// A number that cannot be normalized gives no match and the number as
    /// given.
    pub fn lookup_caller(&self, number: &str, region: &str) -> Result<Caller, PluginError> {
        self.calls().lookup(number, region)
    }

    /// A call event: the pop-up, and for `ended` the call journal; what
    /// was done with it, or why not.
    pub fn on_call_event(&self, event: &CallEvent) -> Result<Vec<EventOutcome>, PluginError> {
        self.calls().on_event(event)
    }

    /// Deliver the call logs that wait; returns how many still wait.
    pub fn run_pending(&self) -> Result<u32, PluginError> {
        self.calls().run_pending()
    }

    /// Click-to-call check; see [`Calls::authorize_dial`].
    pub fn authorize_dial(&self, ext: &str, to: &str, region: &str) -> Result<String, PluginError> {
        self.calls().authorize_dial(ext, to, region)
    }

    /// The agent's notes and disposition for a call's Task (its only Task:
    /// updated, or created with them when the call is logged later).
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
        let add = crate::calls::work::Work {
            notes: work.notes.clone(),
            disposition: disposition.map(str::to_string),
            ..Default::default()
        };
        Ok(vec![self.calls().add_work(&work.call_id, add)?])
    }

    /// The agent's pick among the records offered for a call.
    pub fn choose_record(
        &self,
        call_id: &str,
        extension: &str,
        number: &str,
        region: &str,
        record_id: &str,
    ) -> Result<CrmRecord, PluginError> {
        self.calls()
            .choose_record(call_id, extension, number, region, record_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::WitError;
    use crate::bindings::exports::pbx::crm::integration::ConnectionState;
    use crate::settings::{CONSUMER_KEY, CONSUMER_SECRET};
    use crate::testing::FakeHost;
    use crate::testing::input;

    #[test]
    fn settings_round_trip_through_the_kv_store() {
        let host = FakeHost::default();
        let plugin = Plugin::new(&host);
        assert_eq!(plugin.status().state, ConnectionState::NotConfigured);

        let status = plugin
            .save_settings(&[
                input(CONSUMER_KEY, "3MVG9key"),
                input(CONSUMER_SECRET, "s3cret"),
            ])
            .map_err(|e| e.to_string());
        assert_eq!(status.map(|s| s.state), Ok(ConnectionState::Configured));

        // A fresh instance over the same host sees the same settings.
        let again = Plugin::new(&host);
        let values = again.get_settings().map_err(|e| e.to_string());
        let key = values
            .as_ref()
            .ok()
            .and_then(|v| v.iter().find(|v| v.key == CONSUMER_KEY))
            .and_then(|v| v.value.clone());
        assert_eq!(key.as_deref(), Some("3MVG9key"));
        assert!(!host.kv_dump().contains("3MVG9key") || host.kv_dump().contains("settings"));
        assert!(host.logs().iter().all(|l| !l.contains("s3cret")));
    }

    #[test]
    fn invalid_settings_store_nothing() {
        let host = FakeHost::default();
        let plugin = Plugin::new(&host);
        let err = plugin.save_settings(&[input(CONSUMER_KEY, "has space")]);
        assert!(matches!(err, Err(PluginError::InvalidInput(_))));
        assert!(host.kv_keys().is_empty());
    }

    #[test]
    fn a_save_racing_another_is_refused() {
        let host = FakeHost::default();
        let plugin = Plugin::new(&host);
        // Someone saved between our read and our write: simulate by a host
        // whose store changes right before the batch.
        host.before_next_batch(|kv| {
            kv.insert(
                keys::SETTINGS.into(),
                br#"{"consumer_key":"other"}"#.to_vec(),
            );
        });
        let err = plugin.save_settings(&[input(CONSUMER_KEY, "mine")]);
        assert!(matches!(err, Err(PluginError::Conflict(_))), "{err:?}");
        let kept: Option<Settings> = Store::new(&host).get(keys::SETTINGS).ok().flatten();
        assert_eq!(kept.and_then(|s| s.consumer_key).as_deref(), Some("other"));
    }

    #[test]
    fn a_lookup_without_a_connection_says_so() {
        let host = FakeHost::default();
        let err = Plugin::new(&host)
            .lookup_caller("+14155550100", "US")
            .err()
            .map(|e| WitError::from(e).kind);
        assert_eq!(err, Some(crate::bindings::ErrorKind::NotConnected));
    }
}
