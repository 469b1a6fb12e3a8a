//! An agent's sign-in (`user-sign-in`): HubSpot's install flow run by the
//! agent. HubSpot's token information names the user (`user_id`), whose
//! owner is the CRM user the PBX associates; the agent's refresh token is
//! revoked before answering, and nothing of the agent's session is kept.
//! The agent must be a user of the connected HubSpot account.

use serde_json::Value;

use crate::api::{ApiError, Hub, PluginErrorOr};
use crate::bindings::exports::pbx::crm::user_sign_in::{SignInError, SignInRequest};
use crate::bindings::pbx::crm::log::Level;
use crate::connection::{Connector, Purpose, Refused};
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::settings::Settings;
use crate::users::Users;
use pbx_crm_sdk::store::Store;

pub struct SignIn<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> SignIn<'h, H> {
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    pub fn begin(&self, callback_url: &str) -> Result<SignInRequest, PluginError> {
        let connector = Connector::new(self.host);
        if connector.account().is_none() {
            return Err(PluginError::NotConnected(
                "HubSpot is not connected: the administrator authorizes the app first".into(),
            ));
        }
        let (auth, state) = connector.begin(callback_url, Purpose::SignIn)?;
        Ok(SignInRequest {
            url: auth.url,
            state,
            expires_at_ms: auth.expires_at_ms,
        })
    }

    pub fn complete(&self, callback_url: &str, query: &str) -> Result<String, SignInError> {
        let failed = |e: PluginError| SignInError::Failed(e.into());
        let connector = Connector::new(self.host);
        let granted = match connector.exchange(callback_url, query, Purpose::SignIn) {
            Ok(g) => g,
            Err(Refused::Denied(why)) => return Err(SignInError::Denied(why)),
            Err(Refused::Expired) => return Err(SignInError::Expired),
            Err(Refused::Failed(e)) => return Err(failed(e)),
        };
        let settings: Settings = Store::<H>::new(self.host)
            .get(keys::SETTINGS)
            .map_err(failed)?
            .unwrap_or_default();
        // The agent's session ends here, whatever the outcome.
        if let Err(e) = connector.revoke(&settings, &granted.tokens.refresh_token) {
            self.host.log(
                Level::Warn,
                &format!("HubSpot did not revoke an agent's sign-in token: {e}"),
            );
        }
        let connected = connector.account().map(|a| a.hub_id);
        if connected != Some(granted.account.hub_id) {
            return Err(failed(PluginError::AuthorizationFailed(format!(
                "you signed in to HubSpot account {}, not the one the PBX is connected to; sign in to that account",
                granted.account.hub_id
            ))));
        }
        let Some(user_id) = granted.account.user_id else {
            return Err(failed(PluginError::AuthorizationFailed(
                "HubSpot did not say which user signed in; try again".into(),
            )));
        };
        if let Some(list) = Users::new(self.host).load().map_err(failed)?
            && let Some(owner) = list.owners.iter().find(|o| o.user_id == Some(user_id))
        {
            return Ok(owner.id.clone());
        }
        // Not among the synced owners: ask HubSpot. An archived owner is a
        // deactivated user (HubSpot lists those only when asked for them).
        let hub = Hub::new(self.host);
        let path = format!("/crm/v3/owners/{user_id}?idProperty=userId");
        let owner: Value = match hub.get(&path) {
            Ok(owner) => owner,
            Err(PluginErrorOr::Api(ApiError::NotFound(_))) => {
                let archived = hub
                    .get(&format!("{path}&archived=true"))
                    .map_err(|e| failed(e.into()))?;
                return Err(SignInError::Inactive(format!(
                    "{} is deactivated in HubSpot",
                    archived["email"].as_str().unwrap_or("this user")
                )));
            }
            Err(e) => return Err(failed(e.into())),
        };
        let id = owner["id"].as_str().unwrap_or("").to_string();
        if id.is_empty() {
            return Err(failed(PluginError::NotFound(format!(
                "HubSpot user {user_id} is no owner in the account"
            ))));
        }
        Ok(id)
    }
}
